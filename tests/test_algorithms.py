"""Every algorithm trains through the Trainer and the CLI, and the implicit ones beat the VAE."""
import math
import pathlib

import pytest
import pytorch_lightning as pl
import torch

from datamodules import Toy2DDataModule
from ivi_lightning import PCAdv, PCDen, VAE
from ivi_lightning.cli import main as cli_main
from ivi_lightning.estimators import denoising_loss, ratio_loss
from ivi_lightning.evaluation import posterior_js
from ivi_lightning.nets import GaussianEncoder, ImplicitEncoder, LocationScaleEncoder

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
    assert not model.uses_location_scale
    quiet_trainer(tmp_path, fast_dev_run=2).fit(model, dm)
    assert model.elbo_estimate(torch.eye(4)).shape == (4 * 4,)


class _FixedWarp(LocationScaleEncoder):
    """A location-scale encoder whose standardised noise ``u`` has a known law (``law(shape)``)."""

    def __init__(self, latent_dim, law):
        super().__init__(GaussianEncoder(4, latent_dim, hidden=(16,)), latent_dim, hidden=(8,))
        self.law = law

    def warped_noise(self, mean, std, num_samples=1):
        return self.law((num_samples, *mean.shape))


def test_location_scale_contrast_tracks_q_actual_spread():
    """q = N(μ, (0.2σ)²) exactly: with T = 0 the KL estimate is the analytic KL, not that of N(μ, σ²).

    The reference must have q's spread: its score then resists a collapsing q analytically.
    """
    encoder = _FixedWarp(3, lambda shape: 0.2 * torch.randn(shape))
    model = PCAdv(latent_dim=3, data_shape=4, adaptive_contrast=True, prior_aware=False, contrast_samples=256, hidden=(16,), encoder=encoder)
    assert model.uses_location_scale
    for p in model.discriminator.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1000, 4).bernoulli()
    with torch.no_grad():
        _, condition, _, z_contrast, correction = model.contrast(x)
        kl_estimate = model.logit(condition, z_contrast) + correction
        mean, std = encoder.location_scale(x)
        s = 0.2 * std
        analytic = (0.5 * (s**2 + mean**2 - 1) - s.log()).sum(-1)
    assert abs(float(kl_estimate.mean() - analytic.mean())) < 0.1


def _two_gaussians(shape):
    """``u``'s law in the location-scale tests: ½N(−1, ¼) + ½N(1, ¼)."""
    return 0.5 * torch.randn(shape) + torch.randint(0, 2, shape) * 2.0 - 1.0


def _adam_steps(parameters, loss, steps):
    """``steps`` Adam updates (lr 3e-3) of ``parameters`` on a fresh ``loss()`` each."""
    optimizer = torch.optim.Adam(parameters, lr=3e-3)
    for _ in range(steps):
        value = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()


def test_location_scale_discriminator_learns_the_analytic_log_ratio():
    """u a two-Gaussian mixture: T(μ, log σ, z̃) → log q(z̃) − log N(z̃; 0, 1) of the standardised mixture."""
    torch.manual_seed(0)
    model = PCAdv(latent_dim=1, data_shape=4, adaptive_contrast=True, contrast_samples=512, hidden=(64, 64), encoder=_FixedWarp(1, _two_gaussians))
    x = torch.rand(256, 4).bernoulli()

    def loss():
        with torch.no_grad():
            _, condition, _, z_q, _ = model.contrast(x)
        return ratio_loss(model.logit(condition, z_q), model.logit(condition, model.reference_sample(len(x))))

    _adam_steps(model.discriminator.parameters(), loss, 1500)
    scale = 1.25**0.5  # u's std: the reference standardises u to z̃ = u / scale
    with torch.no_grad():
        _, condition, _, z_q, _ = model.contrast(x)
        t = z_q.squeeze(1)
        mixture = torch.logsumexp(torch.stack([torch.distributions.Normal(c / scale, 0.5 / scale).log_prob(t) for c in (-1.0, 1.0)]), 0) - math.log(2)
        analytic = mixture - torch.distributions.Normal(0.0, 1.0).log_prob(t)
        error = (model.logit(condition, z_q) - analytic).abs().mean()
    assert error < 0.15, error


