"""Every algorithm trains through the Trainer and the CLI, and the implicit ones beat the VAE."""
import pathlib

import pytest
import pytorch_lightning as pl
import torch

from datamodules import Toy2DDataModule
from ivi_lightning import PCAdv, PCDen, VAE
from ivi_lightning.callbacks import ExactPosteriorCallback
from ivi_lightning.cli import main as cli_main
from ivi_lightning.estimators import diagonal_normal_log_prob, ratio_loss
from ivi_lightning.evaluation import posterior_js
from ivi_lightning.nets import ImplicitEncoder, LocationScaleEncoder

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALGORITHMS = [VAE, PCAdv, PCDen]


def quiet_trainer(tmp_path, **kwargs):
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    return pl.Trainer(**{**defaults, **kwargs})


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dataset", ["four_points", "explaining_away"])
def test_fast_dev_run(algorithm, dataset, tmp_path):
    dm = Toy2DDataModule(dataset, num_samples=512, batch_size=64)
    model = algorithm(latent_dim=2, data_shape=dm.data_shape, learn_model=dataset == "four_points", hidden=(32,))
    quiet_trainer(tmp_path, fast_dev_run=2).fit(model, dm)
    z = model.sample_posterior(torch.eye(4)[:3] if dataset == "four_points" else torch.rand(3, 1), num_samples=5)
    assert z.shape == (5, 3, 2) and torch.isfinite(z).all()


def test_adaptive_contrast_with_sample_moments_runs_and_estimates_elbo(tmp_path):
    """AVB's adaptive contrast for an encoder without a reference: moments of several samples."""
    dm = Toy2DDataModule("four_points", num_samples=512, batch_size=64)
    encoder = ImplicitEncoder(4, 2, hidden=(32,))
    model = PCAdv(latent_dim=2, data_shape=4, adaptive_contrast=True, contrast_samples=4, hidden=(32,), encoder=encoder)
    assert not model.uses_encoder_reference
    quiet_trainer(tmp_path, fast_dev_run=2).fit(model, dm)
    assert model.elbo_estimate(torch.eye(4)).shape == (4 * 4,)


def test_adaptive_contrast_with_encoder_reference_starts_as_the_vae():
    """A location-scale encoder starts Gaussian; with T = 0 the estimate is the VAE's one-sample ELBO."""
    model = PCAdv(latent_dim=3, data_shape=4, adaptive_contrast=True, prior_aware=False, hidden=(16,))
    assert isinstance(model.encoder, LocationScaleEncoder) and model.uses_encoder_reference
    for p in model.discriminator.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(2000, 4).bernoulli()
    torch.manual_seed(1)
    estimate = model.elbo_estimate(x)
    torch.manual_seed(1)
    z, mean, std = model.encoder.sample_with_reference(x)
    assert (((z - mean) / std).mean(0).abs() < 0.1).all() and ((((z - mean) / std).std(0) - 1).abs() < 0.1).all()
    vae_elbo = model.likelihood.log_prob(x, z) + model.prior.log_prob(z) - diagonal_normal_log_prob(z, mean, std)
    torch.testing.assert_close(estimate, vae_elbo)


def test_encoder_reference_discriminator_learns_the_analytic_log_ratio():
    """q's standardised noise shifted by c: T(mean, log std, z̃) → log N(z̃; c, I) − log N(z̃; 0, I)."""
    torch.manual_seed(0)
    model = PCAdv(latent_dim=2, data_shape=4, adaptive_contrast=True, hidden=(64, 64), aux_lr=3e-3)
    shift = torch.tensor([0.8, -0.5])
    with torch.no_grad():
        model.encoder.warp[-1].bias.copy_(shift)  # u = η + c exactly
    optimizer = torch.optim.Adam(model.discriminator.parameters(), lr=3e-3)
    x = torch.rand(256, 4).bernoulli()
    for _ in range(1500):
        with torch.no_grad():
            _, condition, _, z_q, _ = model.contrast(x)
        loss = ratio_loss(model.logit(condition, z_q), model.logit(condition, model.reference_sample(len(x))))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        _, condition, _, z_q, _ = model.contrast(x)
        analytic = z_q @ shift - 0.5 * shift.pow(2).sum()
        error = (model.logit(condition, z_q) - analytic).abs().mean()
    assert error < 0.1, error


def test_each_algorithm_logs_its_losses(tmp_path):
    dm = Toy2DDataModule("explaining_away", num_samples=512, batch_size=64)
    expected = {
        VAE: {"train/elbo", "train/loss_encoder"},
        PCAdv: {"train/loss_discriminator", "train/discriminator_accuracy", "train/elbo", "train/loss_encoder"},
        PCDen: {"train/loss_denoiser", "train/denoiser_error", "train/loss_encoder"},
    }
    for algorithm, keys in expected.items():
        trainer = quiet_trainer(tmp_path, max_steps=4, limit_val_batches=0)
        trainer.fit(algorithm(latent_dim=2, data_shape=1, learn_model=False, hidden=(16,)), dm)
        assert keys <= set(trainer.callback_metrics), (algorithm.__name__, set(trainer.callback_metrics))


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("*/*.yaml") if p.parent.name in {"vae", "pc_adv", "pc_den"} and "mnist" not in p.name and "celeba" not in p.name))
def test_cli_config_fast_dev_run(config, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cli_main(["fit", "--config", config, "--trainer.fast_dev_run", "2", "--trainer.default_root_dir", str(tmp_path), "--model.init_args.hidden", "[16]"])


def test_cli_prints_config_with_linked_data_shape(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", "configs/pc_adv/explaining_away.yaml", "--print_config"])
    printed = capsys.readouterr().out
    assert "class_path: ivi_lightning.PCAdv" in printed and "dataset: explaining_away" in printed


def train_and_score(algorithm, steps, seed=0, **kwargs):
    pl.seed_everything(seed)
    dm = Toy2DDataModule("explaining_away", num_samples=20000, batch_size=256, seed=seed)
    model = algorithm(latent_dim=2, data_shape=1, learn_model=False, **kwargs)
    pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(model, dm)
    js = posterior_js(model.sample_posterior, dm.prior, dm.likelihood, dm.evaluation_points, 20000, dm.latent_extent)
    return float(js.mean())


@pytest.fixture(scope="module")
def vae_js():
    return train_and_score(VAE, steps=1000)


@pytest.mark.parametrize("algorithm", [PCAdv, PCDen])
def test_implicit_posterior_beats_gaussian_vae_on_explaining_away(algorithm, vae_js):
    # Same number of encoder updates (each of ours is aux_steps + 1 optimizer steps).
    steps_per_update = algorithm(latent_dim=2, data_shape=1, learn_model=False).hparams.aux_steps + 1
    js = train_and_score(algorithm, steps=1000 * steps_per_update)
    assert js < 0.6 * vae_js, f"{algorithm.__name__} JS {js:.4f} vs VAE {vae_js:.4f}"
