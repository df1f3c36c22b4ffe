"""Implicit (sample-only) priors and likelihoods: generator networks fed Gaussian noise.

They have parameters and reparameterised samples but no density, so only algorithms that
need no density of the model can use them; JC-Adv-RMD (and ALI/BiGAN) can learn them.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ivi_lightning.distributions.base import DataShape, Likelihood, Prior, as_shape
from ivi_lightning.nets.mlp import MLP, check_noise_components, component_one_hot
from ivi_lightning.numbers import is_nonnegative_number


def _noise(num_samples: int, noise_dim: int, like: Tensor) -> Tensor:
    return torch.randn(num_samples, noise_dim, device=like.device, dtype=like.dtype)


class ImplicitPrior(Prior):
    """``z = h(ε)``, ``ε ~ N(0, I)``: a learned prior given only by its sampler.

    Args:
        dim: latent dimension.
        noise_dim: size of ``ε``.
        hidden: hidden layer sizes of ``h``.

    >>> prior = ImplicitPrior(2, noise_dim=3, hidden=(8,))
    >>> prior.sample(5).shape
    torch.Size([5, 2])
    >>> from ivi_lightning.distributions import has_log_prob
    >>> has_log_prob(prior)
    False
    """

    def __init__(self, dim: int, noise_dim: int = 8, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__(dim)
        if int(noise_dim) <= 0:
            raise ValueError(f"an implicit prior needs noise: noise_dim must be positive, got {noise_dim}")
        self.noise_dim = int(noise_dim)
        self.net = MLP(self.noise_dim, self.dim, hidden)

    def sample(self, num_samples: int) -> Tensor:
        return self.net(_noise(num_samples, self.noise_dim, self._anchor))


class ImplicitLikelihood(Likelihood):
    """``x = G(z, ε)``, ``ε ~ N(0, I)``: a learned simulator with reparameterised samples.

    Args:
        latent_dim: size of ``z``.
        data_shape: shape of one example.
        noise_dim: size of ``ε``.
        hidden: hidden layer sizes of ``G``.
        noise_components: ``ε`` is a uniform mixture of this many components: each sample also
            picks a component, whose one-hot index joins ``G``'s input. A continuous ``G`` of
            connected noise must put some samples on a bridge between separate modes of the data;
            separate components can land on separate modes. ``1``: Gaussian noise only.
        act: activation of ``G`` (a name in :data:`ivi_lightning.nets.mlp.ACTIVATIONS`).
        output_scale: ``G``'s output is multiplied by this, so a freshly initialised ``G``, whose
            outputs are of order 1, already spans data of a larger scale: set it to about the
            data's half-width (e.g. 4 for data in ``[−4, 4]``). ``1``: no scaling.

    >>> lik = ImplicitLikelihood(2, (3,), noise_dim=4, hidden=(8,))
    >>> lik.sample(torch.zeros(5, 2)).shape
    torch.Size([5, 3])
    >>> ImplicitLikelihood(2, 2, noise_components=8, act="relu").sample(torch.zeros(5, 2)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: DataShape,
        noise_dim: int = 8,
        hidden: Sequence[int] = (64, 64),
        noise_components: int = 1,
        act: str = "silu",
        output_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if int(latent_dim) <= 0 or int(noise_dim) <= 0:
            raise ValueError(f"latent_dim and noise_dim must be positive, got {latent_dim} and {noise_dim}")
        if not is_nonnegative_number(output_scale) or output_scale == 0:
            raise ValueError(
                f"output_scale multiplies the generator's output and must be a positive number, got "
                f"{output_scale!r}: use about the data's half-width, or 1 for no scaling"
            )
        self.output_scale = float(output_scale)
        self.latent_dim, self.noise_dim, self.data_shape = (
            int(latent_dim),
            int(noise_dim),
            as_shape(data_shape),
        )
        self.noise_components = check_noise_components(noise_components)
        components = self.noise_components if self.noise_components > 1 else 0
        self.net = MLP(self.latent_dim + self.noise_dim + components, math.prod(self.data_shape), hidden, act)

    def sample(self, z: Tensor) -> Tensor:
        inputs = [z, _noise(z.shape[0], self.noise_dim, z)]
        if self.noise_components > 1:
            inputs.append(component_one_hot(self.noise_components, z))
        x = self.net(torch.cat(inputs, 1))
        return (x if self.output_scale == 1.0 else self.output_scale * x).view(-1, *self.data_shape)
