"""Exact answers on problems with a 2-D latent: grid posteriors, JS divergence, log-likelihood.

With a 2-D latent, ``p(z|x) ∝ p(z) p(x|z)`` can be evaluated on a fine grid; integrating it
gives ``log p(x)``, and histogramming posterior samples on the same cells gives a divergence
that needs no density of ``q``.
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import torch
from torch import Tensor

from ivi_lightning.distributions import Likelihood, Prior, require_log_prob


def latent_grid(extent: float, resolution: int) -> Tuple[Tensor, float]:
    """Centres ``[resolution², 2]`` of a square grid on ``[−extent, extent]²`` and the cell area.

    Row-major: index ``i * resolution + j`` is ``(z₁ = centre_i, z₂ = centre_j)``.
    """
    width = 2 * extent / resolution
    centres = -extent + width * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    return torch.cartesian_prod(centres, centres), width**2


def _check_model(prior: Prior, likelihood: Likelihood) -> None:
    require_log_prob(prior, "prior", "exact grid evaluation")
    require_log_prob(likelihood, "likelihood", "exact grid evaluation")


@torch.no_grad()
def log_joint_grid(
    prior: Prior, likelihood: Likelihood, x: Tensor, extent: float = 4.0, resolution: int = 256
) -> Tuple[Tensor, float]:
    """``log p(z) + log p(x|z)`` at every grid cell for each observation: ``[batch, res, res]``."""
    _check_model(prior, likelihood)
    z, area = latent_grid(extent, resolution)
    anchor = next(iter(list(prior.buffers()) + list(prior.parameters())), torch.zeros(()))
    z = z.to(device=anchor.device, dtype=torch.float32)
    rows = []
    for obs in x:
        x_rep = obs.unsqueeze(0).expand(z.shape[0], *obs.shape)
        rows.append(
            (prior.log_prob(z) + likelihood.log_prob(x_rep, z)).double().cpu().view(resolution, resolution)
        )
    return torch.stack(rows), area


def exact_posterior_grid(
    prior: Prior, likelihood: Likelihood, x: Tensor, extent: float = 4.0, resolution: int = 256
) -> Tensor:
    """Posterior mass of each grid cell, ``[batch, res, res]``, each slice summing to one."""
    log_joint, _ = log_joint_grid(prior, likelihood, x, extent, resolution)
    return torch.softmax(log_joint.flatten(1), 1).view_as(log_joint)


def grid_log_marginal(
    prior: Prior, likelihood: Likelihood, x: Tensor, extent: float = 4.0, resolution: int = 256
) -> Tensor:
    """``log p(x) = log ∫ p(z) p(x|z) dz`` by midpoint quadrature on the grid, ``[batch]``.

    Accurate when the grid covers the prior's mass (``extent ≥ 4`` for ``N(0, I)`` loses
    ~1e-4) and is fine enough for the likelihood's sharpness.
    """
    log_joint, area = log_joint_grid(prior, likelihood, x, extent, resolution)
    return torch.logsumexp(log_joint.flatten(1), 1) + math.log(area)


def sample_histogram(samples: Tensor, extent: float, resolution: int) -> Tensor:
    """Share of ``samples [n, 2]`` in each grid cell, plus one last entry for those outside.

    Returns ``[resolution² + 1]``, summing to one.
    """
    samples = samples.detach().double().cpu()
    cell = torch.floor((samples + extent) / (2 * extent) * resolution).long()
    inside = ((cell >= 0) & (cell < resolution)).all(1)
    index = torch.where(
        inside, cell[:, 0] * resolution + cell[:, 1], torch.full_like(cell[:, 0], resolution**2)
    )
    return torch.bincount(index, minlength=resolution**2 + 1).double() / samples.shape[0]


def js_divergence(p: Tensor, q: Tensor) -> float:
    """Jensen–Shannon divergence in nats between two discrete distributions of the same shape.

    >>> js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))  # log 2 at most
    0.6931471805599453
    """
    p, q = p.double().flatten(), q.double().flatten()
    m = 0.5 * (p + q)

    def kl(a: Tensor) -> Tensor:
        mask = a > 0
        return (a[mask] * (a[mask] / m[mask]).log()).sum()

    return float(0.5 * kl(p) + 0.5 * kl(q))


def posterior_js(
    sample_posterior: Callable[[Tensor, int], Tensor],
    prior: Prior,
    likelihood: Likelihood,
    x: Tensor,
    num_samples: int = 50000,
    extent: float = 4.0,
    resolution: int = 32,
    oversample: int = 4,
) -> Tensor:
    """JS divergence (nats) between ``q(z|x)`` samples and the exact posterior, per observation.

    The exact posterior's own samples score slightly above 0 (finite-sample bias; the floor is
    given on the Toy benchmarks page of the docs). The exact posterior is integrated on a grid
    ``oversample`` times finer than the histogram cells, then summed into them; ``q``'s mass
    outside ``[−extent, extent]²`` counts as a miss.

    Args:
        sample_posterior: ``(x, num_samples) -> [num_samples, batch, 2]``, e.g. an algorithm's.
        prior: ``p(z)`` with ``log_prob``.
        likelihood: ``p(x|z)`` with ``log_prob``.
        x: observations ``[batch, *data_shape]``.
        num_samples: posterior samples per observation.
        extent: half-width of the square the histogram covers.
        resolution: histogram cells per axis.
        oversample: quadrature points per cell and axis.
    """
    fine = exact_posterior_grid(prior, likelihood, x, extent, resolution * oversample)
    exact = fine.view(-1, resolution, oversample, resolution, oversample).sum((2, 4)).flatten(1)
    exact = torch.cat([exact, torch.zeros(exact.shape[0], 1, dtype=exact.dtype)], 1)
    with torch.no_grad():
        samples = sample_posterior(x, num_samples)
    if samples.shape[-1] != 2:
        raise ValueError(f"posterior_js needs a 2-D latent, got samples of shape {tuple(samples.shape)}")
    return torch.tensor(
        [
            js_divergence(sample_histogram(samples[:, i], extent, resolution), exact[i])
            for i in range(x.shape[0])
        ]
    )
