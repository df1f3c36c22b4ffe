"""Convolutional networks for images: implicit, Gaussian and deterministic encoders, decoders,
discriminators ``T(x, z)``, conditional denoisers ``F(z̃; x)`` and joint denoiser
``F(x̃, z̃)``, registered in the factory as architectures ``"conv_small"`` and ``"conv"``.

Layer counts follow ``data_shape``: stride-2 convolutions (kernel 4, padding 1) halve a square
image while its side is even and above 4, so 28×28 → 14 → 7 and 64×64 → 32 → 16 → 8 → 4; the
decoder mirrors them with transposed convolutions. Channel widths double per layer from a base
(``conv_small``: 16, capped at 64 — trains MNIST on a laptop CPU; ``conv``: 64, capped at 512 —
the DCGAN/AVB widths, for GPUs). No batch normalisation: the algorithms feed discriminators and
encoders mixed or repeated batches, whose statistics batch norm would leak between examples.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ivi_lightning.nets.factory import register
from ivi_lightning.nets.joint import joint_noise_levels
from ivi_lightning.nets.mlp import MLP, GaussianPosterior, activation
from ivi_lightning.shapes import DataShape, as_shape

#: (base width, maximum width) of each registered convolutional architecture.
WIDTHS = {"conv_small": (16, 64), "conv": (64, 512)}


def conv_plan(data_shape: DataShape, base: int = 16, max_width: int = 64) -> Tuple[int, Tuple[int, ...], int]:
    """``(channels, widths, final_side)`` of the convolution stack for images of ``data_shape``.

    Args:
        data_shape: ``(C, H, W)`` with ``H == W``.
        base: channels of the first convolution (doubled per layer).
        max_width: cap on the channels.

    >>> conv_plan((1, 28, 28))
    (1, (16, 32), 7)
    >>> conv_plan((3, 64, 64), base=64, max_width=512)
    (3, (64, 128, 256, 512), 4)
    """
    shape = as_shape(data_shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(
            "convolutional networks need square images of shape (channels, side, side), got "
            f"data_shape={shape}; "
            "use architecture='mlp' for vector data"
        )
    channels, side = shape[0], shape[1]
    layers = 0
    while side % 2 == 0 and side > 4:
        side, layers = side // 2, layers + 1
    if layers == 0 or side > 8:
        raise ValueError(
            f"convolutional networks halve the image side down to at most 8 pixels, which {shape[1]} "
            "does not allow (it must be even and reach <= 8 by halving, e.g. 28, 32, 64): resize the "
            "images or use architecture='mlp'"
        )
    widths = tuple(min(base * 2**i, max_width) for i in range(layers))
    return channels, widths, side


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


class ConvFeatures(nn.Module):
    """Stride-2 convolutions from an image to a flat feature vector (``out_features`` long).

    With ``noise_dim``, ``forward(x, noisy=True)`` adds to every convolution's pre-activation a
    learned per-channel projection of fresh noise ``ε ~ N(0, I)`` (one draw per example,
    broadcast over the feature map).

    Args:
        data_shape: ``(C, H, W)`` of the images.
        base: channels of the first convolution.
        max_width: cap on the channels.
        noise_dim: size of each injected noise vector (``None``: no noise).
        act: activation name.

    >>> f = ConvFeatures((1, 28, 28))
    >>> f(torch.zeros(2, 1, 28, 28)).shape, f.out_features
    (torch.Size([2, 1568]), 1568)
    """

    def __init__(
        self,
        data_shape: DataShape,
        base: int = 16,
        max_width: int = 64,
        noise_dim: Optional[int] = None,
        act: str = "silu",
    ) -> None:
        super().__init__()
        channels, widths, side = conv_plan(data_shape, base, max_width)
        sizes = (channels, *widths)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(sizes[:-1], sizes[1:]))
        self.noise_dim = noise_dim
        self.noise_maps = (
            nn.ModuleList(nn.Linear(noise_dim, w, bias=False) for w in widths) if noise_dim else None
        )
        self.act = activation(act)
        self.out_features = widths[-1] * side * side

    def forward(self, x: Tensor, noisy: bool = False) -> Tensor:
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if noisy and self.noise_maps is not None and self.noise_dim is not None:
                eps = torch.randn(h.shape[0], self.noise_dim, device=h.device, dtype=h.dtype)
                h = h + self.noise_maps[i](eps)[:, :, None, None]
            h = self.act(h)
        return h.flatten(1)


class ConvImplicitEncoder(nn.Module):
    """Implicit posterior ``z = g(x, ε)``: convolutions, then an MLP head, fed Gaussian noise.

    ``noise_injection``: ``"input"`` concatenates ``ε`` to the flattened conv features (the
    head's input); ``"hidden"`` adds a learned projection of fresh noise to the pre-activations
    of every convolution (per channel, broadcast over the map) and every hidden layer of the
    head; ``"both"`` does both.

    Args:
        data_shape: ``(C, H, W)`` of the images.
        latent_dim: size of ``z``.
        hidden: hidden layer sizes of the head.
        noise_dim: size of each noise vector.
        noise_injection: ``"input"``, ``"hidden"`` or ``"both"``.
        base: channels of the first convolution.
        max_width: cap on the channels.
        act: activation name.

    >>> enc = ConvImplicitEncoder((1, 28, 28), latent_dim=2, hidden=(16,), noise_dim=3)
    >>> enc(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 2])
    >>> x = torch.zeros(1, 1, 28, 28)
    >>> bool((enc(x) != enc(x)).any())  # fresh noise each call
    True
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        hidden: Sequence[int] = (256,),
        noise_dim: int = 8,
        noise_injection: str = "both",
        base: int = 16,
        max_width: int = 64,
        act: str = "silu",
    ) -> None:
        super().__init__()
        if noise_injection not in ("input", "hidden", "both"):
            raise ValueError(f"noise_injection must be 'input', 'hidden' or 'both', got {noise_injection!r}")
        if int(noise_dim) <= 0:
            raise ValueError(f"an implicit encoder needs noise: noise_dim must be positive, got {noise_dim}")
        _check_positive(latent_dim=latent_dim)
        self.noise_dim = int(noise_dim)
        self.input_noise = noise_injection in ("input", "both")
        hidden_noise = noise_injection in ("hidden", "both")
        self.features = ConvFeatures(
            data_shape, base, max_width, self.noise_dim if hidden_noise else None, act
        )
        sizes = [self.features.out_features + (self.noise_dim if self.input_noise else 0), *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.noise_maps = (
            nn.ModuleList(nn.Linear(self.noise_dim, b, bias=False) for b in hidden) if hidden_noise else None
        )
        self.act = activation(act)
        self.out = nn.Linear(sizes[-1], latent_dim)

    def _noise(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape[0], self.noise_dim, device=like.device, dtype=like.dtype)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x, noisy=True)
        if self.input_noise:
            h = torch.cat([h, self._noise(h)], 1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if self.noise_maps is not None:
                h = h + self.noise_maps[i](self._noise(h))
            h = self.act(h)
        return self.out(h)


class ConvGaussianEncoder(GaussianPosterior):
    """Diagonal-Gaussian posterior ``N(μ(x), σ(x)²)`` on conv features — the VAE baseline.

    Args:
        data_shape: ``(C, H, W)`` of the images.
        latent_dim: size of ``z``.
        hidden: hidden layer sizes of the head.
        base: channels of the first convolution.
        max_width: cap on the channels.
        act: activation name.

    >>> mean, std = ConvGaussianEncoder((3, 64, 64), 4, hidden=(8,)).moments(torch.zeros(2, 3, 64, 64))
    >>> mean.shape, bool((std > 0).all())
    (torch.Size([2, 4]), True)
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        hidden: Sequence[int] = (256,),
        base: int = 16,
        max_width: int = 64,
        act: str = "silu",
    ) -> None:
        super().__init__()
        _check_positive(latent_dim=latent_dim)
        self.features = ConvFeatures(data_shape, base, max_width, act=act)
        self.head = MLP(self.features.out_features, 2 * latent_dim, hidden, act)

    def net_output(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ConvDeterministicEncoder(nn.Module):
    """A deterministic encoder ``z = g(x)`` on conv features (BiGAN's point-mass posterior).

    Args:
        data_shape: ``(C, H, W)`` of the images.
        latent_dim: size of ``z``.
        hidden: hidden layer sizes of the head.
        base: channels of the first convolution.
        max_width: cap on the channels.
        act: activation name.

    >>> enc = ConvDeterministicEncoder((1, 28, 28), 2, hidden=(8,))
    >>> x = torch.rand(1, 1, 28, 28)
    >>> bool((enc(x) == enc(x)).all())
    True
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        hidden: Sequence[int] = (256,),
        base: int = 16,
        max_width: int = 64,
        act: str = "silu",
    ) -> None:
        super().__init__()
        _check_positive(latent_dim=latent_dim)
        self.features = ConvFeatures(data_shape, base, max_width, act=act)
        self.head = MLP(self.features.out_features, latent_dim, hidden, act)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ConvUpsampler(nn.Module):
    """A flat vector to an image of ``data_shape``: a linear map to the smallest feature map,
    then transposed convolutions (kernel 4, stride 2) doubling it back, mirroring
    :class:`ConvFeatures`. No activation on the output (logits or means).

    Args:
        in_features: size of the input vector.
        data_shape: ``(C, H, W)`` of the output images.
        base: channels of the last hidden feature map.
        max_width: cap on the channels.
        act: activation name.

    >>> ConvUpsampler(8, (1, 28, 28))(torch.zeros(2, 8)).shape
    torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self, in_features: int, data_shape: DataShape, base: int = 16, max_width: int = 64, act: str = "silu"
    ) -> None:
        super().__init__()
        channels, widths, side = conv_plan(data_shape, base, max_width)
        self.start = (widths[-1], side, side)
        self.project = nn.Linear(in_features, math.prod(self.start))
        sizes = (*reversed(widths), channels)
        layers: List[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.ConvTranspose2d(a, b, 4, 2, 1))
            if i < len(sizes) - 2:
                layers.append(activation(act))
        self.act = activation(act)
        self.deconvs = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        return self.deconvs(self.act(self.project(h)).view(-1, *self.start))


class ConvDecoder(nn.Module):
    """Decoder ``z → `` logits or means of shape ``data_shape``: an MLP, then transposed convolutions.

    Args:
        latent_dim: size of ``z``.
        data_shape: ``(C, H, W)`` of the images.
        hidden: hidden layer sizes of the MLP before the convolutions (may be empty).
        base: channels of the last hidden feature map.
        max_width: cap on the channels.
        act: activation name.

    >>> ConvDecoder(2, (3, 64, 64), hidden=(8,))(torch.zeros(5, 2)).shape
    torch.Size([5, 3, 64, 64])
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: DataShape,
        hidden: Sequence[int] = (256,),
        base: int = 16,
        max_width: int = 64,
        act: str = "silu",
    ) -> None:
        super().__init__()
        _check_positive(latent_dim=latent_dim)
        hidden = tuple(hidden)
        self.data_shape = as_shape(data_shape)
        self.mlp = (
            nn.Sequential(MLP(latent_dim, hidden[-1], hidden[:-1], act), activation(act))
            if hidden
            else nn.Identity()
        )
        self.up = ConvUpsampler(hidden[-1] if hidden else latent_dim, data_shape, base, max_width, act)

    def forward(self, z: Tensor) -> Tensor:
        return self.up(self.mlp(z))


