"""The performance options: logging cadence, CompileNetworks, fast dynamic binarisation (no timings)."""
import copy

import pytest
import pytorch_lightning as pl
import torch

from datamodules import Toy2DDataModule
from datamodules.mnist import _PixelBatches
from ivi_lightning import JCDen, PCAdv, PCDen, VAE
from ivi_lightning.callbacks.compile import CompileNetworks, compile_targets


class _RecordLogging(pl.Callback):
    """Which batches the algorithm logs its training metrics on."""

    def __init__(self) -> None:
        self.logged = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.logged.append(getattr(pl_module, "_logged_this_batch", None))


class _Spy(PCAdv):
    """PCAdv that records whether each training step handed its metrics to ``log_dict``."""

    def training_step(self, batch, batch_idx):
        self._logged_this_batch = False
        super().training_step(batch, batch_idx)

    def log_dict(self, *args, **kwargs):
        self._logged_this_batch = True
        return super().log_dict(*args, **kwargs)


def _fit(tmp_path, log_every_n_steps, batches, model=None, **kwargs):
    dm = Toy2DDataModule("explaining_away", num_samples=512, batch_size=32)
    model = model or _Spy(latent_dim=2, data_shape=1, learn_model=False, hidden=(8,), aux_steps=1)
    record = _RecordLogging()
    trainer = pl.Trainer(
        max_steps=2 * batches, log_every_n_steps=log_every_n_steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
        callbacks=[record, *kwargs.pop("callbacks", [])], **kwargs,
    )
    trainer.fit(model, dm)
    return trainer, record.logged, model


def test_metrics_are_logged_on_the_first_batch_and_on_the_trainers_logging_batches(tmp_path):
    # aux_steps=1: two optimizer steps per batch, so global_step runs twice as fast as the batches;
    # the cadence follows the batches, like the Trainer's own logging.
    trainer, logged, _ = _fit(tmp_path, log_every_n_steps=5, batches=12)
    assert [i for i, flag in enumerate(logged) if flag] == [0, 4, 9]
    assert {"train/loss_discriminator", "train/elbo", "train/loss_encoder"} <= set(trainer.callback_metrics)


def test_log_every_n_steps_1_logs_every_batch(tmp_path):
    _, logged, _ = _fit(tmp_path, log_every_n_steps=1, batches=4)
    assert logged == [True] * 4


def test_logging_step_outside_a_trainer_is_true():
    assert PCAdv(latent_dim=2, data_shape=1, hidden=(8,)).logging_step()


def test_compile_targets_cover_every_network():
    vae = VAE(latent_dim=2, data_shape=4, hidden=(8,))
    targets = compile_targets(vae)
    # The Gaussian encoder is called through moments(): its network is compiled, as is the decoder.
    assert vae.encoder.net in targets and vae.likelihood.decoder in targets and vae.encoder not in targets
    pc = PCAdv(latent_dim=2, data_shape=4, hidden=(8,))
    assert {id(m) for m in compile_targets(pc)} == {id(pc.encoder), id(pc.discriminator), id(pc.likelihood.decoder)}


def test_compile_networks_trains_and_keeps_parameter_names(tmp_path):
    # backend="eager": dynamo traces the networks but generates no code, so the test stays cheap.
    model = VAE(latent_dim=2, data_shape=1, learn_model=False, hidden=(8,))
    names = set(model.state_dict())
    callback = CompileNetworks(backend="eager")
    _fit(tmp_path, log_every_n_steps=1, batches=2, model=model, callbacks=[callback])
    assert callback.compiled and set(model.state_dict()) == names


def test_dynamic_binarisation_is_bernoulli_of_the_grey_levels():
    torch.manual_seed(0)
    images = torch.full((64, 1, 28, 28), 64, dtype=torch.uint8)
    images[:32] = 255
    x, _ = _PixelBatches(images, torch.zeros(64, dtype=torch.long), "dynamic")[torch.arange(64)]
    assert set(x.unique().tolist()) <= {0.0, 1.0} and x.dtype == torch.float32
    assert bool((x[:32] == 1).all())  # grey level 255: always on
    assert abs(float(x[32:].mean()) - 64 / 255) < 0.01


class _CountBackward(pl.Callback):
    """A callback that relies on Lightning's backward hook: its presence must keep Lightning's path."""

    def __init__(self) -> None:
        self.calls = 0

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls += 1


def _fit_toy(tmp_path, model, optimizer_steps, batch_size=32, callbacks=()):
    """``model`` trained for ``optimizer_steps`` on 256 explaining-away examples (seed 0); its Trainer."""
    trainer = pl.Trainer(
        max_steps=optimizer_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, default_root_dir=tmp_path, callbacks=list(callbacks),
    )
    trainer.fit(model, Toy2DDataModule("explaining_away", num_samples=256, batch_size=batch_size, seed=0))
    return trainer


