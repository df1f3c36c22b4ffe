"""Two CPU processes (gloo): gradients are synchronised and each rank draws its own noise."""
import pathlib

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from datamodules import MNISTDataModule, Toy2DDataModule
from ivi_lightning.callbacks import ExactPosteriorCallback, ReconstructionGrid, SampleGrid
from pytorch_lightning.loggers import TensorBoardLogger
from ivi_lightning import PCAdv


class RankRecordingGrid(SampleGrid):
    """A sample grid that leaves a marker naming the rank that drew it."""

    def make(self, trainer, pl_module):
        pathlib.Path(trainer.default_root_dir, f"drawn_by_rank{trainer.global_rank}").touch()
        super().make(trainer, pl_module)


class RankRecordingPosterior(ExactPosteriorCallback):
    def _plot(self, trainer, *args):
        pathlib.Path(trainer.default_root_dir, f"plotted_by_rank{trainer.global_rank}").touch()
        super()._plot(trainer, *args)


def test_plot_and_image_callbacks_run_on_rank_zero_only_without_collectives(tmp_path):
    # A collective inside rank-0-only code would hang rank 0; finishing at all is half the test.
    from test_images import write_mnist

    root = write_mnist(tmp_path / "data")
    model = PCAdv(data_shape=(1, 28, 28), architecture="conv_small", hidden=(8,), noise_dim=2, latent_dim=2, aux_steps=1)
    callbacks = [RankRecordingGrid(every_n_steps=2, num_samples=4, nrow=2), ReconstructionGrid(every_n_steps=2, num_examples=4, nrow=2)]
    trainer = pl.Trainer(
        max_steps=4, accelerator="cpu", devices=2, strategy=DDPStrategy(find_unused_parameters=True, start_method="spawn"),
        logger=TensorBoardLogger(str(tmp_path), name="tb"), enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path), callbacks=callbacks,
    )
    trainer.fit(model, MNISTDataModule(str(root), batch_size=4, val_size=8))
    assert (tmp_path / "drawn_by_rank0").exists() and not (tmp_path / "drawn_by_rank1").exists()
    assert list(tmp_path.glob("tb/version_*/samples_latest.png")) and list(tmp_path.glob("tb/version_*/reconstructions_latest.png"))

    toy = Toy2DDataModule("explaining_away", num_samples=512, batch_size=32)
    toy_model = PCAdv(latent_dim=2, data_shape=1, learn_model=False, hidden=(8,))
    trainer = pl.Trainer(
        max_steps=8, accelerator="cpu", devices=2, strategy=DDPStrategy(find_unused_parameters=True, start_method="spawn"),
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, default_root_dir=str(tmp_path), callbacks=[RankRecordingPosterior(every_n_steps=4, num_samples=2000)],
    )
    trainer.fit(toy_model, toy)
    assert (tmp_path / "plotted_by_rank0").exists() and not (tmp_path / "plotted_by_rank1").exists()
    assert (tmp_path / "posterior_latest.png").exists()


def test_plain_ddp_is_refused_with_the_fix(tmp_path):
    dm = Toy2DDataModule("explaining_away", num_samples=256, batch_size=32)
    model = PCAdv(latent_dim=2, data_shape=1, learn_model=False, hidden=(8,))
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", devices=1, strategy=DDPStrategy(), logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        trainer.fit(model, dm)


# --- parity with a one-process reference --------------------------------------------------------
import copy
import os
import socket
import threading

import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from ivi_lightning import JCAdv, JCAdvRMD, JCDen, JCHybrid, PCDen, VAE
from ivi_lightning.training import RANK_SEED_STRIDE

SEED, STEPS, HALF = 7, 2, 8
PARITY = {
    "VAE": lambda: VAE(**TINY),
    "PCAdv": lambda: PCAdv(**TINY),
    "PCDen": lambda: PCDen(**TINY),
    # Location-scale forms: the encoder's (μ, σ) graph is built before the auxiliary backward passes and used after them.
    "PCAdv_ac": lambda: PCAdv(adaptive_contrast=True, **TINY),
    "PCDen_ls": lambda: PCDen(location_scale=True, **TINY),
    "JCAdv": lambda: JCAdv(**TINY),
    "JCAdv_ali": lambda: JCAdv(loss="ali", **TINY),
    "JCDen": lambda: JCDen(**TINY),
    "JCAdvRMD": lambda: JCAdvRMD(model_hidden=(4,), **TINY),
    "JCHybrid": lambda: JCHybrid(score_penalty=0.1, **TINY),
}
TINY = dict(latent_dim=2, data_shape=2, hidden=(4,), aux_steps=1, likelihood_family="gaussian")