class ConvDiscriminator(nn.Module):
    """Logit ``T(x, z)``: conv features of ``x`` joined with an MLP embedding of ``z`` (AVB style).

    Args:
        data_shape: ``(C, H, W)`` of the images.
        latent_dim: size of ``z``.
        hidden: hidden layer sizes of the ``z`` embedding and of the joint head.
        base: channels of the first convolution.
        max_width: cap on the channels.
        act: activation name.

    >>> ConvDiscriminator((1, 28, 28), 2, hidden=(8,))(torch.zeros(3, 1, 28, 28), torch.zeros(3, 2)).shape
    torch.Size([3])
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        hidden: Sequence[int] = (256,),
        base: int = 16,
        max_width: int = 64,
        act: str = "silu",
    ) -> None:
        super().__init__()
        _check_positive(latent_dim=latent_dim)
        hidden = tuple(hidden) or (256,)
        width = hidden[0]
        self.features = ConvFeatures(data_shape, base, max_width, act=act)
        self.embed_x = nn.Sequential(nn.Linear(self.features.out_features, width), activation(act))
        self.embed_z = nn.Sequential(MLP(latent_dim, width, hidden[:1], act), activation(act))
        self.head = MLP(2 * width, 1, hidden, act)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.head(torch.cat([self.embed_x(self.features(x)), self.embed_z(z)], 1)).squeeze(1)


class ConvDenoiser(nn.Module):
    """Conditional denoiser ``F(z̃; x) = z̃ + σ · f(z̃, x)``: an MLP on ``z̃`` and conv features of ``x``.

    The residual form scaled by ``σ`` keeps the regression target of unit scale, as in
    :class:`~ivi_lightning.nets.mlp.Denoiser`.

    Args:
        data_shape: ``(C, H, W)`` of the images (conditioning input).
        latent_dim: size of ``z``.
        noise_std: corruption level ``σ``.
        hidden: hidden layer sizes of the MLP.
        base: channels of the first convolution.
        max_width: cap on the channels.
        act: activation name.

    >>> denoiser = ConvDenoiser((1, 28, 28), 2, noise_std=0.1, hidden=(8,))
    >>> denoiser(torch.zeros(3, 2), torch.zeros(3, 1, 28, 28)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        noise_std: float,
        hidden: Sequence[int] = (256,),
        base: int = 16,
        max_width: int = 64,
        act: str = "silu",
    ) -> None:
        super().__init__()
        if noise_std <= 0:
            raise ValueError(f"denoiser noise_std must be positive, got {noise_std}")
        _check_positive(latent_dim=latent_dim)
        hidden = tuple(hidden) or (256,)
        self.noise_std = float(noise_std)
        self.features = ConvFeatures(data_shape, base, max_width, act=act)
        self.embed_x = nn.Sequential(nn.Linear(self.features.out_features, hidden[0]), activation(act))
        self.net = MLP(hidden[0] + latent_dim, latent_dim, hidden, act)

    def forward(self, z_noisy: Tensor, x: Tensor) -> Tensor:
        return z_noisy + self.noise_std * self.net(torch.cat([self.embed_x(self.features(x)), z_noisy], 1))


