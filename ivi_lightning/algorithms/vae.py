"""Gaussian VAE: the explicit-posterior baseline every table compares against."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ivi_lightning.algorithms.base import ImplicitVI
from ivi_lightning.estimators import diagonal_normal_log_prob


class VAE(ImplicitVI):
    """Variational autoencoder with a diagonal Gaussian ``q(z|x)`` and the same other networks.

    The ELBO ``E_q[log p(x|z) + log p(z) − log q(z|x)]`` is estimated with one reparameterised
    sample; the encoder must expose ``moments(x) -> (mean, std)``.

    Args:
        **kwargs: see :class:`~ivi_lightning.algorithms.base.ImplicitVI` (``aux_*`` are unused).
    """

    needs_prior_density = True
    needs_likelihood_density = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not hasattr(self.encoder, "moments"):
            raise ValueError(
                "VAE needs an explicit Gaussian encoder with moments(x) -> (mean, std), e.g. GaussianEncoder"
            )

    def default_encoder(self) -> nn.Module:
        return self.build_network("gaussian_encoder")

    def elbo_estimate(self, x: Tensor) -> Tensor:
        mean, std = self.encoder.moments(x)
        z = mean + std * torch.randn_like(std)
        return (
            self.likelihood.log_prob(x, z) + self.prior.log_prob(z) - diagonal_normal_log_prob(z, mean, std)
        )

    def training_step(self, batch: Any, batch_idx: int) -> None:
        optimizer = self.optimizers()
        for x in self.update_batches(batch):  # updates_per_batch chunks (default: the whole batch)
            elbo = self.elbo_estimate(x).mean()
            self.optimize(optimizer, -elbo)
        self.log_metrics("train", {"elbo": elbo, "loss_encoder": -elbo}, prog_bar=True)
