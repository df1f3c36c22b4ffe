"""Networks on joints ``(x, z)`` for the joint-contrastive family: a joint denoiser and a
deterministic encoder (BiGAN), registered in the factory for the ``"mlp"`` architecture."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ivi_lightning.nets.factory import register
from ivi_lightning.nets.mlp import MLP
from ivi_lightning.shapes import DataShape, as_shape


def joint_noise_levels(noise_std: float, data_noise_std: Optional[float]) -> Tuple[float, float]:
    """``(noise_std, data_noise_std)`` of a joint denoiser, the data's defaulting to the latent's, both
    checked positive."""
    data_noise_std = noise_std if data_noise_std is None else data_noise_std
    if noise_std <= 0 or data_noise_std <= 0:
        raise ValueError(
            "joint denoiser noise levels must be positive, "
            f"got noise_std={noise_std}, data_noise_std={data_noise_std}"
        )
    return float(noise_std), float(data_noise_std)


class JointDenoiser(nn.Module):
    """Denoiser ``F(x̃, z̃) → (x, z)`` of joints corrupted on both blocks.

    Residual form per block, ``x̂ = x̃ + σ_x f_x``, ``ẑ = z̃ + σ_z f_z``, so both regression
    targets stay of unit scale whatever the noise levels. The ``z`` block's displacement gives
    ``∇_z log q(x, z) = ∇_z log q(z|x)`` (Tweedie): ``(ẑ − z̃)/σ_z² = f_z/σ_z``. A
    ``noise_conditional`` denoiser also takes the latent's corruption level of each example
    (``log σ_z`` is an input), so one network serves a whole range of levels.

    Args:
        data_shape: shape of one example.
        latent_dim: size of ``z``.
        noise_std: corruption level ``σ_z`` of the latent block.
        hidden: hidden layer sizes.
        data_noise_std: corruption level ``σ_x`` of the data block (default ``noise_std``).
        act: activation name.
        noise_conditional: take each example's ``σ_z`` as an input (see ``forward``).

    >>> den = JointDenoiser(4, 2, noise_std=0.1, hidden=(8,))
    >>> [t.shape for t in den(torch.zeros(3, 4), torch.zeros(3, 2))]
    [torch.Size([3, 4]), torch.Size([3, 2])]
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        noise_std: float,
        hidden: Sequence[int] = (256, 256),
        data_noise_std: Optional[float] = None,
        act: str = "silu",
        noise_conditional: bool = False,
    ) -> None:
        super().__init__()
        self.noise_std, self.data_noise_std = joint_noise_levels(noise_std, data_noise_std)
        self.data_shape, self.latent_dim = as_shape(data_shape), int(latent_dim)
        self.data_dim = math.prod(self.data_shape)
        self.noise_conditional = bool(noise_conditional)
        inputs = self.data_dim + self.latent_dim + int(self.noise_conditional)
        self.net = MLP(inputs, self.data_dim + self.latent_dim, hidden, act)

    def forward(
        self, x_noisy: Tensor, z_noisy: Tensor, noise_std: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """Denoised ``(x, z)``; ``noise_std`` (``[batch, 1]``) is each example's ``σ_z`` for a
        noise-conditional denoiser (default: the fixed ``noise_std``)."""
        parts = [x_noisy.flatten(1), z_noisy]
        if self.noise_conditional:
            if noise_std is None:
                noise_std = torch.full_like(z_noisy[:, :1], self.noise_std)
            parts.append(noise_std.log())
        out = self.net(torch.cat(parts, 1))
        f_x, f_z = out.split([self.data_dim, self.latent_dim], 1)
        sigma = self.noise_std if noise_std is None else noise_std
        return x_noisy + self.data_noise_std * f_x.view_as(x_noisy), z_noisy + sigma * f_z


class DeterministicEncoder(nn.Module):
    """A deterministic encoder ``z = g(x)``: BiGAN's, a point mass posterior.

    Args:
        data_shape: shape of one example.
        latent_dim: size of ``z``.
        hidden: hidden layer sizes.
        act: activation name.

    >>> enc = DeterministicEncoder(4, 2, hidden=(8,))
    >>> bool((enc(torch.ones(1, 4)) == enc(torch.ones(1, 4))).all())
    True
    """

    def __init__(
        self, data_shape: DataShape, latent_dim: int, hidden: Sequence[int] = (256, 256), act: str = "silu"
    ) -> None:
        super().__init__()
        self.net = MLP(math.prod(as_shape(data_shape)), latent_dim, hidden, act)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


@register("mlp", "joint_denoiser")
def _mlp_joint_denoiser(
    data_shape, latent_dim, noise_std, hidden=(256, 256), data_noise_std=None, noise_conditional=False
):
    return JointDenoiser(
        data_shape, latent_dim, noise_std, hidden, data_noise_std, noise_conditional=noise_conditional
    )


@register("mlp", "deterministic_encoder")
def _mlp_deterministic_encoder(data_shape, latent_dim, hidden=(256, 256), generator_act="silu"):
    return DeterministicEncoder(data_shape, latent_dim, hidden, act=generator_act)
