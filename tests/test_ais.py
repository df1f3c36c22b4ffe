"""AIS and IWAE log-likelihoods against exact answers; the AIS callback and the evaluate CLI."""

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from datamodules import Toy2DDataModule
from ivi_lightning import VAE, GaussianLikelihood, ImplicitLikelihood, StandardNormalPrior
from ivi_lightning.callbacks import AISCallback
from ivi_lightning.evaluation import (
    annealed_importance_sampling,
    ais_log_marginal,
    grid_log_marginal,
    iwae_bound,
    temperature_schedule,
)


class LinearGaussian:
    """``z ~ N(0, I₄)``, ``x = W z + b + σ ε`` in 6-D: ``p(x) = N(b, W Wᵀ + σ² I)`` and
    ``p(z|x)`` are Gaussian in closed form."""

    def __init__(self, batch: int = 8, latent: int = 4, data: int = 6, sigma: float = 0.5, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.W, self.b, self.sigma = torch.randn(data, latent, generator=g), torch.randn(data, generator=g), sigma
        decoder = nn.Linear(latent, data)
        decoder.weight.data.copy_(self.W)
        decoder.bias.data.copy_(self.b)
        self.prior = StandardNormalPrior(latent)
        self.likelihood = GaussianLikelihood(decoder, data, init_std=sigma).requires_grad_(False)
        z = torch.randn(batch, latent, generator=g)
        self.x = z @ self.W.T + self.b + sigma * torch.randn(batch, data, generator=g)
        marginal = torch.distributions.MultivariateNormal(self.b, self.W @ self.W.T + sigma**2 * torch.eye(data))
        self.exact = marginal.log_prob(self.x).double()
        self.posterior_cov = torch.linalg.inv(torch.eye(latent) + self.W.T @ self.W / sigma**2)
        self.posterior_mean = (self.posterior_cov @ self.W.T @ (self.x - self.b).T).T / sigma**2


class DiagonalEncoder(nn.Module):
    """``q(z|x)``: the exact posterior mean and marginal stds (times ``scale``) but no correlations, so ``q ≠ p(z|x)``."""

    def __init__(self, problem: LinearGaussian, scale: float) -> None:
        super().__init__()
        self.problem, self.scale = problem, scale

    def moments(self, x: Tensor):
        assert x is self.problem.x
        std = self.problem.posterior_cov.diagonal().sqrt() * self.scale
        return self.problem.posterior_mean, std.expand_as(self.problem.posterior_mean)


@pytest.fixture(scope="module")
def linear_gaussian():
    return LinearGaussian()


@pytest.fixture(scope="module")
def ais_errors(linear_gaussian):
    """Per-example AIS errors (nats) at 200 and 2,000 temperatures, 64 chains, 5 leapfrog steps."""
    errors = {}
    for temperatures in (200, 2000):
        torch.manual_seed(0)
        result = annealed_importance_sampling(
            linear_gaussian.prior, linear_gaussian.likelihood, linear_gaussian.x, num_temperatures=temperatures, num_chains=64, leapfrog_steps=5
        )
        assert 0.55 < float(result.acceptance.mean()) < 0.8  # the step size adapts towards 0.65 acceptance
        errors[temperatures] = result.log_marginal - linear_gaussian.exact
    return errors


def test_ais_linear_gaussian_within_a_tenth_of_a_nat(ais_errors):
    error = ais_errors[2000]
    assert error.abs().mean() < 0.1, error
    assert error.abs().max() < 0.2, error


def test_ais_error_shrinks_with_more_temperatures(ais_errors):
    few, many = ais_errors[200].abs().mean(), ais_errors[2000].abs().mean()
    assert many < few, (few, many)
    assert many < 0.07, many


def test_ais_explaining_away_matches_grid():
    data = Toy2DDataModule("explaining_away")
    x = data.evaluation_points
    exact = grid_log_marginal(data.prior, data.likelihood, x, extent=12.0, resolution=512)
    estimate = ais_log_marginal(data.prior, data.likelihood, x, num_temperatures=500, num_chains=64, leapfrog_steps=5)
    assert (estimate - exact).abs().max() < 0.1, (estimate, exact)


def test_ais_works_under_inference_mode_and_keeps_shapes(linear_gaussian):
    with torch.inference_mode():
        result = annealed_importance_sampling(linear_gaussian.prior, linear_gaussian.likelihood, linear_gaussian.x[:3], 20, 4, 2)
    assert result.log_marginal.shape == (3,) and result.log_weights.shape == (3, 4)
    assert result.acceptance.shape == result.step_size.shape == (3,)
    assert torch.isfinite(result.log_weights).all()


def test_temperature_schedules():
    for schedule in ("sigmoid", "linear"):
        betas = temperature_schedule(50, schedule)
        assert betas.shape == (51,) and betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    sigmoid = temperature_schedule(50, "sigmoid")
    assert sigmoid[1] < 1 / 50  # denser near the prior than a linear schedule


def test_iwae_below_exact_and_rising_with_k(linear_gaussian):
    encoder = DiagonalEncoder(linear_gaussian, scale=1.0)
    args = dict(prior=linear_gaussian.prior, likelihood=linear_gaussian.likelihood)
    bounds = {}
    for k in (1, 10, 100, 2000):
        torch.manual_seed(0)
        bounds[k] = torch.stack([iwae_bound(encoder, linear_gaussian.x, k, chunk_size=500, **args) for _ in range(4)]).mean(0).double()
    gaps = {k: float((linear_gaussian.exact - b).mean()) for k, b in bounds.items()}
    assert gaps[1] > gaps[10] > gaps[100] > gaps[2000] > -0.02, gaps
    assert gaps[1] > 1.0 and gaps[2000] < 0.02, gaps


def test_iwae_takes_parts_from_a_vae():
    torch.manual_seed(0)
    model = VAE(latent_dim=2, data_shape=4, hidden=(8,))
    x = torch.eye(4)
    bound = iwae_bound(model, x, 16)
    assert bound.shape == (4,) and (bound < 0).all()  # binary data: log p(x) < 0


def test_bad_input_gets_clear_errors(linear_gaussian):
    prior, lik, x = linear_gaussian.prior, linear_gaussian.likelihood, linear_gaussian.x
    with pytest.raises(ValueError, match="implicit.*IWAE"):
        annealed_importance_sampling(prior, ImplicitLikelihood(4, 6, hidden=(8,)), x, 10, 2, 2)
    with pytest.raises(ValueError, match="num_temperatures must be a positive"):
        annealed_importance_sampling(prior, lik, x, 0, 2, 2)
    with pytest.raises(ValueError, match="num_chains must be a positive"):
        annealed_importance_sampling(prior, lik, x, 10, 0, 2)
    with pytest.raises(ValueError, match="unknown temperature schedule"):
        annealed_importance_sampling(prior, lik, x, 10, 2, 2, schedule="cosine")
    with pytest.raises(ValueError, match="explicit Gaussian q"):
        iwae_bound(nn.Linear(6, 4), x, 4, prior=prior, likelihood=lik)
    with pytest.raises(ValueError, match="num_samples must be"):
        iwae_bound(DiagonalEncoder(linear_gaussian, 1.0), x, 0, prior=prior, likelihood=lik)
    with pytest.raises(ValueError, match="num_chains must be"):
        AISCallback(num_chains=0)
    with pytest.raises(ValueError, match="stages"):
        AISCallback(stages=("fit",))


def _trained_vae(steps: int = 30):
    pl.seed_everything(0)
    data = Toy2DDataModule("four_points", num_samples=512, batch_size=64)
    model = VAE(latent_dim=2, data_shape=4, likelihood_family="bernoulli", generator_activation="relu")  # configs/vae/four_points.yaml's model
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    return model, data, trainer


def test_callback_logs_ais_on_test_and_matches_the_grid():
    model, data, trainer = _trained_vae()
    test_model = VAE(latent_dim=2, data_shape=4, likelihood_family="bernoulli", generator_activation="relu")
    test_model.load_state_dict(model.state_dict())
    callback = AISCallback(num_temperatures=200, num_chains=16, leapfrog_steps=5, max_examples=8, iwae_samples=64)
    tester = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    (metrics,) = tester.test(test_model, dataloaders=data.val_dataloader())
    for key in ("test/ais_loglik", "test/ais_loglik_std", "test/ais_acceptance", "test/iwae", "test/iwae_std"):
        assert key in metrics, metrics
    # The examples are one-hot vectors: the exact log-likelihoods are four grid values.
    exact = grid_log_marginal(test_model.prior, test_model.likelihood, torch.eye(4), extent=5.0, resolution=128)
    expected = float(exact[data.val_set.tensors[0][:8].argmax(1)].mean())
    assert abs(metrics["test/ais_loglik"] - expected) < 0.05, (metrics, expected, exact)
    # A bound in expectation; the 64-sample estimate is tight here to ~0.01 and as noisy.
    assert metrics["test/iwae"] <= expected + 0.02
    assert "test/elbo" in metrics and metrics["test/elbo"] <= metrics["test/iwae"] + 0.05


def test_evaluate_cli_on_a_checkpoint(tmp_path, capsys):
    from ivi_lightning.evaluate import main

    model, _, trainer = _trained_vae()
    ckpt = tmp_path / "vae.ckpt"
    trainer.save_checkpoint(str(ckpt))
    results = main([
        "--config", "configs/vae/four_points.yaml", "--ckpt_path", str(ckpt), "--num_temperatures", "200",
        "--num_chains", "16", "--leapfrog_steps", "5", "--max_examples", "8", "--iwae_samples", "64", "--device", "cpu",
    ])
    out = capsys.readouterr().out
    assert "| VAE | four_points | val |" in out and "AIS log p(x)" in out
    # The checkpoint's model was loaded: the four exact log-likelihoods bound the mean.
    exact = grid_log_marginal(model.prior, model.likelihood, torch.eye(4), extent=5.0, resolution=128)
    assert float(exact.min()) - 0.05 < results["ais"] < float(exact.max()) + 0.05, (results, exact)
    assert results["iwae"] <= results["ais"] + 0.05 and results["examples"] == 8
    with pytest.raises(SystemExit) as exit:
        main(["--config", "configs/vae/four_points.yaml", "--ckpt_path", str(tmp_path / "missing.ckpt")])
    assert exit.value.code == 2 and "missing.ckpt' does not exist" in capsys.readouterr().err
