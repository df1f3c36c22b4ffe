"""The joint discriminator's updates, shared by the joint-contrastive algorithms with one
(:class:`~ivi_lightning.algorithms.JCAdv` and its subclasses, :class:`~ivi_lightning.algorithms.JCHybrid`)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from ivi_lightning.estimators import ratio_accuracy, ratio_loss


def discriminator_updates(
    algorithm: Any, x: Tensor, optimizer: Any, model_joint: Optional[Tuple[Tensor, Tensor]] = None
) -> Dict[str, Tensor]:
    """``aux_steps`` logistic-regression updates of ``algorithm.discriminator``: encoder joints
    (label 1) vs model joints (``model_joint``, e.g. simulated pairs, or fresh samples of the model
    when ``None``), plus ``algorithm.discriminator_penalty(x, z_q)``.

    Args:
        algorithm: an :class:`~ivi_lightning.algorithms.base.ImplicitVI` with a ``discriminator``
            and a ``discriminator_penalty(x, z_q)`` method.
        x: the update batch.
        optimizer: the discriminator's optimizer.
        model_joint: model joints ``(x, z)``; ``None``: sample the model.

    Returns:
        The last update's ``loss_discriminator`` and ``discriminator_accuracy``.
    """
    for _ in range(algorithm.hparams.aux_steps):
        with torch.no_grad():
            z_q = algorithm.encoder(x)
            x_p, z_p = model_joint if model_joint is not None else algorithm.sample_model(x.shape[0])
        t_q, t_p = algorithm.discriminator(x, z_q), algorithm.discriminator(x_p, z_p)
        loss = ratio_loss(t_q, t_p) + algorithm.discriminator_penalty(x, z_q)
        algorithm.optimize(optimizer, loss)
    return {"loss_discriminator": loss, "discriminator_accuracy": ratio_accuracy(t_q, t_p)}
