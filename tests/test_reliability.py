"""Nothing lost: exact resume after an interruption, atomic checkpoints, non-finite losses,
bf16 and gradient clipping in manual optimization."""
import os
import signal

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from datamodules import Toy2DDataModule
from ivi_lightning import JCAdv, JCAdvRMD, JCDen, JCHybrid, PCAdv, PCDen, VAE
from ivi_lightning.training import EMAWeightAveraging, NonFiniteLossError
from ivi_lightning.checkpoint import AtomicCheckpointIO

SMALL = dict(latent_dim=2, data_shape=1, hidden=(8,), aux_steps=1)
needs_weight_averaging = pytest.mark.skipif(EMAWeightAveraging is None, reason="EMAWeightAveraging needs pytorch-lightning >= 2.6")


def trainer(tmp_path, max_steps, callbacks=(), **kwargs):
    return pl.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path), callbacks=list(callbacks), **kwargs,
    )


def small_toy() -> Toy2DDataModule:
    """A fresh 16-example toy data module in batches of 4: each fit in these tests gets its own."""
    return Toy2DDataModule("explaining_away", num_samples=16, batch_size=4)


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class Interrupt(pl.Callback):
    """Stop training at batch ``at``: a SIGTERM to this process, or an exception standing for a kill."""

    def __init__(self, at: int, how: str) -> None:
        self.at, self.how, self.seen = at, how, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.seen == self.at:
            if self.how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)  # Lightning stops after this batch
            else:
                raise KeyboardInterrupt  # a kill between steps: nothing is written
        self.seen += 1


@pytest.mark.parametrize("algorithm,how,every,stop_at,resume_step", [
    (PCAdv, "kill", 6, 7, 12),  # killed at batch 8; last.ckpt from batch 6, mid-epoch
    (JCDen, "kill", 8, 7, 8),  # last.ckpt from batch 4, the end of an epoch
    (PCAdv, "sigterm", 0, 5, 12),  # SIGTERM during batch 6: Lightning finishes it, then checkpoints on_exception
])
def test_interrupted_and_resumed_run_ends_with_the_uninterrupted_parameters(tmp_path, algorithm, how, every, stop_at, resume_step):
    # 16 examples / batch 4 = 4 batches an epoch; 10 batches of 2 optimizer steps cross two epoch boundaries.
    make_model = lambda: algorithm(learn_model=False, **SMALL)
    pl.seed_everything(3)
    reference = make_model()
    trainer(tmp_path / "a", 20, enable_checkpointing=False).fit(reference, small_toy())

    pl.seed_everything(3)
    model = make_model()
    if how == "sigterm":
        callbacks = [Interrupt(stop_at, how), OnExceptionCheckpoint(tmp_path / "b", "on_exception")]
        with pytest.raises(SIGTERMException):  # Lightning finishes the batch, checkpoints on_exception, re-raises
            trainer(tmp_path / "b", 20, callbacks).fit(model, small_toy())
        resume_from = tmp_path / "b" / "on_exception.ckpt"
    else:
        callbacks = [ModelCheckpoint(dirpath=tmp_path / "b", every_n_train_steps=every, save_last=True, save_top_k=-1), Interrupt(stop_at, how)]
        sigint = signal.getsignal(signal.SIGINT)
        with pytest.raises(SystemExit):  # Lightning turns KeyboardInterrupt into an exit without writing
            trainer(tmp_path / "b", 20, callbacks).fit(model, small_toy())
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl+C after one
        resume_from = tmp_path / "b" / "last.ckpt"
    assert torch.load(resume_from, weights_only=False)["global_step"] == resume_step
    assert not torch.allclose(params(model), params(reference))

    pl.seed_everything(123)  # a different seed: everything must come from the checkpoint
    resumed = make_model()
    trainer(tmp_path / "c", 20, [ModelCheckpoint(dirpath=tmp_path / "c")]).fit(resumed, small_toy(), ckpt_path=resume_from)
    torch.testing.assert_close(params(resumed), params(reference), rtol=0, atol=1e-6)


class RecordWeights(pl.Callback):
    def __init__(self) -> None:
        self.after_each_batch = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_each_batch.append(params(pl_module).clone())