def global_batches() -> torch.Tensor:
    """``STEPS`` global batches of ``2 * HALF`` examples; rank r trains on half r."""
    return torch.randn(STEPS, 2 * HALF, 2, generator=torch.Generator().manual_seed(1))


class RecordRank(pl.Callback):
    """Each rank's random state at its first batch, its final parameters and a logged metric."""

    def __init__(self, out: str) -> None:
        self.out, self.rng = out, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.rng = torch.get_rng_state()

    def on_train_end(self, trainer, pl_module):
        metric = trainer.callback_metrics["train/loss_encoder"].reshape(1)
        torch.save({"rng": self.rng, "params": [p.detach().clone() for p in pl_module.parameters()], "metric": metric},
                   f"{self.out}_rank{trainer.global_rank}.pt")


def parity_worker(rank: int, port: int, out: str) -> None:
    """One of two gloo processes, launched like torchrun: every algorithm trains ``STEPS`` batches."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    data = global_batches()
    for name, make in PARITY.items():
        pl.seed_everything(SEED)
        model = make()
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", devices=2, strategy=DDPStrategy(find_unused_parameters=True),
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            log_every_n_steps=1, callbacks=[RecordRank(f"{out}/{name}")], use_distributed_sampler=False,
        )
        halves = [data[s, rank * HALF:(rank + 1) * HALF] for s in range(STEPS)]
        # Its own generator: iterating the loader then leaves the global (noise) stream alone.
        trainer.fit(model, train_dataloaders=DataLoader(halves, batch_size=None, generator=torch.Generator()))


class Lockstep:
    """Runs replicas' training steps in turns, as DDP ranks would: each has its own random stream,
    and after every backward the replicas' gradients are averaged before anyone steps."""

    def __init__(self, replicas: list, rng_states: list) -> None:
        self.replicas, self.states, self.turn = replicas, list(rng_states), 0
        self.cond = threading.Condition()

    def _pass_turn(self, r: int, wait: bool) -> None:
        self.states[r] = torch.get_rng_state()
        with self.cond:
            if r == len(self.replicas) - 1:  # everyone has done this backward: average, like DDP's all-reduce
                for params in zip(*(m.parameters() for m in self.replicas)):
                    if all(p.grad is not None for p in params):
                        mean = torch.stack([p.grad for p in params]).mean(0)
                        for p in params:
                            p.grad = mean.clone()
            self.turn = (r + 1) % len(self.replicas)
            self.cond.notify_all()
            if wait:
                self.cond.wait_for(lambda: self.turn == r)
        if wait:
            torch.set_rng_state(self.states[r])

    def run(self, r: int, batches: list) -> None:
        model = self.replicas[r]
        with self.cond:
            self.cond.wait_for(lambda: self.turn == r)
        torch.set_rng_state(self.states[r])
        try:
            for step, batch in enumerate(batches):
                model.training_step(batch, step)
        finally:
            self._pass_turn(r, wait=False)

    def backward(self, r: int, loss: torch.Tensor) -> None:
        loss.backward()
        self._pass_turn(r, wait=True)


