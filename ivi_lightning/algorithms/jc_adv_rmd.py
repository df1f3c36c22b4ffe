"""JC-Adv-RMD: learning a fully implicit model by reverse-mode differentiation through the
discriminator's training. See the docs' Concepts page (``docs/concepts.md``), "JCAdvRMD"."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from ivi_lightning.algorithms.jc_adv import JCAdv
from ivi_lightning.distributions import ImplicitLikelihood, ImplicitPrior, Likelihood, Prior
from ivi_lightning.estimators import gan_generator_loss, ratio_loss, unrolled_sgd_steps


class JCAdvRMD(JCAdv):
    """JC-Adv whose model ``θ`` (implicit prior and likelihood) is learned through the unrolled discriminator.

    The plug-in ``T_φ`` depends on ``θ`` only through the model samples it was trained on.
    Each step: ``aux_steps`` ordinary updates of ``T`` (as in JC-Adv); then, from the current
    ``φ``, ``unroll_steps`` SGD steps ``φ_0 → φ_K(θ)`` on fresh reparameterised model samples
    keeping the graph, and ``θ`` descends ``E_q[T_{φ_K(θ)}(x, z)]`` (``T ≈ log q − log p_θ``, so
    this is ``KL[q ‖ p_θ]``); the encoder descends ``E[T_φ(x, g(x, ε))]`` as in JC-Adv.

    ``unroll_steps=0`` is the ablation "plug in the current discriminator": ``E_q[T_φ]`` does not
    depend on ``θ``, so the KL term gives the model no gradient at all — which is why RMD is
    needed. With ``K ≥ 1`` the hypergradient is, to first order in ``unroll_lr``,
    ``−unroll_lr · ∇_θ E_p[σ(T(x'))·⟨∇_φ E_q[T], ∇_φ T(x')⟩]``: model samples are pulled towards
    the data through the discriminator's tangent kernel, weighted by ``σ(T)`` — so, like a
    minimax GAN, it fades where the discriminator confidently rejects the model's samples.

    ``model_gan_weight > 0`` (off by default) adds ALI's non-saturating generator loss
    ``w · E_p[−log σ(T_φ(x', z'))]`` on fresh model joints to the model's loss, a documented
    departure from the pure KL form for when the RMD signal alone fades.

    Args:
        unroll_steps: ``K``, the discriminator steps differentiated through (second order, so
            the cost grows with ``K``: keep it small); ``0`` gives the model no KL gradient (ablation).
        unroll_lr: SGD step size of the unrolled steps (the hypergradient scales with it; the
            model's Adam step normalises that scale).
        model_gan_weight: weight ``w`` of the ALI generator loss added to the model's loss
            (``0``: pure RMD on the KL form).
        model_noise_dim: noise size of the default implicit likelihood (and prior).
        model_hidden: hidden sizes of the default implicit likelihood (and prior).
        learn_prior: with no ``prior`` given, learn an :class:`ImplicitPrior` too; the default
            (``False``) is ALI's fixed ``N(0, I)`` prior, with which the default likelihood learns
            the 2-D mixtures — with a learned implicit prior as well it did not (see the docs' Implicit
            models benchmark page).
        **kwargs: see :class:`JCAdv` (the loss is always ``"kl"``) and
            :class:`~ivi_lightning.algorithms.base.ImplicitVI`. Parts not given default, with
            ``learn_model=True``, to an :class:`ImplicitLikelihood` (and an :class:`ImplicitPrior`
            with ``learn_prior=True``).
    """

    def __init__(
        self,
        unroll_steps: int = 1,
        unroll_lr: float = 0.1,
        model_noise_dim: int = 4,
        model_hidden: tuple = (256, 256),
        learn_prior: bool = False,
        model_gan_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("loss", "kl") != "kl":
            raise ValueError(
                "JCAdvRMD trains on the KL form only; for ALI/BiGAN use JCAdv(loss='ali' or 'bigan')"
            )
        if int(unroll_steps) < 0:
            raise ValueError(
                f"unroll_steps must be a non-negative number of discriminator steps, got {unroll_steps}"
            )
        if model_gan_weight < 0:
            raise ValueError(f"model_gan_weight must be non-negative, got {model_gan_weight}")
        for noise in ("instance_noise", "data_instance_noise"):
            if kwargs.get(noise):
                raise ValueError(
                    f"JCAdvRMD does not take {noise}: its unrolled model update sees the joints "
                    f"unblurred; use JCAdv({noise}=...) (with loss='ali' to learn a generator)"
                )
        if unroll_lr <= 0:
            raise ValueError(f"unroll_lr must be positive, got {unroll_lr}")
        super().__init__(loss="kl", **kwargs)

    def default_prior(self) -> Prior:
        """An :class:`ImplicitPrior` with ``learn_prior``, else ALI's fixed ``N(0, I)``."""
        if not self.hparams.learn_prior:
            return super().default_prior()
        return ImplicitPrior(self.latent_dim, self.hparams.model_noise_dim, self.hparams.model_hidden)

    def default_likelihood(self) -> Likelihood:
        """An :class:`ImplicitLikelihood` (activation ``generator_activation``): the point of RMD is a
        model with no density."""
        h = self.hparams
        return ImplicitLikelihood(
            self.latent_dim, self.data_shape, h.model_noise_dim, h.model_hidden, act=h.generator_activation
        )

    def _check_learnable(self) -> None:
        """Any model is learnable here: its gradient comes through the unrolled discriminator."""

    def unrolled_model_loss(self, x_q: Tensor, z_q: Tensor) -> Tensor:
        """``E_q[T_{φ_K(θ)}(x, z)]`` at fixed encoder joints, differentiable in the model's ``θ``.

        Args:
            x_q: data ``[batch, *data_shape]``.
            z_q: encoder samples for it, detached.
        """
        logit = lambda params, x, z: functional_call(self.discriminator, params, (x, z))

        def inner_loss(params: dict) -> Tensor:
            # Fresh reparameterised model joints each step: their graph reaches θ.
            x_p, z_p = self.sample_model(x_q.shape[0])
            return ratio_loss(logit(params, x_q, z_q), logit(params, x_p, z_p))

        start = dict(self.discriminator.named_parameters())
        if self.hparams.unroll_steps == 0:  # the ablation: constants, so no gradient reaches θ (or φ)
            return logit({name: value.detach() for name, value in start.items()}, x_q, z_q).mean()
        params = unrolled_sgd_steps(inner_loss, start, self.hparams.unroll_steps, self.hparams.unroll_lr)
        return logit(params, x_q, z_q).mean()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_vi, opt_disc = self.optimizers()
        for x in self.update_batches(batch):  # updates_per_batch chunks (default: the whole batch)
            metrics = self.discriminator_step(x, opt_disc)

            with torch.no_grad():
                z_fixed = self.encoder(x)
            zero = torch.zeros((), device=x.device)
            loss_model = self.unrolled_model_loss(x, z_fixed) if self.hparams.learn_model else zero
            if self.hparams.learn_model and self.hparams.model_gan_weight > 0:
                loss_gan = gan_generator_loss(self.discriminator(*self.sample_model(x.shape[0])))
                metrics["loss_model_gan"] = loss_gan
                loss_model = loss_model + self.hparams.model_gan_weight * loss_gan
            loss_encoder = self.discriminator(x, self.encoder(x)).mean()  # E_q[T] ≈ KL[q ‖ p], as in JC-Adv
            self.optimize(opt_vi, loss_encoder + loss_model)
        self.log_metrics(
            "train",
            {**metrics, "loss_encoder": loss_encoder, "kl_estimate": loss_encoder, "loss_model": loss_model},
            prog_bar=True,
        )