@needs_weight_averaging
def test_weight_averaging_takes_one_average_a_batch_and_survives_a_resume(tmp_path):
    """Lightning's EMAWeightAveraging over our manual steps (two optimizers a batch): the model ends
    with the average of its weights after each batch, not after each optimizer step, and a run
    killed and resumed from its last checkpoint ends with the same average."""
    decay = 0.8
    pl.seed_everything(3)
    reference, record = PCAdv(learn_model=True, **SMALL), RecordWeights()
    trainer(tmp_path / "a", 20, [record, EMAWeightAveraging(decay=decay)], enable_checkpointing=False).fit(reference, small_toy())
    assert len(record.after_each_batch) == 10  # 20 optimizer steps
    average = record.after_each_batch[0]
    for weights in record.after_each_batch[1:]:
        average = decay * average + (1 - decay) * weights
    torch.testing.assert_close(params(reference), average)
    assert not torch.allclose(average, record.after_each_batch[-1])

    pl.seed_everything(3)
    model = PCAdv(learn_model=True, **SMALL)
    callbacks = [ModelCheckpoint(dirpath=tmp_path / "b", every_n_train_steps=6, save_last=True, save_top_k=-1), Interrupt(7, "kill"),
                 EMAWeightAveraging(decay=decay)]
    sigint = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit):
        trainer(tmp_path / "b", 20, callbacks).fit(model, small_toy())
    signal.signal(signal.SIGINT, sigint)
    pl.seed_everything(123)
    resumed = PCAdv(learn_model=True, **SMALL)
    trainer(tmp_path / "c", 20, [EMAWeightAveraging(decay=decay)], enable_checkpointing=False).fit(
        resumed, small_toy(), ckpt_path=tmp_path / "b" / "last.ckpt"
    )
    torch.testing.assert_close(params(resumed), params(reference), rtol=0, atol=1e-6)


@needs_weight_averaging
def test_weight_averaging_every_n_optimizer_steps_is_refused_where_a_batch_takes_several(tmp_path):
    # It counts optimizer steps but is checked once a batch, after two: with 2 it would never update.
    with pytest.raises(ValueError, match="update_every_n_steps=2.*keep 1"):
        trainer(tmp_path, 20, [EMAWeightAveraging(update_every_n_steps=2)], enable_checkpointing=False).fit(PCAdv(learn_model=True, **SMALL), small_toy())
    # A VAE takes one step a batch: every other batch, as meant.
    pl.seed_everything(0)
    vae, record = VAE(learn_model=True, **SMALL), RecordWeights()
    trainer(tmp_path, 4, [record, EMAWeightAveraging(decay=0.5, update_every_n_steps=2)], enable_checkpointing=False).fit(vae, small_toy())
    torch.testing.assert_close(params(vae), 0.5 * record.after_each_batch[0] + 0.5 * record.after_each_batch[2])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left
    torch.testing.assert_close(io.load_checkpoint(path)["state_dict"]["w"], torch.ones(3))


def test_trainer_uses_atomic_checkpoints(tmp_path):
    t = trainer(tmp_path, 2)
    t.fit(PCAdv(learn_model=False, **SMALL), small_toy())
    assert isinstance(t.strategy.checkpoint_io, AtomicCheckpointIO)


