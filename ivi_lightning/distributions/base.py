"""Priors and likelihoods: injected objects an algorithm samples from and, where it can, scores.

A distribution is *implicit* when it only implements ``sample``. Algorithms ask
:func:`has_log_prob` before relying on a density and refuse, with a clear error, parts they
cannot use.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ivi_lightning.estimators import input_gradient
from ivi_lightning.shapes import DataShape, as_shape

__all__ = ["DataShape", "Likelihood", "Prior", "as_shape", "has_log_prob", "require_log_prob"]


def has_log_prob(distribution: object) -> bool:
    """Whether ``distribution`` overrides ``log_prob`` (i.e. has a density we can evaluate)."""
    method = getattr(type(distribution), "log_prob", None)
    return method is not None and not getattr(method, "__isabstractmethod_ivi__", False)


def require_log_prob(distribution: object, part: str, user: str, advice: str = "") -> None:
    """Raise ``ValueError`` unless ``distribution`` has a density: the one "needs log_prob" check.

    Args:
        distribution: the prior or likelihood (``None`` counts as missing).
        part: what it is, e.g. ``"prior"``, for the message.
        user: who needs the density, e.g. ``"PCDen"`` or ``"AIS"``.
        advice: what to do instead, appended to the message.
    """
    if distribution is not None and has_log_prob(distribution):
        return
    what = "missing" if distribution is None else f"{type(distribution).__name__} is implicit (sample only)"
    raise ValueError(f"{user} needs log_prob of the {part}, but {what}." + (f" {advice}" if advice else ""))


def _implicit(method):
    method.__isabstractmethod_ivi__ = True
    return method


class Prior(nn.Module):
    """A distribution ``p(z)`` over ``dim``-dimensional latents.

    Subclasses implement ``sample(n)``; those with a density also implement ``log_prob(z)``.
    ``score(z)`` (``∇_z log p``) comes from ``log_prob`` by autograd unless overridden.

    Args:
        dim: latent dimension.
    """

    _anchor: Tensor  # a buffer: the device and dtype of samples

    def __init__(self, dim: int) -> None:
        super().__init__()
        if int(dim) <= 0:
            raise ValueError(f"a prior's latent dimension must be positive, got {dim}")
        self.dim = int(dim)
        # Tracks the module's device and dtype for parameter-free priors.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def sample(self, num_samples: int) -> Tensor:
        """Draw ``[num_samples, dim]`` latents, reparameterised where the prior has parameters."""
        raise NotImplementedError

    @_implicit
    def log_prob(self, z: Tensor) -> Tensor:
        """``log p(z)`` per latent, shape ``z.shape[:-1]``."""
        raise NotImplementedError(f"{type(self).__name__} is implicit: it has no log_prob")

    def score(self, z: Tensor) -> Tensor:
        """``∇_z log p(z)``."""
        return input_gradient(self.log_prob, z)


class Likelihood(nn.Module):
    """A conditional distribution ``p(x|z)`` over data of shape ``data_shape``.

    Subclass it to plug in a simulator: implement ``sample(z)`` only, and algorithms that need
    no density of the model (JC family) will use it.
    """

    def sample(self, z: Tensor) -> Tensor:
        """Draw one ``x`` per latent: ``[batch, *data_shape]`` for ``z`` of shape ``[batch, dim]``."""
        raise NotImplementedError

    @_implicit
    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x|z)``, one value per example: shape ``[batch]``."""
        raise NotImplementedError(f"{type(self).__name__} is implicit: it has no log_prob")
