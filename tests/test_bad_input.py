"""Misuse ends in one clear error naming the cause and the fix."""
import pathlib

import pytest
import pytorch_lightning as pl
import torch

from datamodules import Toy2DDataModule
from ivi_lightning import Likelihood, NormalPrior, PCAdv, PCDen, Prior, VAE
from ivi_lightning.cli import main as cli_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


class Simulator(Likelihood):
    def sample(self, z):
        return z.sum(1, keepdim=True) + torch.randn(z.shape[0], 1)


class SamplerPrior(Prior):
    def sample(self, n):
        return torch.randn(n, self.dim)


def fit(model, dm, tmp_path):
    pl.Trainer(fast_dev_run=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=tmp_path).fit(model, dm)


@pytest.mark.parametrize("algorithm,alternative", [(PCAdv, "JCAdv"), (PCDen, "JCAdv/JCDen"), (VAE, "JCAdv")])
def test_likelihood_without_density_is_refused_with_alternative(algorithm, alternative):
    with pytest.raises(ValueError, match=f"needs log_prob of the likelihood.*Simulator is implicit.*{alternative}"):
        algorithm(latent_dim=2, data_shape=1, likelihood=Simulator(), learn_model=False)


def test_prior_without_density_refused_by_pc_den_but_not_plain_pc_adv():
    with pytest.raises(ValueError, match="PCDen needs log_prob of the prior"):
        PCDen(latent_dim=2, data_shape=1, prior=SamplerPrior(2))
    PCAdv(latent_dim=2, data_shape=1, prior=SamplerPrior(2), prior_aware=False)


def test_data_shape_mismatch_names_both_shapes(tmp_path):
    model = PCAdv(latent_dim=2, data_shape=3, hidden=(8,))
    with pytest.raises(ValueError, match=r"examples of shape \(4,\).*data_shape=\(3,\).*data_shape=\[4\]"):
        fit(model, Toy2DDataModule("four_points", num_samples=64, batch_size=8), tmp_path)


def test_vector_model_given_images_is_refused():
    model = VAE(latent_dim=2, data_shape=784, hidden=(8,))
    with pytest.raises(ValueError, match=r"expects batches of shape \[batch, 784\].*got \[2, 1, 28, 28\]"):
        model.batch_data(torch.zeros(2, 1, 28, 28))


def test_latent_dim_prior_disagreement():
    with pytest.raises(ValueError, match="prior is over 3-dimensional latents but latent_dim=2"):
        PCAdv(latent_dim=2, data_shape=1, prior=NormalPrior(3))


def test_fixed_model_without_known_model(tmp_path):
    model = PCAdv(latent_dim=2, data_shape=4, learn_model=False, hidden=(8,))
    with pytest.raises(ValueError, match="learn_model=False\\) needs a fixed model"):
        fit(model, Toy2DDataModule("four_points", num_samples=64, batch_size=8), tmp_path)


