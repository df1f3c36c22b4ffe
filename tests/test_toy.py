"""Exact answers on the toy problems: grid posterior, JS divergence, log-likelihood."""
import math

import pytest
import torch

from datamodules import Toy2DDataModule
from datamodules.toy2d import ExplainingAwayLikelihood
from ivi_lightning import GaussianLikelihood, StandardNormalPrior
from ivi_lightning.evaluation import exact_posterior_grid, grid_log_marginal, js_divergence, latent_grid, posterior_js


class LinearDecoder(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def forward(self, z):
        return z @ self.weight.T


def test_grid_log_marginal_matches_linear_gaussian_closed_form():
    weight = torch.tensor([[1.0, 0.5], [-0.3, 2.0], [0.2, 0.1]])
    likelihood = GaussianLikelihood(LinearDecoder(weight), data_shape=3, init_std=0.5)
    x = torch.randn(5, 3)
    covariance = weight @ weight.T + 0.25 * torch.eye(3)
    exact = torch.distributions.MultivariateNormal(torch.zeros(3), covariance).log_prob(x)
    estimate = grid_log_marginal(StandardNormalPrior(2), likelihood, x, extent=6.0, resolution=400)
    torch.testing.assert_close(estimate.float(), exact, atol=2e-3, rtol=0)


def test_exact_samples_score_near_zero_and_prior_samples_do_not():
    dm = Toy2DDataModule("explaining_away")
    x, extent = dm.evaluation_points, dm.latent_extent
    grid, _ = latent_grid(extent, 256)

    def exact_sampler(obs, n):
        probs = exact_posterior_grid(dm.prior, dm.likelihood, obs, extent, 256).flatten(1)
        index = torch.multinomial(probs.float(), n, replacement=True)
        jitter = (torch.rand(*index.shape, 2, dtype=torch.float64) - 0.5) * 2 * extent / 256
        return (grid[index] + jitter).permute(1, 0, 2)

    exact = posterior_js(exact_sampler, dm.prior, dm.likelihood, x, extent=extent)
    prior = posterior_js(lambda obs, n: dm.prior.sample(n * len(obs)).view(n, len(obs), 2), dm.prior, dm.likelihood, x, extent=extent)
    assert exact.max() < 0.006
    assert prior.min() > 0.02 and prior.max() > 0.1


def test_js_divergence_bounds():
    p = torch.tensor([0.5, 0.5, 0.0])
    assert js_divergence(p, p) == 0.0
    assert js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == pytest.approx(math.log(2))


def test_explaining_away_posterior_is_two_lobed_for_small_x():
    dm = Toy2DDataModule("explaining_away")
    post = exact_posterior_grid(dm.prior, dm.likelihood, torch.tensor([[0.01]]), dm.latent_extent, 60)[0]
    # Mass where exactly one coordinate is large exceeds mass where both are.
    z, _ = latent_grid(dm.latent_extent, 60)
    one_large = ((z[:, 0] > 1.5) ^ (z[:, 1] > 1.5)).view(60, 60)
    both_large = ((z[:, 0] > 1.5) & (z[:, 1] > 1.5)).view(60, 60)
    assert post[one_large].sum() > 5 * post[both_large].sum()


def test_explaining_away_data_follow_the_model():
    dm = Toy2DDataModule("explaining_away", num_samples=40000)
    dm.setup()
    x = dm.train_set.tensors[0]
    # E[x] = E[1 / rate(z)] under the prior, by Monte Carlo with the same model.
    z = dm.prior.sample(200000)
    expected = (1 / ExplainingAwayLikelihood().rate(z)).mean()
    assert abs(x.mean() - expected) < 0.01


@pytest.mark.parametrize("name,shape", [("four_points", (4,)), ("explaining_away", (1,)), ("ring", (2,)), ("grid", (2,))])
def test_toy_batches(name, shape):
    dm = Toy2DDataModule(name, num_samples=1000, batch_size=64)
    dm.setup()
    (batch,) = next(iter(dm.train_dataloader()))
    assert batch.shape == (64, *shape) and dm.data_shape == shape


def test_four_points_optimum_is_minus_log_4():
    # A decoder that is certain of one point per quadrant reaches the optimum.
    class Quadrants(torch.nn.Module):
        def forward(self, z):
            index = (z[:, 0] > 0).long() * 2 + (z[:, 1] > 0).long()
            return 40.0 * (2 * torch.nn.functional.one_hot(index, 4).float() - 1)

    from ivi_lightning import BernoulliLikelihood

    loglik = grid_log_marginal(StandardNormalPrior(2), BernoulliLikelihood(Quadrants()), torch.eye(4), 4.0, 256).mean()
    assert loglik == pytest.approx(-math.log(4), abs=1e-3)


def test_unknown_toy_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown toy dataset 'moons'.*four_points"):
        Toy2DDataModule("moons")
