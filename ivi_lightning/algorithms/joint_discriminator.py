"""The joint discriminator's updates, shared by the joint-contrastive algorithms with one
(:class:`~ivi_lightning.algorithms.JCAdv` and its subclasses, :class:`~ivi_lightning.algorithms.JCHybrid`),
and PacGAN's packing of joints (Lin, Khetan, Fanti, Oh, NeurIPS 2018)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from ivi_lightning.estimators import ratio_accuracy, ratio_loss
from ivi_lightning.numbers import is_whole_number
from ivi_lightning.shapes import DataShape, as_shape


def check_packing(packing: Any) -> int:
    """``packing`` as an int, or a ``ValueError`` naming the cause and the fix.

    Args:
        packing: joints per discriminator input, ``m ≥ 1`` (``1``: no packing).
    """
    if not is_whole_number(packing, 1):
        raise ValueError(
            f"packing is the number of joints the discriminator sees at once, a whole number ≥ 1, "
            f"got {packing!r}: use 1 for the plain discriminator or e.g. 4 for PacGAN4"
        )
    return packing


def packed_shape(data_shape: DataShape, packing: int) -> Tuple[int, ...]:
    """Shape of one packed example: ``m`` examples stacked along the first axis (PacGAN's channels).

    Args:
        data_shape: shape of one example, ``(d,)`` or ``(C, H, W)``.
        packing: ``m``.

    >>> packed_shape((2,), 4), packed_shape((1, 28, 28), 2)
    ((8,), (2, 28, 28))
    """
    shape = as_shape(data_shape)
    return (packing * shape[0], *shape[1:])


def pack_joints(x: Tensor, z: Tensor, packing: int) -> Tuple[Tensor, Tensor]:
    """Group ``m`` consecutive joints into one: ``x [B, d0, ...] → [B/m, m·d0, ...]``,
    ``z [B, k] → [B/m, m·k]``.

    Args:
        x: data ``[B, *data_shape]``.
        z: latents ``[B, latent_dim]``.
        packing: ``m``; ``B`` must be a multiple of it.

    >>> [t.shape for t in pack_joints(torch.zeros(6, 2), torch.zeros(6, 3), 3)]
    [torch.Size([2, 6]), torch.Size([2, 9])]
    """
    batch = x.shape[0]
    if batch % packing:
        raise ValueError(
            f"a packed discriminator (packing={packing}) got {batch} joints, not a multiple of {packing}: "
            f"make the batch size (per update, and any number of samples scored) a multiple of {packing}"
        )
    return x.reshape(batch // packing, packing * x.shape[1], *x.shape[2:]), z.reshape(batch // packing, -1)


class PackedDiscriminator(nn.Module):
    """PacGAN's packing for a joint discriminator: one logit for every ``m`` joints, seen at once.

    A batch of ``B`` joints gives ``B/m`` logits, each from ``m`` consecutive joints concatenated
    (:func:`pack_joints`). The losses need no change: a pack of ``m`` independent joints of ``q``
    against one of ``p`` is a classification between the product distributions, whose optimal
    logit is the sum of the ``m`` log-ratios; a generator that drops modes is easier to spot from
    ``m`` samples than from one. ``m = 1`` is the inner discriminator itself.

    Args:
        discriminator: network ``(x, z) -> logit`` on packed joints, e.g. built for
            ``data_shape=packed_shape(data_shape, m)`` and ``latent_dim=m · latent_dim``.
        packing: ``m``, joints per logit.

    >>> from ivi_lightning.nets.mlp import Discriminator
    >>> PackedDiscriminator(Discriminator(8, 4, hidden=(8,)), 4)(torch.zeros(12, 2), torch.zeros(12, 1)).shape
    torch.Size([3])
    """

    def __init__(self, discriminator: nn.Module, packing: int) -> None:
        super().__init__()
        self.discriminator, self.packing = discriminator, check_packing(packing)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.discriminator(*pack_joints(x, z, self.packing))


def joint_discriminator(algorithm: Any, discriminator: Optional[nn.Module], packing: int) -> nn.Module:
    """The joint discriminator of ``algorithm``: ``discriminator``, or the default one of its
    architecture, packed when ``packing > 1`` (the default then sized for packed joints).

    Args:
        algorithm: an :class:`~ivi_lightning.algorithms.base.ImplicitVI` (for ``build_network``).
        discriminator: a network ``(x, z) -> logit`` taking packed joints, or ``None``.
        packing: ``m ≥ 1`` joints per logit; ``1`` returns the discriminator unwrapped.
    """
    packing = check_packing(packing)
    if discriminator is None:
        sizes = dict(
            data_shape=packed_shape(algorithm.data_shape, packing), latent_dim=packing * algorithm.latent_dim
        )
        discriminator = algorithm.build_network("discriminator", **(sizes if packing > 1 else {}))
    return discriminator if packing == 1 else PackedDiscriminator(discriminator, packing)


#: How the instance noise falls over ``instance_noise_steps`` (see :func:`instance_noise_std`).
INSTANCE_NOISE_SCHEDULES = ("linear", "geometric")
#: The geometric schedule's last standard deviation, as a fraction of its first.
GEOMETRIC_FINAL_FRACTION = 0.01


def instance_noise_std(initial: float, anneal_steps: int, step: int, schedule: str = "linear") -> float:
    """Standard deviation of the instance noise at optimizer step ``step``.

    ``"linear"``: ``initial`` falling linearly to ``0`` at ``anneal_steps`` (and ``0`` after).
    ``"geometric"``: ``initial`` falling by the same factor every step to
    ``GEOMETRIC_FINAL_FRACTION · initial`` at ``anneal_steps``, and held there: every scale of the
    blur gets as many steps as every other (a factor 10 per half of ``anneal_steps``), so the samples
    sharpen step by step while the discriminator stays smooth at the current scale. The noise is
    added to both joints alike, so the held remainder does not move the optimum.

    Args:
        initial: the standard deviation at step 0, in the units of what it blurs.
        anneal_steps: the step at which the noise is gone (``"linear"``) or at its last value.
        step: the optimizer step (the Trainer's ``global_step``).
        schedule: one of ``INSTANCE_NOISE_SCHEDULES``.

    >>> [instance_noise_std(0.5, 100, step) for step in (0, 50, 100, 200)]
    [0.5, 0.25, 0.0, 0.0]
    >>> [round(instance_noise_std(2.0, 100, step, "geometric"), 4) for step in (0, 50, 100, 200)]
    [2.0, 0.2, 0.02, 0.02]
    """
    if initial <= 0 or anneal_steps <= 0:
        return 0.0
    progress = min(step / anneal_steps, 1.0)
    if check_schedule(schedule) == "geometric":
        return initial * GEOMETRIC_FINAL_FRACTION**progress
    return initial * (1.0 - progress)


def check_schedule(schedule: Any) -> str:
    """``schedule`` if it is one of ``INSTANCE_NOISE_SCHEDULES``, else a ``ValueError`` naming them."""
    if schedule not in INSTANCE_NOISE_SCHEDULES:
        choices = ", ".join(INSTANCE_NOISE_SCHEDULES)
        raise ValueError(f"instance_noise_schedule must be one of {choices}, got {schedule!r}")
    return schedule


def add_noise(values: Tensor, std: float) -> Tensor:
    """``values + std · ε``, ``ε ~ N(0, I)`` (``values`` itself when ``std`` is 0): both joints blurred
    alike before the discriminator sees them, so their densities overlap where they otherwise would not."""
    return values + std * torch.randn_like(values) if std > 0 else values


def discriminator_updates(
    algorithm: Any,
    x: Tensor,
    optimizer: Any,
    model_joint: Optional[Tuple[Tensor, Tensor]] = None,
    data_noise: float = 0.0,
    latent_noise: float = 0.0,
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
        data_noise: standard deviation of the instance noise added to both joints' ``x``.
        latent_noise: standard deviation of the instance noise added to both joints' ``z``.

    Returns:
        The last update's ``loss_discriminator`` and ``discriminator_accuracy``.
    """
    for _ in range(algorithm.hparams.aux_steps):
        with torch.no_grad():
            z_q = algorithm.encoder(x)
            x_p, z_p = model_joint if model_joint is not None else algorithm.sample_model(x.shape[0])
            x_q, z_q = add_noise(x, data_noise), add_noise(z_q, latent_noise)
            x_p, z_p = add_noise(x_p, data_noise), add_noise(z_p, latent_noise)
        t_q, t_p = algorithm.discriminator(x_q, z_q), algorithm.discriminator(x_p, z_p)
        loss = ratio_loss(t_q, t_p) + algorithm.discriminator_penalty(x_q, z_q)
        algorithm.optimize(optimizer, loss)
    return {"loss_discriminator": loss, "discriminator_accuracy": ratio_accuracy(t_q, t_p)}