@pytest.mark.parametrize("kwargs,match", [
    (dict(noise_std=0.0), "noise_std must be positive"),
    (dict(aux_steps=0), "aux_steps must be positive"),
    (dict(denoiser_samples=0), "denoiser_samples must be positive"),
    (dict(lr=-1.0), "lr must be positive"),
    (dict(latent_dim=0), "latent_dim must be positive"),
    (dict(data_shape=(1, 0, 28)), "data_shape must be a positive"),
    (dict(likelihood_family="poisson"), "likelihood_family must be"),
    (dict(noise_injection="output"), "noise_injection must be"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PCDen(**{"latent_dim": 2, "data_shape": 1, **kwargs})


def test_unknown_architecture_lists_available():
    with pytest.raises(ValueError, match="architecture 'resnet9'; available: \\[.*'mlp'"):
        PCAdv(latent_dim=2, data_shape=1, architecture="resnet9")


def test_unknown_config_key_is_rejected(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", "configs/pc_adv/explaining_away.yaml", "--model.init_args.discriminator_steps", "3"])
    assert "discriminator_steps" in capsys.readouterr().err


# --- checkpoints, settings and devices ------------------------------------------------------------
from lightning_fabric.utilities.exceptions import MisconfigurationException  # noqa: E402

from ivi_lightning.checkpoint import CheckpointError  # noqa: E402


@pytest.fixture(scope="module")
def pc_adv_checkpoint(tmp_path_factory):
    """A real PCAdv checkpoint after one batch."""
    root = tmp_path_factory.mktemp("ckpt")
    trainer = pl.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, default_root_dir=root)
    trainer.fit(PCAdv(latent_dim=2, data_shape=1, hidden=(8,), aux_steps=1, learn_model=False), Toy2DDataModule(num_samples=64, batch_size=32))
    trainer.save_checkpoint(root / "pc_adv.ckpt")
    return root / "pc_adv.ckpt"


def test_checkpoint_of_another_algorithm_is_refused_naming_both(pc_adv_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="written by PCAdv, not PCDen: load it with PCAdv.load_from_checkpoint"):
        PCDen.load_from_checkpoint(pc_adv_checkpoint)
    model = PCDen(latent_dim=2, data_shape=1, hidden=(8,), learn_model=False)
    trainer = pl.Trainer(max_steps=4, logger=False, enable_progress_bar=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(CheckpointError, match="written by PCAdv, not PCDen.*--model PCAdv"):
        trainer.fit(model, Toy2DDataModule(num_samples=64, batch_size=32), ckpt_path=pc_adv_checkpoint)


def test_truncated_checkpoint_is_reported_as_corrupted(pc_adv_checkpoint, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(pc_adv_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="broken.ckpt' is corrupted or truncated.*earlier checkpoint"):
        PCAdv.load_from_checkpoint(broken)
    model = PCAdv(latent_dim=2, data_shape=1, hidden=(8,), aux_steps=1, learn_model=False)
    trainer = pl.Trainer(max_steps=4, logger=False, enable_progress_bar=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        trainer.fit(model, Toy2DDataModule(num_samples=64, batch_size=32), ckpt_path=broken)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.ckpt' does not exist"):
        PCAdv.load_from_checkpoint(tmp_path / "nowhere.ckpt")


def test_same_algorithm_checkpoint_loads(pc_adv_checkpoint):
    model = PCAdv.load_from_checkpoint(pc_adv_checkpoint)
    assert isinstance(model, PCAdv) and model.latent_dim == 2


def test_image_model_given_wrong_channels_is_refused():
    model = VAE(latent_dim=2, data_shape=(3, 28, 28), hidden=(8,), architecture="conv_small")
    with pytest.raises(ValueError, match=r"expects batches of shape \[batch, 3, 28, 28\].*got \[2, 1, 28, 28\]"):
        model.batch_data(torch.zeros(2, 1, 28, 28))


def test_unknown_toy_lists_the_toys():
    with pytest.raises(ValueError, match="unknown toy dataset 'spiral'; choose one of four_points, explaining_away"):
        Toy2DDataModule("spiral")


@pytest.mark.parametrize("kwargs,match", [
    (dict(on_nonfinite="ignore"), "on_nonfinite must be one of raise, skip"),
    (dict(grad_clip=0.0), "grad_clip must be positive"),
])
def test_bad_reliability_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PCAdv(latent_dim=2, data_shape=1, **kwargs)


def test_more_gpus_than_available_is_refused(monkeypatch):
    if not torch.cuda.is_available():
        with pytest.raises(MisconfigurationException, match="accelerator is not available.*\\['cpu'\\]"):
            pl.Trainer(accelerator="cuda", devices=2)
    from pytorch_lightning.accelerators import CUDAAccelerator

    monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: True))
    monkeypatch.setattr("lightning_fabric.accelerators.cuda.num_cuda_devices", lambda: 1)
    with pytest.raises(MisconfigurationException, match=r"requested gpu: \[0, 1, 2, 3\]\s+But your machine only has: \[0\]"):
        pl.Trainer(accelerator="cuda", devices=4)
