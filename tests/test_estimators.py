"""The shared estimators recover analytic answers."""
import math

import torch
from torch import nn

from ivi_lightning.estimators import (
    denoiser_score,
    denoising_loss,
    diagonal_normal_log_prob,
    gaussian_moments,
    ratio_accuracy,
    ratio_loss,
    score_surrogate,
    standard_normal_log_prob,
)
from ivi_lightning.nets import MLP, Denoiser


def test_ratio_loss_recovers_analytic_log_ratio_of_two_gaussians():
    # log N(u; m, s²) − log N(u; 0, 1) in 2-D, learned by logistic regression.
    m, s = torch.tensor([1.0, -0.5]), 0.7
    logit = MLP(2, 1, hidden=(64, 64))
    opt = torch.optim.Adam(logit.parameters(), lr=3e-3)
    for _ in range(1500):
        num, den = m + s * torch.randn(512, 2), torch.randn(512, 2)
        loss = ratio_loss(logit(num).squeeze(1), logit(den).squeeze(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    u = 0.5 * (m + s * torch.randn(2000, 2)) + 0.5 * torch.randn(2000, 2)  # where both have mass
    analytic = diagonal_normal_log_prob(u, m.expand_as(u), torch.full_like(u, s)) - standard_normal_log_prob(u)
    error = (logit(u).squeeze(1) - analytic).abs().median()
    assert error < 0.1, f"median |T − log ratio| = {error:.3f}"


def test_ratio_loss_minimum_is_at_true_ratio_for_fixed_logits():
    # For two point masses with known probabilities, the loss is minimised by the exact logit.
    t = torch.linspace(-3, 3, 601)
    p_num, p_den = 0.8, 0.3  # P(u = 1) under numerator / denominator
    # only u=1 contributes a logit t; u=0 has logit log(0.2/0.7)
    t0 = math.log(0.2 / 0.7)
    loss = (p_num * nn.functional.softplus(-t) + (1 - p_num) * nn.functional.softplus(torch.tensor(-t0))
            + p_den * nn.functional.softplus(t) + (1 - p_den) * nn.functional.softplus(torch.tensor(t0)))
    assert abs(t[loss.argmin()].item() - math.log(p_num / p_den)) < 0.011


def test_ratio_accuracy_counts_both_sides():
    assert ratio_accuracy(torch.tensor([1.0, 1.0]), torch.tensor([1.0, -1.0])).item() == 0.75


def test_denoiser_score_matches_gaussian_score():
    # q(z|x) = N(x·a, s²) per coordinate; the denoiser's score is that of q smoothed by σ.
    a, s, sigma = torch.tensor([1.0, -2.0]), 0.5, 0.2
    denoiser = Denoiser(data_shape=1, latent_dim=2, noise_std=sigma, hidden=(64, 64))
    opt = torch.optim.Adam(denoiser.parameters(), lr=3e-3)
    for _ in range(2000):
        x = torch.rand(512, 1)
        z = x * a + s * torch.randn(512, 2)
        loss = denoising_loss(denoiser(z + sigma * torch.randn_like(z), x), z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.rand(2000, 1)
    z = x * a + s * torch.randn(2000, 2)
    with torch.no_grad():
        estimate = denoiser_score(denoiser(z, x), z, sigma)
    analytic = -(z - x * a) / (s**2 + sigma**2)
    relative = (estimate - analytic).norm(dim=1).mean() / analytic.norm(dim=1).mean()
    assert relative < 0.15, f"relative score error {relative:.3f}"


def test_score_surrogate_gradient_is_the_score():
    z = torch.randn(4, 3, requires_grad=True)
    score = torch.randn(4, 3)
    score_surrogate(z, score).sum().backward()
    torch.testing.assert_close(z.grad, score)


def test_gaussian_moments_are_detached_and_floored():
    z = torch.zeros(5, 2, 3, requires_grad=True)
    mean, std = gaussian_moments(z, min_std=1e-3)
    assert not mean.requires_grad and not std.requires_grad
    assert torch.all(std == 1e-3)


def test_gaussian_moments_rejects_single_sample():
    import pytest

    with pytest.raises(ValueError, match="num_samples >= 2"):
        gaussian_moments(torch.zeros(1, 2, 3))


def test_diagonal_normal_log_prob_matches_torch():
    z, mean, std = torch.randn(7, 3), torch.randn(7, 3), torch.rand(7, 3) + 0.1
    expected = torch.distributions.Normal(mean, std).log_prob(z).sum(-1)
    torch.testing.assert_close(diagonal_normal_log_prob(z, mean, std), expected)
