"""Numbers from numpy (a sweep over ``np.linspace``, a budget from ``np.logspace(...).astype(int)``) are
accepted wherever Python's are, and leave checkpoints that load and resume: torch refuses a numpy
scalar anywhere in a checkpoint when loading with ``weights_only=True``."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import ivi_lightning as ivi
from datamodules import CelebADataModule, MNISTDataModule, SimulatorDataModule, Toy2DDataModule
from ivi_lightning.distributions.support import BoxUniform


def _is_builtin(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_builtin(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


def _trainer(root, steps: int) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, default_root_dir=root)


def test_numpy_numbers_train_and_leave_a_checkpoint_that_loads_and_resumes(tmp_path):
    dm = Toy2DDataModule("explaining_away", num_samples=np.int64(256), batch_size=np.int64(32))
    model = ivi.JCAdv(
        latent_dim=np.int64(2), data_shape=dm.data_shape, hidden=[np.int64(16)], aux_steps=np.int64(2),
        lr=np.float32(1e-3), betas=(np.float64(0.5), np.float32(0.999)), packing=np.int64(1),
        instance_noise=np.float32(0.1), instance_noise_steps=np.int64(100), learn_model=np.bool_(False),
        prior=dm.prior, likelihood=dm.likelihood,
    )
    assert all(_is_builtin(v) for v in model.hparams.values()), dict(model.hparams)
    assert all(_is_builtin(v) for v in dm.hparams.values()), dict(dm.hparams)
    _trainer(tmp_path, 3).fit(model, dm)
    path = tmp_path / "numpy.ckpt"
    model.trainer.save_checkpoint(path)

    loaded = ivi.JCAdv.load_from_checkpoint(path)  # a numpy scalar anywhere in the file: UnpicklingError
    assert loaded.hparams.aux_steps == 2 and type(loaded.hparams.aux_steps) is int
    assert loaded.hparams.learn_model is False
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["datamodule_hyper_parameters"]["batch_size"] == 32
    resumed = _trainer(tmp_path, 6)  # an update is 3 optimizer steps (aux_steps=2, then the encoder's)
    resumed.fit(model, dm, ckpt_path=path)
    assert resumed.global_step == 6


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: MNISTDataModule(data_dir=str(tmp), batch_size=np.int64(8), val_size=np.int64(10)),
        lambda tmp: CelebADataModule(data_dir=str(tmp), batch_size=np.int64(8), image_size=np.int64(32)),
        lambda tmp: SimulatorDataModule(
            BoxUniform([-1.0], [1.0]), lambda theta: theta, num_simulations=np.int64(100),
            batch_size=np.int64(10), val_fraction=np.float32(0.1),
        ),
    ],
    ids=["mnist", "celeba", "simulator"],
)
def test_data_modules_take_numpy_numbers_and_keep_python_ones(make, tmp_path):
    dm = make(tmp_path)
    assert all(_is_builtin(v) for v in dm.hparams.values()), dict(dm.hparams)
    assert type(dm.batch_size) is int


def test_a_numpy_number_out_of_range_is_still_refused():
    with pytest.raises(ValueError, match="packing is the number of joints"):
        ivi.JCAdv(latent_dim=2, data_shape=2, packing=np.int64(0))
    with pytest.raises(ValueError, match="num_simulations must be a positive integer"):
        SimulatorDataModule(BoxUniform([-1.0], [1.0]), lambda theta: theta, num_simulations=np.float64(100.0))