def _assert_same_parameters(model, other):
    for (name, p), q in zip(model.state_dict().items(), other.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def _train_pc_adv(tmp_path, callbacks=()):
    torch.manual_seed(0)
    model = PCAdv(latent_dim=2, data_shape=1, learn_model=True, likelihood_family="gaussian", hidden=(16,), aux_steps=2, grad_clip=0.5)
    return model, _fit_toy(tmp_path, model, 30, callbacks=callbacks)


def test_a_callback_using_backward_hooks_sees_every_update(tmp_path):
    """optimize() goes through manual_backward and optimizer.step(): every hook runs, every step counts."""
    counter = _CountBackward()
    model, trainer = _train_pc_adv(tmp_path, callbacks=[counter])
    assert counter.calls == 30 and trainer.global_step == 30  # every optimizer step's backward reached the callback


def _train_toy(tmp_path, algorithm, batch_size, updates_per_batch, optimizer_steps):
    torch.manual_seed(0)
    model = algorithm(latent_dim=2, data_shape=1, learn_model=False, hidden=(16,), aux_steps=2, updates_per_batch=updates_per_batch)
    return model, _fit_toy(tmp_path, model, optimizer_steps, batch_size)


@pytest.mark.parametrize("algorithm", [VAE, PCAdv, PCDen, JCDen])
def test_updates_per_batch_trains_exactly_as_loading_the_update_batches_one_by_one(tmp_path, algorithm):
    steps = 12 * (1 if algorithm is VAE else 3)  # 12 update schedules (1.5 epochs of 8 update batches) of 1 or 1 + aux_steps updates
    model, trainer = _train_toy(tmp_path, algorithm, batch_size=32, updates_per_batch=1, optimizer_steps=steps)
    chunked, chunked_trainer = _train_toy(tmp_path, algorithm, batch_size=128, updates_per_batch=4, optimizer_steps=steps)
    assert trainer.global_step == chunked_trainer.global_step == steps
    assert chunked_trainer.fit_loop.epoch_loop._batches_that_stepped * 4 == trainer.fit_loop.epoch_loop._batches_that_stepped
    _assert_same_parameters(model, chunked)


def test_updates_per_batch_must_divide_the_batch(tmp_path):
    with pytest.raises(ValueError, match=r"a batch of 30 examples cannot be split into updates_per_batch=4 .* batch_size to a multiple of 4"):
        _train_toy(tmp_path, VAE, batch_size=30, updates_per_batch=4, optimizer_steps=4)  # found at setup
    with pytest.raises(ValueError, match=r"a batch of 30 examples cannot be split into updates_per_batch=4"):
        VAE(latent_dim=2, data_shape=1, updates_per_batch=4).update_batches(torch.zeros(30, 1))  # e.g. a plain DataLoader's
    with pytest.raises(ValueError, match="updates_per_batch must be positive"):
        VAE(latent_dim=2, data_shape=1, updates_per_batch=0)


def test_optimizers_are_fused_adam_with_the_default_adams_updates():
    torch.manual_seed(0)
    model = PCAdv(latent_dim=2, data_shape=1, hidden=(16,))
    reference = copy.deepcopy(model)
    twin = dict(zip(model.parameters(), reference.parameters()))
    fused = model.configure_optimizers()
    assert all(opt.defaults["fused"] for opt in fused)
    default = [torch.optim.Adam([twin[p] for p in opt.param_groups[0]["params"]], lr=opt.defaults["lr"], betas=opt.defaults["betas"]) for opt in fused]
    for _ in range(20):
        for net, optimizers in ((model, fused), (reference, default)):
            loss = sum(p.sin().square().sum() for p in net.parameters())
            for opt in optimizers:
                opt.zero_grad()
            loss.backward()
            for opt in optimizers:
                opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def test_overhead_benchmark_prints_its_table(capsys, monkeypatch):
    """benchmarks/overhead.py runs end to end (tiny timings: this checks the script, not the speed)."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import overhead

    overhead.main(["--profiles", "toy", "--algorithms", "VAE", "--rounds", "1", "--seconds", "0.01", "--cuda-probe-ab", "--updates-per-batch", "2", "--step-costs"])
    lines = capsys.readouterr().out.splitlines()
    row = [line for line in lines if line.startswith("| toy | VAE |")]
    assert len(row) == 1 and len(row[0].strip("|").split("|")) == 9, row
    costs = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in lines if line.startswith("| lightning_") or line.startswith("| cuda_check_") or line.startswith("| nonfinite_")}
    assert set(costs) == {"lightning_update_path", "cuda_check_lightning_env", "cuda_check_plain_env", "nonfinite_check"}
    assert costs["nonfinite_check"] > 0 and costs["cuda_check_plain_env"] > 0
