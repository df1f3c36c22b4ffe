"""JC-Hybrid: joint-contrastive with discriminator and denoiser estimates combined.
See the docs' Concepts page (``docs/concepts.md``), "JCHybrid" (a library decision, measured in
``benchmarks/jc_tables.py``)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn

from ivi_lightning.algorithms.jc_den import JCDen
from ivi_lightning.algorithms.joint_discriminator import discriminator_updates
from ivi_lightning.estimators import input_gradient, score_surrogate
from ivi_lightning.numbers import is_nonnegative_number


class JCHybrid(JCDen):
    """Both estimators of ``∇_z s(x, z)`` (``s = log q(x, z) − log p(x, z)``) at once.

    A joint discriminator gives ``∇_z T``; the joint denoisers (as in :class:`JCDen`) give
    ``ŝ_q,z − ŝ_p,z``. Each step: ``aux_steps`` updates of the discriminator — logistic loss plus,
    with ``score_penalty > 0``, ``λ E_q‖∇_z T − (ŝ_q,z − ŝ_p,z)‖²`` pulling its gradient toward
    the denoisers' (this regularises ``T`` without moving its optimum when both are exact) —
    and of the denoisers; then one encoder update on
    ``stopgrad(w ∇_z T + (1 − w)(ŝ_q,z − ŝ_p,z))ᵀ z``.

    Args:
        discriminator: network ``(x, z) -> logit``; default an MLP ``Discriminator``.
        mix: weight ``w ∈ [0, 1]`` of the discriminator's estimate (1: JC-Adv's gradient,
            0: JC-Den's).
        score_penalty: ``λ ≥ 0`` of the penalty above.
        **kwargs: see :class:`JCDen` and :class:`~ivi_lightning.algorithms.base.ImplicitVI`.
    """

    def __init__(
        self,
        discriminator: Optional[nn.Module] = None,
        mix: float = 0.5,
        score_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"mix is a weight in [0, 1], got {mix}")
        if not is_nonnegative_number(score_penalty):
            raise ValueError(f"score_penalty is a weight, ≥ 0 (0: none; e.g. 0.1), got {score_penalty!r}")
        super().__init__(**kwargs)
        self.discriminator = (
            discriminator if discriminator is not None else self.build_network("discriminator")
        )

    def configure_optimizers(self):
        opt_vi, opt_den = super().configure_optimizers()
        return opt_vi, opt_den, self.adam(list(self.discriminator.parameters()), self.hparams.aux_lr)

    def discriminator_step(
        self, x: Tensor, optimizer: Any, model_joint: Optional[Tuple[Tensor, Tensor]] = None
    ) -> dict:
        """JCAdv's discriminator updates, with this class's penalty added."""
        return discriminator_updates(self, x, optimizer, model_joint)

    def discriminator_penalty(self, x: Tensor, z_q: Tensor) -> Tensor:
        """``score_penalty · ‖∇_z T − (ŝ_q − ŝ_p)‖²``: pulls ``∇_z T`` toward the denoisers' estimate."""
        if self.hparams.score_penalty <= 0:
            return torch.zeros((), device=x.device)
        grad_t = input_gradient(lambda zz: self.discriminator(x, zz), z_q, create_graph=True)
        return self.hparams.score_penalty * (grad_t - self.score_difference(x, z_q)).pow(2).sum(1).mean()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_vi, opt_den, opt_disc = self.optimizers()
        # updates_per_batch chunks (default: the whole batch), with their simulated pairs if any
        for x, model_joint in self.update_joints(batch):
            loss_den = self.denoiser_step(x, opt_den, model_joint)
            metrics = self.discriminator_step(x, opt_disc, model_joint)

            z = self.encoder(x)
            w = self.hparams.mix
            grad_t = input_gradient(lambda zz: self.discriminator(x, zz), z)
            loss_encoder = score_surrogate(
                z, w * grad_t + (1 - w) * self.score_difference(x, z.detach())
            ).mean()
            loss_model = self.model_loss(x, z)
            self.optimize(opt_vi, loss_encoder + loss_model)
        self.log_metrics(
            "train",
            {**metrics, "loss_denoiser": loss_den, "loss_encoder": loss_encoder, "loss_model": loss_model},
            prog_bar=True,
        )
