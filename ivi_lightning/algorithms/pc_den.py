"""PC-Den: prior-contrastive, denoiser. ``ALGORITHMS.md`` §3, second box."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from ivi_lightning.algorithms.base import ImplicitVI
from ivi_lightning.estimators import denoiser_score, denoising_loss, score_surrogate


class PCDen(ImplicitVI):
    """A conditional denoiser ``F(z̃; x)`` supplies the encoder's entropy gradient ``∇_z log q(z|x)``.

    Each step: ``aux_steps`` denoiser updates on detached encoder samples corrupted by
    ``N(0, noise_std²)``, then one encoder (and model) update on the surrogate
    ``−log p(x|z) − log p(z) + stopgrad((F(z; x) − z)/σ²)ᵀ z``.

    Args:
        denoiser: network ``(z_noisy, x) -> z``; default a residual MLP ``Denoiser``.
        noise_std: corruption level ``σ``: smaller is less biased (the score of ``q`` smoothed
            by ``N(0, σ²)``) but noisier; 0.1 starved the encoder of entropy on the toys.
        smooth_posterior: make the posterior itself ``g(x, ε) + σ η``. A denoiser trained at
            level ``σ`` gives the *exact* score of that distribution, evaluated where it was
            trained, instead of a ``σ``-smoothed (biased) score at clean samples. Costs only a
            floor of ``σ`` on the posterior's spread; halved the JS on the toys.
        aux_steps: denoiser updates per encoder update.
        **kwargs: see :class:`~ivi_lightning.algorithms.base.ImplicitVI`.
    """

    needs_prior_density = True
    needs_likelihood_density = True
    alternative = "PCAdv (likelihood density only) or JCAdv/JCDen (no density)"

    def __init__(
        self,
        denoiser: Optional[nn.Module] = None,
        noise_std: float = 0.3,
        smooth_posterior: bool = True,
        aux_steps: int = 3,
        **kwargs: Any,
    ) -> None:
        if noise_std <= 0:
            raise ValueError(f"noise_std must be positive, got {noise_std}")
        super().__init__(aux_steps=aux_steps, **kwargs)
        self.denoiser = denoiser if denoiser is not None else self.build_network("denoiser", noise_std=noise_std)

    def auxiliary_networks(self) -> list:
        return [self.denoiser]

    def sample_posterior(self, x: Tensor, num_samples: int = 1) -> Tensor:
        z = super().sample_posterior(x, num_samples)
        return z + self.hparams.noise_std * torch.randn_like(z) if self.hparams.smooth_posterior else z

    def posterior_score(self, x: Tensor, z: Tensor) -> Tensor:
        """Estimated ``∇_z log q(z|x)`` (of ``q`` smoothed at ``noise_std``), no gradient."""
        with torch.no_grad():
            return denoiser_score(self.denoiser(z, x), z, self.hparams.noise_std)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_vi, opt_den = self.optimizers()
        sigma = self.hparams.noise_std
        for x in self.update_batches(batch):  # updates_per_batch chunks (default: the whole batch)
            for _ in range(self.hparams.aux_steps):
                with torch.no_grad():
                    z = self.encoder(x)
                loss_den = denoising_loss(self.denoiser(z + sigma * torch.randn_like(z), x), z)
                self.optimize(opt_den, loss_den)

            z = self.encoder(x)
            if self.hparams.smooth_posterior:
                z = z + sigma * torch.randn_like(z)
            log_joint = self.likelihood.log_prob(x, z) + self.prior.log_prob(z)
            loss = (score_surrogate(z, self.posterior_score(x, z)) - log_joint).mean()
            self.optimize(opt_vi, loss)
        self.log_metrics(
            "train",
            {"loss_denoiser": loss_den, "denoiser_error": loss_den / (sigma**2 * self.latent_dim), "log_joint": log_joint.mean(), "loss_encoder": loss},
            prog_bar=True,
        )
