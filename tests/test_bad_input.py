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