class Explode(pl.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.at:
            with torch.no_grad():
                pl_module.discriminator.net[-1].bias.fill_(float("nan"))  # the next discriminator loss is NaN


def test_nonfinite_loss_stops_naming_network_and_step(tmp_path):
    model = PCAdv(learn_model=False, **SMALL)
    with pytest.raises(NonFiniteLossError, match=r"PCAdv: the discriminator update at global step 4 .*on_nonfinite='skip'"):
        trainer(tmp_path, 20, [Explode(2)]).fit(model, Toy2DDataModule("explaining_away", num_samples=64, batch_size=8))


class PoisonGradient(pl.Callback):
    """From batch ``at`` on, the discriminator's last bias gets a NaN gradient while its loss stays finite."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.at:
            pl_module.discriminator.net[-1].bias.register_hook(lambda grad: torch.full_like(grad, float("nan")))


def test_nonfinite_gradient_under_a_finite_loss_stops_before_the_update(tmp_path):
    model = PCAdv(learn_model=False, **SMALL)
    saved = {}

    class Keep(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            saved["bias"] = pl_module.discriminator.net[-1].bias.detach().clone()

    with pytest.raises(NonFiniteLossError, match=r"the discriminator update at global step 4 has a non-finite loss or gradient \(loss=\d"):
        trainer(tmp_path, 20, [Keep(), PoisonGradient(2)]).fit(model, Toy2DDataModule("explaining_away", num_samples=64, batch_size=8))
    torch.testing.assert_close(model.discriminator.net[-1].bias.detach(), saved["bias"], rtol=0, atol=0)  # not applied


def test_nonfinite_loss_skipped_by_option(tmp_path):
    model = PCAdv(learn_model=False, on_nonfinite="skip", **SMALL)

    class Repair(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            with torch.no_grad():
                for p in pl_module.discriminator.parameters():
                    p.nan_to_num_(0.0)

    trainer(tmp_path, 8, [Explode(1), Repair()]).fit(model, Toy2DDataModule("explaining_away", num_samples=64, batch_size=8))
    assert model.nonfinite_skips >= 1
    assert torch.isfinite(params(model.encoder)).all()


ALL = [
    (VAE, {}), (PCAdv, {}), (PCDen, {}), (JCAdv, {}), (JCAdv, dict(loss="ali", likelihood_family="gaussian")),
    (JCDen, {}), (JCAdvRMD, dict(model_hidden=(8,))), (JCHybrid, dict(score_penalty=0.1)),
]


@pytest.mark.parametrize("algorithm,extra", ALL, ids=lambda v: getattr(v, "__name__", "") or str(v.get("loss", "")))
def test_bf16_mixed_precision_trains(tmp_path, algorithm, extra):
    model = algorithm(latent_dim=2, data_shape=2, hidden=(8,), aux_steps=1, **{"likelihood_family": "gaussian", **extra})  # real-valued data
    before = params(model).clone()
    pl.Trainer(fast_dev_run=2, accelerator="cpu", precision="bf16-mixed", logger=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=str(tmp_path)).fit(model, Toy2DDataModule("ring", num_samples=64, batch_size=16))
    after = params(model)
    assert torch.isfinite(after).all() and not torch.equal(before, after)


def test_gradient_clipping_applies_to_every_optimizer(tmp_path):
    clip = 1e-3
    norms = []

    def grad_norm(optimizer, *args):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    class Measure(pl.Callback):
        def on_train_start(self, trainer, pl_module):  # the gradients each optimizer actually steps with
            for opt in trainer.optimizers:
                opt.register_step_post_hook(grad_norm)

    model = PCAdv(learn_model=False, grad_clip=clip, **SMALL)
    trainer(tmp_path, 6, [Measure()]).fit(model, Toy2DDataModule("explaining_away", num_samples=64, batch_size=8))
    assert len(norms) == 6 and max(norms) <= clip * (1 + 1e-4)

    unclipped = []

    class Raw(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            unclipped.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    model = PCAdv(learn_model=False, grad_clip=clip, **SMALL)
    trainer(tmp_path, 6, [Raw()]).fit(model, Toy2DDataModule("explaining_away", num_samples=64, batch_size=8))
    assert min(unclipped) > clip  # so the bound above was the clipping's doing


def test_finite_check_covers_dense_sparse_and_mixed_dtypes():
    from ivi_lightning.training.nonfinite import all_finite as _all_finite

    finite = [torch.ones(3), torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.bfloat16)]
    assert _all_finite(finite)
    assert not _all_finite(finite + [torch.tensor([1.0, float("inf")])])
    assert not _all_finite(finite + [torch.tensor([float("nan")], dtype=torch.bfloat16)])
    sparse = lambda value: torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.tensor([1.0, value]), (4,))
    assert _all_finite(finite + [sparse(2.0)]) and not _all_finite(finite + [sparse(float("nan"))])
    assert [t.tolist() for t in finite] == [[1.0] * 3, [1.0] * 2, [1.0] * 2]  # values untouched
