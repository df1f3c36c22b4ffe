"""Explicit priors and decoder likelihoods."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ivi_lightning.distributions.base import Likelihood, Prior
from ivi_lightning.shapes import DataShape, as_shape


class NormalPrior(Prior):
    """Isotropic Gaussian ``N(0, std² I)``.

    Args:
        dim: latent dimension.
        std: standard deviation of every coordinate.

    >>> NormalPrior(3, std=2.0).sample(5).shape
    torch.Size([5, 3])
    """

    def __init__(self, dim: int, std: float = 1.0) -> None:
        super().__init__(dim)
        if std <= 0:
            raise ValueError(f"NormalPrior std must be positive, got {std}")
        self.std = float(std)

    def sample(self, num_samples: int) -> Tensor:
        return self.std * torch.randn(
            num_samples, self.dim, device=self._anchor.device, dtype=self._anchor.dtype
        )

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z / self.std).pow(2).sum(-1) - self.dim * (
            math.log(self.std) + 0.5 * math.log(2 * math.pi)
        )

    def score(self, z: Tensor) -> Tensor:
        return -z / self.std**2


class StandardNormalPrior(NormalPrior):
    """``N(0, I)``, the usual VAE prior.

    Args:
        dim: latent dimension.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim, std=1.0)


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels whose logits are ``decoder(z)``.

    Args:
        decoder: network mapping ``[batch, latent_dim]`` to logits ``[batch, *data_shape]``.
    """

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def sample(self, z: Tensor) -> Tensor:
        return torch.bernoulli(torch.sigmoid(self.decoder(z)))

    def mean(self, z: Tensor) -> Tensor:
        """Pixel probabilities, handy for image grids."""
        return torch.sigmoid(self.decoder(z))

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        logits = self.decoder(z)
        return (
            -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
            .flatten(1)
            .sum(1)
        )


class GaussianLikelihood(Likelihood):
    """Gaussian ``N(decoder(z), σ²)`` with a learned per-feature ``log σ``.

    Args:
        decoder: network mapping ``[batch, latent_dim]`` to means ``[batch, *data_shape]``.
        data_shape: shape of one example (for the learned scale).
        init_std: initial ``σ``.
        min_std: floor on ``σ`` so the likelihood cannot collapse onto the data.
    """

    def __init__(
        self, decoder: nn.Module, data_shape: DataShape, init_std: float = 1.0, min_std: float = 1e-3
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.log_std = nn.Parameter(torch.full(as_shape(data_shape), math.log(init_std)))
        self.min_std = min_std

    def std(self) -> Tensor:
        return self.log_std.exp().clamp_min(self.min_std)

    def mean(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def sample(self, z: Tensor) -> Tensor:
        mean = self.decoder(z)
        return mean + self.std() * torch.randn_like(mean)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        mean, std = self.decoder(z), self.std()
        log_density = -0.5 * ((x - mean) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)
        return log_density.flatten(1).sum(1)