@pytest.mark.parametrize("draws, steps", [(1, 3000), (6, 500)])
def test_location_scale_denoiser_learns_the_analytic_score_of_u(draws, steps):
    """u a two-Gaussian mixture: the u-space denoiser's score → that of the mixture smoothed at
    noise_std; with several draws of u per example in each update, in proportionally fewer updates."""
    torch.manual_seed(0)
    model = PCDen(latent_dim=1, data_shape=4, location_scale=True, noise_std=0.3, hidden=(64, 64), encoder=_FixedWarp(1, _two_gaussians))
    x = torch.rand(256, 4).bernoulli()

    def loss():
        with torch.no_grad():
            clean, condition = model.denoiser_sample(x, num_samples=draws)
        return denoising_loss(model.denoiser(clean + 0.3 * torch.randn_like(clean), condition), clean)

    _adam_steps(model.denoiser.parameters(), loss, steps)
    u = (_two_gaussians((4096, 1)) + 0.3 * torch.randn(4096, 1)).requires_grad_(True)  # where the encoder step evaluates it
    smoothed = torch.logsumexp(torch.stack([torch.distributions.Normal(c, (0.25 + 0.09) ** 0.5).log_prob(u) for c in (-1.0, 1.0)]), 0)
    analytic = torch.autograd.grad(smoothed.sum(), u)[0]
    _, condition = model.denoiser_sample(torch.rand(4096, 4).bernoulli())
    relative_error = (model.posterior_score(condition, u.detach()) - analytic).abs().mean() / analytic.abs().mean()
    # (1, 3000), seeds 0–2: 0.11, 0.17, 0.11 (against the unsmoothed mixture's score 0.39); (6, 500), seeds 0–1:
    # 0.11, 0.09, where one draw in 500 updates gives 0.30 at seed 1.
    assert relative_error < 0.25, relative_error


@pytest.mark.parametrize("location_scale", [False, True])
def test_denoiser_samples_are_draws_of_each_example_under_its_own_condition(location_scale):
    """``denoiser_sample(x, num_samples=k)``: k independent posterior draws per example, stacked
    along the batch, each beside its own example's condition (a mix-up would teach the wrong score)."""
    torch.manual_seed(0)
    model = PCDen(latent_dim=2, data_shape=4, location_scale=location_scale, hidden=(16,))
    x = torch.rand(5, 4).bernoulli()
    with torch.no_grad():
        clean, condition = model.denoiser_sample(x, num_samples=3)
        single_clean, single_condition = model.denoiser_sample(x)
    assert clean.shape == (15, 2) and condition.shape == (15, *single_condition.shape[1:])
    assert torch.equal(condition.view(3, 5, -1), single_condition.unsqueeze(0).expand(3, 5, -1).reshape(3, 5, -1))
    draws = clean.view(3, 5, 2)
    assert not torch.allclose(draws[0], draws[1])  # independent draws, not one draw repeated


@pytest.mark.parametrize("algorithm, options", [(PCAdv, dict(adaptive_contrast=True)), (PCDen, dict(location_scale=True))])
def test_location_scale_encoder_runs_once_per_update_and_still_trains(algorithm, options, tmp_path):
    """(μ, σ) of the (image-sized) Gaussian part is computed once per update and shared by the
    auxiliary steps (detached) and the encoder step (with its graph): no extra encoder passes."""
    dm = Toy2DDataModule("explaining_away", num_samples=512, batch_size=64)
    model = algorithm(latent_dim=2, data_shape=1, learn_model=False, hidden=(16,), aux_steps=3, **options)
    calls, moments = [], model.encoder.gaussian.moments
    # counted in training (the setup's probe of the parts runs in eval mode)
    model.encoder.gaussian.moments = lambda x: (calls.append(x.shape[0]) if model.encoder.training else None) or moments(x)
    before = [p.detach().clone() for p in model.encoder.gaussian.parameters()]
    quiet_trainer(tmp_path, max_steps=2 * (1 + 3), limit_val_batches=0).fit(model, dm)  # 2 batches
    assert calls == [64, 64]
    assert all(not torch.equal(a, b) for a, b in zip(before, model.encoder.gaussian.parameters()))


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


def test_console_script_exits_zero_after_a_successful_run(tmp_path, monkeypatch):
    """The `ivi` script as installed (setup.cfg's entry point, called the way its wrapper does)."""
    import configparser
    import importlib
    import sys

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    target = dict(line.split("=", 1) for line in config["options.entry_points"]["console_scripts"].strip().splitlines())["ivi "].strip()
    module, function = target.split(":")
    entry = getattr(importlib.import_module(module), function)
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["ivi", "fit", "--config", "configs/pc_adv/explaining_away.yaml", "--trainer.fast_dev_run", "1",
                                      "--trainer.default_root_dir", str(tmp_path), "--model.init_args.hidden", "[8]"])
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(entry())
    assert exit_info.value.code in (None, 0)


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


@pytest.mark.parametrize("algorithm, options", [(PCAdv, {}), (PCDen, {}), (PCDen, dict(location_scale=True))])
def test_implicit_posterior_beats_gaussian_vae_on_explaining_away(algorithm, options, vae_js):
    # Same number of encoder updates (each of ours is aux_steps + 1 optimizer steps).
    steps_per_update = algorithm(latent_dim=2, data_shape=1, learn_model=False).hparams.aux_steps + 1
    js = train_and_score(algorithm, steps=1000 * steps_per_update, **options)
    assert js < 0.6 * vae_js, f"{algorithm.__name__}({options}) JS {js:.4f} vs VAE {vae_js:.4f}"