def reference_parameters(name: str, rng_states: list) -> list:
    """One process, no DDP: two replicas replaying ranks 0 and 1's noise on their halves."""
    pl.seed_everything(SEED)
    first = PARITY[name]()
    replicas = [first, copy.deepcopy(first)]
    lock = Lockstep(replicas, rng_states)
    data = global_batches()
    for r, m in enumerate(replicas):
        opts = m.configure_optimizers()
        m.optimizers = (lambda o: lambda use_pl_optimizer=True: o)(list(opts) if isinstance(opts, tuple) else opts)
        m.manual_backward = (lambda r: lambda loss, *a, **k: lock.backward(r, loss))(r)
        m.log_dict = m.log = lambda *a, **k: None
    threads = [threading.Thread(target=lock.run, args=(r, [data[s, r * HALF:(r + 1) * HALF] for s in range(STEPS)])) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [p.detach() for p in first.parameters()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_matches_one_process_reference_for_every_algorithm(tmp_path):
    mp.start_processes(parity_worker, args=(free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    for name in PARITY:
        ranks = [torch.load(tmp_path / f"{name}_rank{r}.pt") for r in range(2)]
        # Each rank's stream is seeded with seed + RANK_SEED_STRIDE * rank, so the ranks' noise differs.
        for r, rec in enumerate(ranks):
            torch.manual_seed(SEED + RANK_SEED_STRIDE * r)
            assert torch.equal(rec["rng"], torch.get_rng_state()), f"{name}: rank {r}'s stream is not seed + stride * rank"
        assert not torch.equal(ranks[0]["rng"], ranks[1]["rng"])
        # Logged training metrics are averaged over ranks (sync_dist): both ranks hold the same value.
        torch.testing.assert_close(ranks[0]["metric"], ranks[1]["metric"], rtol=0, atol=1e-6)
        reference = reference_parameters(name, [rec["rng"] for rec in ranks])
        for p0, p1, p_ref in zip(ranks[0]["params"], ranks[1]["params"], reference):
            torch.testing.assert_close(p0, p1, rtol=0, atol=1e-7, msg=lambda m: f"{name}: ranks disagree: {m}")
            torch.testing.assert_close(p0, p_ref, rtol=0, atol=1e-5, msg=lambda m: f"{name}: DDP differs from the reference: {m}")


DDP = {"class_path": "pytorch_lightning.strategies.DDPStrategy", "find_unused_parameters": True, "timeout": "0:10:00"}


@pytest.mark.parametrize("preset,expected,extra", [
    ("cpu_ddp", {"accelerator": "cpu", "devices": 2, "strategy": DDP}, []),
    ("cpu_ddp", {"strategy": dict(DDP, timeout="0:02:30")}, ["--trainer.strategy.init_args.timeout", "0:02:30"]),
    ("gpu", {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"}, []),
    ("multi_gpu_ddp", {"devices": -1, "strategy": DDP}, []),
    ("slurm", {"num_nodes": 2, "devices": 4, "strategy": DDP}, []),
])
def test_presets_compose_with_an_algorithm_config(preset, expected, extra, monkeypatch, capsys):
    """Each preset composes with an algorithm config; the DDP presets set find_unused_parameters and a
    collective timeout (a frozen worker ends the run after it), which the command line can change."""
    import pathlib

    import yaml

    from ivi_lightning.cli import main as cli_main

    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[1])
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", "configs/pc_adv/explaining_away.yaml", "--config", f"configs/presets/{preset}.yaml", *extra, "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    trainer = dict(config["trainer"])
    if isinstance(trainer.get("strategy"), dict):
        strategy = trainer["strategy"]
        trainer["strategy"] = {"class_path": strategy["class_path"], **{k: strategy["init_args"][k] for k in ("find_unused_parameters", "timeout")}}
    assert {k: trainer[k] for k in expected} == expected
    assert config["model"]["class_path"].endswith("PCAdv")  # the algorithm config is kept


def test_a_spawned_worker_ends_with_its_gloo_group_destroyed(tmp_path):
    """GlooWorkerTeardown destroys the gloo group when a spawned worker's run tears down (a live
    group can abort the exiting process: SIGABRT from gloo's threads); the main process keeps its group."""
    import subprocess
    import sys

    script = f"""
import multiprocessing as mp
import torch.distributed as dist
from ivi_lightning.training import GlooWorkerTeardown

def worker(queue):
    dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
    GlooWorkerTeardown().teardown(None, None, "fit")
    queue.put(dist.is_initialized())

if __name__ == "__main__":
    dist.init_process_group("gloo", init_method="file://{tmp_path / 'main_store'}", rank=0, world_size=1)
    GlooWorkerTeardown().teardown(None, None, "fit")
    print("main initialized:", dist.is_initialized())
    dist.destroy_process_group()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=worker, args=(queue,))
    process.start()
    print("worker initialized:", queue.get())
    process.join()
    print("worker exit code:", process.exitcode)
"""
    path = tmp_path / "script.py"
    path.write_text(script)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["main", "initialized:", "True", "worker", "initialized:", "False", "worker", "exit", "code:", "0"], out.stdout
