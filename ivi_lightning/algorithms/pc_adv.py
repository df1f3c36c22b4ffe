"""PC-Adv (= AVB): prior-contrastive, adversarial. See the docs' Concepts page
(``docs/concepts.md``), "PCAdv"."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn

from ivi_lightning.algorithms.base import ImplicitVI
from ivi_lightning.algorithms.hyperparameters import context_network
from ivi_lightning.estimators import (
    diagonal_normal_log_prob,
    gaussian_moments,
    ratio_accuracy,
    ratio_loss,
    standard_normal_log_prob,
)
from ivi_lightning.nets.mlp import detached


class PCAdv(ImplicitVI):
    """Adversarial Variational Bayes: a discriminator ``T(x, z)`` estimates ``log q(z|x) − log p(z)``.

    Each step: ``aux_steps`` logistic-regression updates of ``T`` (``q`` samples against prior
    samples with the same ``x``), then one update of encoder (and model) on ``T − log p(x|z)``.

    Args:
        discriminator: network ``(x, z) -> logit``; default the architecture's discriminator
            (with a location–scale encoder, an MLP taking ``(cat(μ, log σ), z̃)``: see ``contrast``).
        prior_aware: add ``−log p(z)`` (or ``−log N(z̃; 0, I)`` with adaptive contrast) to the
            network's output analytically, so it learns only the remainder.
        adaptive_contrast: contrast ``q`` with a Gaussian ``r(z|x)`` of the same moments instead
            of the prior (AVB), the moments estimated from ``contrast_samples`` draws per ``x``.
            With a location–scale encoder (the default encoder then, a
            :class:`~ivi_lightning.nets.LocationScaleEncoder`) those draws cost only its small
            noise network and the discriminator is a small MLP (see ``contrast``).
        contrast_samples: draws per ``x`` for those moments.
        aux_steps: discriminator updates per encoder update (the default 3 was chosen on the toys,
            see the Toy benchmarks page: with 1 the discriminator lags and ``q`` piles onto its
            blind spots).
        **kwargs: see :class:`~ivi_lightning.algorithms.base.ImplicitVI`.
    """

    needs_likelihood_density = True

    def __init__(
        self,
        discriminator: Optional[nn.Module] = None,
        prior_aware: bool = True,
        adaptive_contrast: bool = False,
        contrast_samples: int = 16,
        aux_steps: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(aux_steps=aux_steps, **kwargs)
        if adaptive_contrast and contrast_samples < 2:
            raise ValueError(
                f"adaptive_contrast needs contrast_samples >= 2 to estimate moments, got {contrast_samples}"
            )
        self.discriminator = discriminator if discriminator is not None else self.default_discriminator()

    @property
    def needs_prior_density(self) -> bool:  # type: ignore[override]
        """The prior's density enters the prior-aware logit and the adaptive contrast's correction."""
        return bool(self.hparams.prior_aware or self.hparams.adaptive_contrast)

    @property
    def uses_location_scale(self) -> bool:
        """Adaptive contrast through a location–scale encoder's ``(μ, σ)`` and cheap draws of ``u``
        (see ``contrast``)."""
        return self.hparams.adaptive_contrast and hasattr(self.encoder, "warped_noise")

    def default_discriminator(self) -> nn.Module:
        if self.uses_location_scale:
            return context_network(self.hparams, "discriminator")  # it sees ((μ, log σ), z̃)
        return self.build_network("discriminator")

    def default_encoder(self) -> nn.Module:
        # Adaptive contrast is cheap with an encoder whose extra draws per x cost only a small network.
        return self.build_network(
            "location_scale_encoder" if self.hparams.adaptive_contrast else "implicit_encoder"
        )

    def auxiliary_networks(self) -> list:
        return [self.discriminator]

    def logit(self, x: Tensor, z: Tensor) -> Tensor:
        """``T(x, z)``, with the reference's log density subtracted analytically when prior-aware."""
        t = self.discriminator(x, z)
        if self.hparams.prior_aware:
            t = t - (
                standard_normal_log_prob(z) if self.hparams.adaptive_contrast else self.prior.log_prob(z)
            )
        return t

    def contrast(
        self, x: Tensor, location_scale: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(x, condition, z, z_contrast, correction)``: ``q``'s samples and what the discriminator sees.

        The discriminator gets ``(condition, z_contrast)``; ``x`` (repeated to one row per
        sample) goes with ``z`` to the likelihood.

        Without adaptive contrast: one ``z ~ q(z|x)`` per example, seen as is, no correction.
        With it: ``z`` standardised into ``z̃`` by a Gaussian ``r(z|x)`` with ``q``'s moments for
        this ``x``, estimated from ``contrast_samples`` draws and held fixed (gradients stopped:
        the log-ratio estimate is then a frozen function of ``z``, as the encoder's gradient
        requires), and the correction ``log r(z|x) − log p(z)`` that turns ``T(x, z̃)`` back into
        ``log q(z|x) − log p(z)``. Because ``r`` has ``q``'s actual spread, its score resists a
        collapsing ``q`` analytically; ``T`` only has to learn the shape.

        * Location–scale encoder, ``z = μ + σ ⊙ u``: the moments are those of ``contrast_samples``
          draws of ``u`` (only the small network ``g`` runs per draw; ``(μ, σ)`` may be passed in
          as ``location_scale``), one draw per example is returned, and since ``u`` depends on ``x``
          only through ``(μ, log σ)`` the discriminator gets those in place of ``x`` (the
          ``condition``): a low-dimensional problem and a small network, whatever the images.
        * Other encoders (AVB): ``contrast_samples`` full encoder passes per example, all
          returned (flattened to one row per sample), the discriminator seeing ``x``.
        """
        if not self.hparams.adaptive_contrast:
            z = self.encoder(x)
            return x, x, z, z, torch.zeros((), device=x.device)
        if self.uses_location_scale:
            mean, std = location_scale if location_scale is not None else self.encoder.location_scale(x)
            u = self.encoder.warped_noise(mean, std, self.hparams.contrast_samples)
            u_mean, u_std = gaussian_moments(u)
            z = mean + std * u[0]
            r_mean, r_std = mean.detach() + std.detach() * u_mean, std.detach() * u_std
            correction = diagonal_normal_log_prob(z, r_mean, r_std) - self.prior.log_prob(z)
            return x, self.encoder.context(mean, std).detach(), z, (z - r_mean) / r_std, correction
        z = self.draw_posterior(x, self.hparams.contrast_samples)
        mean, std = gaussian_moments(z)
        correction = diagonal_normal_log_prob(z, mean, std) - self.prior.log_prob(z)
        x_rep = x.unsqueeze(0).expand(z.shape[0], *x.shape)
        flat = lambda t: t.reshape(-1, *t.shape[2:])
        return flat(x_rep), flat(x_rep), flat(z), flat((z - mean) / std), flat(correction)

    def reference_sample(self, num_samples: int) -> Tensor:
        """Negatives of the discriminator: the prior, or ``N(0, I)`` under adaptive contrast."""
        if self.hparams.adaptive_contrast:
            return torch.randn(num_samples, self.latent_dim, device=self.device)
        return self.prior.sample(num_samples)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_vi, opt_disc = self.optimizers()
        for x in self.update_batches(batch):  # updates_per_batch chunks (default: the whole batch)
            # A location-scale encoder's (μ, σ), computed once per update: detached for the discriminator's
            # steps, with its graph for the encoder's (the discriminator's steps leave the encoder unchanged).
            location_scale = self.encoder.location_scale(x) if self.uses_location_scale else None
            frozen = detached(location_scale)
            for _ in range(self.hparams.aux_steps):
                with torch.no_grad():
                    _, condition, _, z_q, _ = self.contrast(x, frozen)
                t_q, t_p = (
                    self.logit(condition, z_q),
                    self.logit(condition, self.reference_sample(z_q.shape[0])),
                )
                loss_disc = ratio_loss(t_q, t_p)
                self.optimize(opt_disc, loss_disc)

            elbo = self.elbo_estimate(x, location_scale).mean()
            self.optimize(opt_vi, -elbo)
        self.log_metrics(
            "train",
            {
                "loss_discriminator": loss_disc,
                "discriminator_accuracy": ratio_accuracy(t_q, t_p),
                "elbo": elbo,
                "loss_encoder": -elbo,
            },
            prog_bar=True,
        )

    def elbo_estimate(self, x: Tensor, location_scale: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
        """Plug-in ``log p(x|z) − T(x, z) − correction`` per ``q`` sample: an estimate, not a bound.

        Args:
            x: a batch of data.
            location_scale: a location–scale encoder's ``(μ, σ)`` for ``x``, if already computed.
        """
        x_q, condition, z, z_contrast, correction = self.contrast(x, location_scale)
        return self.likelihood.log_prob(x_q, z) - self.logit(condition, z_contrast) - correction