class ConvJointDenoiser(nn.Module):
    """Joint denoiser ``F(x̃, z̃) → (x, z)`` of images and latents, residual per block.

    Conv features of ``x̃`` and ``z̃`` enter a shared MLP; a linear map gives ``f_z`` and
    transposed convolutions give ``f_x``: ``x̂ = x̃ + σ_x f_x``, ``ẑ = z̃ + σ_z f_z`` (as
    :class:`~ivi_lightning.nets.joint.JointDenoiser`).

    Args:
        data_shape: ``(C, H, W)`` of the images.
        latent_dim: size of ``z``.
        noise_std: corruption level ``σ_z`` of the latent block.
        hidden: hidden layer sizes of the shared MLP.
        data_noise_std: corruption level ``σ_x`` of the data block (default ``noise_std``).
        base: channels of the first convolution.
        max_width: cap on the channels.
        act: activation name.

    >>> den = ConvJointDenoiser((1, 28, 28), 2, noise_std=0.1, hidden=(8,))
    >>> [t.shape for t in den(torch.zeros(3, 1, 28, 28), torch.zeros(3, 2))]
    [torch.Size([3, 1, 28, 28]), torch.Size([3, 2])]
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        noise_std: float,
        hidden: Sequence[int] = (256,),
        data_noise_std: Optional[float] = None,
        base: int = 16,
        max_width: int = 64,
        act: str = "silu",
    ) -> None:
        super().__init__()
        self.noise_std, self.data_noise_std = joint_noise_levels(noise_std, data_noise_std)
        _check_positive(latent_dim=latent_dim)
        hidden = tuple(hidden) or (256,)
        self.features = ConvFeatures(data_shape, base, max_width, act=act)
        self.trunk = nn.Sequential(
            MLP(self.features.out_features + latent_dim, hidden[-1], hidden[:-1], act), activation(act)
        )
        self.out_z = nn.Linear(hidden[-1], latent_dim)
        self.out_x = ConvUpsampler(hidden[-1], data_shape, base, max_width, act)

    def forward(self, x_noisy: Tensor, z_noisy: Tensor) -> Tuple[Tensor, Tensor]:
        h = self.trunk(torch.cat([self.features(x_noisy), z_noisy], 1))
        return x_noisy + self.data_noise_std * self.out_x(h), z_noisy + self.noise_std * self.out_z(h)


def _register(architecture: str) -> None:
    base, max_width = WIDTHS[architecture]
    size = dict(base=base, max_width=max_width)

    @register(architecture, "implicit_encoder")
    def _implicit_encoder(data_shape, latent_dim, hidden=(256,), noise_dim=8, noise_injection="both"):
        return ConvImplicitEncoder(data_shape, latent_dim, hidden, noise_dim, noise_injection, **size)

    @register(architecture, "gaussian_encoder")
    def _gaussian_encoder(data_shape, latent_dim, hidden=(256,)):
        return ConvGaussianEncoder(data_shape, latent_dim, hidden, **size)

    @register(architecture, "deterministic_encoder")
    def _deterministic_encoder(data_shape, latent_dim, hidden=(256,)):
        return ConvDeterministicEncoder(data_shape, latent_dim, hidden, **size)

    @register(architecture, "decoder")
    def _decoder(data_shape, latent_dim, hidden=(256,)):
        return ConvDecoder(latent_dim, data_shape, hidden, **size)

    @register(architecture, "discriminator")
    def _discriminator(data_shape, latent_dim, hidden=(256,)):
        return ConvDiscriminator(data_shape, latent_dim, hidden, **size)

    @register(architecture, "denoiser")
    def _denoiser(data_shape, latent_dim, noise_std, hidden=(256,)):
        return ConvDenoiser(data_shape, latent_dim, noise_std, hidden, **size)

    @register(architecture, "joint_denoiser")
    def _joint_denoiser(
        data_shape, latent_dim, noise_std, hidden=(256,), data_noise_std=None, noise_conditional=False
    ):
        if noise_conditional:
            raise ValueError(
                f"the {architecture!r} joint denoiser has no noise-conditional form: use architecture='mlp'"
            )
        return ConvJointDenoiser(data_shape, latent_dim, noise_std, hidden, data_noise_std, **size)


for _architecture in WIDTHS:
    _register(_architecture)
