"""PC-Den: prior-contrastive, denoiser. See the docs' Concepts page (``docs/concepts.md``), "PCDen"."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn

from ivi_lightning.algorithms.base import ImplicitVI
from ivi_lightning.algorithms.hyperparameters import context_network
from ivi_lightning.estimators import denoiser_score, denoising_loss, score_surrogate, tile_examples
from ivi_lightning.nets.mlp import detached


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
            floor of ``σ`` on the posterior's spread; lowers the JS to the exact posterior on
            the toys (see the Toy benchmarks page).
        location_scale: the denoiser counterpart of adaptive contrast. The encoder is
            location–scale, ``z = μ(x) + σ(x) ⊙ u`` (default a
            :class:`~ivi_lightning.nets.LocationScaleEncoder`), and the denoiser works on the
            standardised ``u`` given ``(μ, log σ)``: its noise level is relative to the
            posterior's own spread (a fixed level in ``z`` swamps narrow posteriors), the
            ``−Σ log σ`` part of the entropy is exact, and the denoiser is a small MLP whatever
            the data. Smoothing (``smooth_posterior``) is then applied to ``u``.
        aux_steps: denoiser updates per encoder update.
        denoiser_samples: posterior draws per example in each denoiser update. With
            ``location_scale`` further draws cost only the small warp network, so one update on
            several draws buys the denoiser a less noisy gradient for little more than one draw's time.
        **kwargs: see :class:`~ivi_lightning.algorithms.base.ImplicitVI`.
    """

    needs_prior_density = True
    needs_likelihood_density = True

    def __init__(
        self,
        denoiser: Optional[nn.Module] = None,
        noise_std: float = 0.3,
        smooth_posterior: bool = True,
        location_scale: bool = False,
        aux_steps: int = 3,
        denoiser_samples: int = 1,
        **kwargs: Any,
    ) -> None:
        if noise_std <= 0:
            raise ValueError(f"noise_std must be positive, got {noise_std}")
        if denoiser_samples <= 0:
            raise ValueError(f"denoiser_samples must be positive, got {denoiser_samples}")
        super().__init__(aux_steps=aux_steps, **kwargs)
        if location_scale and not hasattr(self.encoder, "warped_noise"):
            raise ValueError(
                "location_scale=True needs a location-scale encoder (location_scale(x), warped_noise(mean, "
                "std, n), "
                f"context(mean, std)), e.g. LocationScaleEncoder, but got {type(self.encoder).__name__}: "
                "leave encoder unset or pass one"
            )
        self.denoiser = denoiser if denoiser is not None else self.default_denoiser()

    def default_encoder(self) -> nn.Module:
        return self.build_network(
            "location_scale_encoder" if self.hparams.location_scale else "implicit_encoder"
        )

    def default_denoiser(self) -> nn.Module:
        if self.hparams.location_scale:  # it sees (u, (μ, log σ))
            return context_network(self.hparams, "denoiser", noise_std=self.hparams.noise_std)
        return self.build_network("denoiser", noise_std=self.hparams.noise_std)

    def auxiliary_networks(self) -> list:
        return [self.denoiser]

    def draw_posterior(self, x: Tensor, num_samples: int = 1) -> Tensor:
        if self.hparams.location_scale:
            repeated = tile_examples(x, num_samples)
            return self.location_scale_sample(repeated)[0].view(num_samples, x.shape[0], self.latent_dim)
        z = super().draw_posterior(x, num_samples)
        return z + self.hparams.noise_std * torch.randn_like(z) if self.hparams.smooth_posterior else z

    def posterior_score(self, x: Tensor, z: Tensor) -> Tensor:
        """Estimated ``∇_z log q(z|x)`` (of ``q`` smoothed at ``noise_std``), no gradient.

        With ``location_scale``, ``x`` is the condition ``(μ, log σ)`` and ``z`` is ``u``.
        """
        with torch.no_grad():
            return denoiser_score(self.denoiser(z, x), z, self.hparams.noise_std)

    def denoiser_sample(
        self, x: Tensor, location_scale: Optional[Tuple[Tensor, Tensor]] = None, num_samples: int = 1
    ) -> Tuple[Tensor, Tensor]:
        """``(clean, condition)``: posterior samples the denoiser learns to recover, and their condition.

        ``(z, x)``, or with ``location_scale`` the standardised ``(u, cat(μ, log σ))`` (``(μ, σ)``
        may be passed in, computed once for all denoiser steps); ``num_samples`` draws per example,
        stacked along the batch (``[num_samples · batch, ...]``).
        """
        if not self.hparams.location_scale:
            condition = tile_examples(x, num_samples)
            return self.encoder(condition), condition
        mean, std = location_scale if location_scale is not None else self.encoder.location_scale(x)
        u = self.encoder.warped_noise(mean, std, num_samples).flatten(0, 1)
        return u, tile_examples(self.encoder.context(mean, std), num_samples)

    def location_scale_sample(
        self, x: Tensor, location_scale: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(z, u, μ, σ)``: ``z = μ + σ ⊙ u`` from the location–scale encoder, ``u`` smoothed if
        ``smooth_posterior``
        (``(μ, σ)`` may be passed in, already computed for ``x``)."""
        mean, std = location_scale if location_scale is not None else self.encoder.location_scale(x)
        u = self.encoder.warped_noise(mean, std)[0]
        u = u + self.hparams.noise_std * torch.randn_like(u) if self.hparams.smooth_posterior else u
        return mean + std * u, u, mean, std

    def posterior_sample(
        self, x: Tensor, location_scale: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tensor]:
        """``(z, log_q_surrogate)``: a reparameterised ``z ~ q(z|x)`` (smoothed if ``smooth_posterior``)
        and a per-example term whose gradient is that of ``log q(z|x)`` (estimated by the denoiser).
        A location–scale encoder's ``(μ, σ)`` for ``x`` may be passed in (with their graph).
        """
        if not self.hparams.location_scale:
            z = self.encoder(x)
            z = z + self.hparams.noise_std * torch.randn_like(z) if self.hparams.smooth_posterior else z
            return z, score_surrogate(z, self.posterior_score(x, z))
        z, u, mean, std = self.location_scale_sample(x, location_scale)
        # log q(z|x) = log q(u | μ, σ) − Σ log σ: the scale's part exactly, the shape's from the denoiser.
        condition = self.encoder.context(mean, std).detach()
        return z, score_surrogate(u, self.posterior_score(condition, u)) - std.log().sum(1)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_vi, opt_den = self.optimizers()
        sigma = self.hparams.noise_std
        for x in self.update_batches(batch):  # updates_per_batch chunks (default: the whole batch)
            # A location-scale encoder's (μ, σ), computed once per update: detached for the denoiser's
            # steps, with its graph for the encoder's (the denoiser's steps leave the encoder unchanged).
            location_scale = self.encoder.location_scale(x) if self.hparams.location_scale else None
            frozen = detached(location_scale)
            for _ in range(self.hparams.aux_steps):
                with torch.no_grad():
                    clean, condition = self.denoiser_sample(x, frozen, self.hparams.denoiser_samples)
                loss_den = denoising_loss(
                    self.denoiser(clean + sigma * torch.randn_like(clean), condition), clean
                )
                self.optimize(opt_den, loss_den)

            z, log_q = self.posterior_sample(x, location_scale)
            log_joint = self.likelihood.log_prob(x, z) + self.prior.log_prob(z)
            loss = (log_q - log_joint).mean()
            self.optimize(opt_vi, loss)
        self.log_metrics(
            "train",
            {
                "loss_denoiser": loss_den,
                "denoiser_error": loss_den / (sigma**2 * self.latent_dim),
                "log_joint": log_joint.mean(),
                "loss_encoder": loss,
            },
            prog_bar=True,
        )
