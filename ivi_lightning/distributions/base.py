"""Priors and likelihoods: injected objects an algorithm samples from and, where it can, scores.

A distribution is *implicit* when it only implements ``sample``. Algorithms ask
:func:`has_log_prob` before relying on a density and refuse, with a clear error, parts they
cannot use.
"""
from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import Tensor, nn

from ivi_lightning.estimators import input_gradient

DataShape = Union[int, Tuple[int, ...]]


def as_shape(data_shape: DataShape) -> Tuple[int, ...]:
    """Normalise ``data_shape`` (an int for vectors, a tuple for images) to a tuple.

    >>> as_shape(4), as_shape([1, 28, 28])
    ((4,), (1, 28, 28))
    """
    shape = (int(data_shape),) if isinstance(data_shape, int) else tuple(int(s) for s in data_shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"data_shape must be a positive int or a tuple of positive ints, got {data_shape!r}")
    return shape


def has_log_prob(distribution: object) -> bool:
    """Whether ``distribution`` overrides ``log_prob`` (i.e. has a density we can evaluate)."""
    method = getattr(type(distribution), "log_prob", None)
    return method is not None and not getattr(method, "__isabstractmethod_ivi__", False)


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
