"""Fully connected networks for vector data: implicit and Gaussian encoders, decoders,
discriminators ``T(x, z)`` and conditional denoisers ``F(z̃; x)``.

Every network flattens ``x``, so vector data (``data_shape=4``) and small images
(``data_shape=(1, 28, 28)``) both work.
"""

from __future__ import annotations

import math
from typing import Optional, Protocol, Sequence, Tuple, cast

import torch
from torch import Tensor, nn

from ivi_lightning.numbers import is_whole_number
from ivi_lightning.shapes import DataShape, as_shape

ACTIVATIONS = {
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def activation(name: str) -> nn.Module:
    """An activation module by name (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): each output is the largest of ``pieces`` linear
    functions of the input, so the layer learns its own piecewise-linear activation.

    Args:
        in_features: input size.
        out_features: output size.
        pieces: linear functions per output, ``≥ 2``.

    >>> layer = Maxout(3, 2, pieces=4)
    >>> layer(torch.zeros(5, 3)).shape, layer.linear.out_features
    (torch.Size([5, 2]), 8)
    """

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        if not is_whole_number(pieces, 2):
            raise ValueError(f"a maxout layer takes the largest of pieces ≥ 2 linear maps, got {pieces!r}")
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        # consecutive outputs of the linear map are the pieces of one unit
        return self.linear(x).unflatten(-1, (-1, self.pieces)).amax(-1)


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last).

    Args:
        in_features: input size.
        out_features: output size.
        hidden: sizes of the hidden layers.
        act: activation name.
        maxout_pieces: ``≥ 2``: every hidden layer is a :class:`Maxout` layer of this many pieces
            instead of a linear layer and ``act``; ``1``: plain layers.

    >>> MLP(3, 2, hidden=(8, 8))(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    >>> MLP(3, 2, hidden=(8, 8), maxout_pieces=5)(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (256, 256),
        act: str = "silu",
        maxout_pieces: int = 1,
    ) -> None:
        if not is_whole_number(maxout_pieces, 1):
            raise ValueError(
                f"maxout_pieces must be a whole number ≥ 1 (1: linear layers and {act!r}; ≥ 2: maxout "
                f"layers of that many pieces), got {maxout_pieces!r}"
            )
        layers: list = []
        sizes, maxout = [in_features, *hidden], maxout_pieces > 1
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [Maxout(a, b, maxout_pieces)] if maxout else [nn.Linear(a, b), activation(act)]
        layers.append(nn.Linear(sizes[-1], out_features))
        super().__init__(*layers)


def check_noise_components(noise_components: int) -> int:
    """``noise_components`` as an int, refused unless a positive whole number."""
    if int(noise_components) != noise_components or noise_components < 1:
        raise ValueError(f"noise_components must be a positive integer, got {noise_components!r}")
    return int(noise_components)


def component_one_hot(components: int, like: Tensor) -> Tensor:
    """One-hot indices ``[len(like), components]`` of a uniformly drawn mixture component per row of
    ``like`` (in its device and dtype): the discrete part of a mixture's noise.

    >>> component_one_hot(4, torch.zeros(3, 2)).sum(1)
    tensor([1., 1., 1.])
    """
    index = torch.randint(components, (like.shape[0],), device=like.device)
    return nn.functional.one_hot(index, components).to(like.dtype)


def _flat_dim(data_shape: DataShape) -> int:
    return math.prod(as_shape(data_shape))


class ImplicitEncoder(nn.Module):
    """Implicit posterior ``z = g_ψ(x, ε)``: a network fed Gaussian noise, with no density.

    Noise enters at the input (concatenated to ``x``), in every hidden layer (a learned linear
    map of fresh noise added to the pre-activation), or both. Hidden-layer noise lets the
    network build multi-modal posteriors with fewer layers than input noise alone.

    Args:
        data_shape: shape of one example.
        latent_dim: size of ``z``.
        hidden: hidden layer sizes.
        noise_dim: size of each noise vector ``ε``.
        noise_injection: ``"input"``, ``"hidden"`` or ``"both"``.
        act: activation name.
        noise_components: the noise is a uniform mixture of this many components: each draw
            also picks a component, whose one-hot index joins the input. A continuous map of
            connected noise must leave some mass on a bridge between separate posterior modes;
            separate components can land on separate modes. ``1``: Gaussian noise only.

    >>> enc = ImplicitEncoder(data_shape=4, latent_dim=2, hidden=(16,), noise_dim=3)
    >>> enc(torch.zeros(5, 4)).shape
    torch.Size([5, 2])
    >>> bool((enc(torch.zeros(1, 4)) != enc(torch.zeros(1, 4))).any())  # fresh noise each call
    True
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        hidden: Sequence[int] = (256, 256),
        noise_dim: int = 8,
        noise_injection: str = "both",
        act: str = "silu",
        noise_components: int = 1,
    ) -> None:
        super().__init__()
        self.noise_components = check_noise_components(noise_components)
        if noise_injection not in ("input", "hidden", "both"):
            raise ValueError(f"noise_injection must be 'input', 'hidden' or 'both', got {noise_injection!r}")
        if noise_dim <= 0:
            raise ValueError(f"an implicit encoder needs noise: noise_dim must be positive, got {noise_dim}")
        self.data_dim, self.latent_dim, self.noise_dim = _flat_dim(data_shape), latent_dim, noise_dim
        self.input_noise = noise_injection in ("input", "both")
        hidden_noise = noise_injection in ("hidden", "both")
        components = self.noise_components if self.noise_components > 1 else 0
        sizes = [self.data_dim + (noise_dim if self.input_noise else 0) + components, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.noise_maps = (
            nn.ModuleList(nn.Linear(noise_dim, b, bias=False) for b in hidden) if hidden_noise else None
        )
        self.act = activation(act)
        self.out = nn.Linear(sizes[-1], latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        if self.input_noise:
            h = torch.cat([h, torch.randn(h.shape[0], self.noise_dim, device=h.device, dtype=h.dtype)], 1)
        if self.noise_components > 1:
            h = torch.cat([h, component_one_hot(self.noise_components, h)], 1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if self.noise_maps is not None:
                h = h + self.noise_maps[i](
                    torch.randn(h.shape[0], self.noise_dim, device=h.device, dtype=h.dtype)
                )
            h = self.act(h)
        return self.out(h)


class GaussianPosterior(nn.Module):
    """Base of explicit diagonal-Gaussian encoders: subclasses map ``x`` to ``2 * latent_dim``
    outputs (``net_output``); this turns them into moments and reparameterised samples."""

    def net_output(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def moments(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(mean, std)`` of ``q(z|x)``, each ``[batch, latent_dim]``."""
        mean, pre_std = self.net_output(x).chunk(2, dim=1)
        return mean, nn.functional.softplus(pre_std) + 1e-4

    def forward(self, x: Tensor) -> Tensor:
        mean, std = self.moments(x)
        return mean + std * torch.randn_like(std)


class _MomentEncoder(Protocol):
    """An encoder with ``moments(x) -> (mean, std)`` (as :class:`GaussianPosterior`)."""

    def moments(self, x: Tensor) -> Tuple[Tensor, Tensor]: ...


class LocationScaleEncoder(nn.Module):
    """Implicit posterior in location–scale form: ``z = μ(x) + σ(x) ⊙ u``.

    ``u = η + g(η, ε, μ, log σ)``, ``η ~ N(0, I)``, ``ε ~ N(0, I)``: a Gaussian encoder's moments,
    and a small noise-fed network ``g`` that warps the standardised noise into any shape — so
    ``q(z|x)`` is implicit. ``g``'s output layer starts at zero, so training starts from the
    Gaussian ``N(μ, σ²)``. ``u`` depends on ``x`` only through ``(μ, log σ)``, and further draws
    of it for the same ``x`` cost only ``g``: adaptive contrast (``PCAdv(adaptive_contrast=True)``)
    uses both (see :meth:`PCAdv.contrast <ivi_lightning.PCAdv.contrast>`).

    Args:
        gaussian: the location–scale part, any encoder with ``moments(x) -> (mean, std)``.
        latent_dim: size of ``z``.
        noise_dim: size of the extra noise ``ε``.
        hidden: hidden sizes of ``g``.
        act: activation of ``g``.

    >>> enc = LocationScaleEncoder(GaussianEncoder(4, 2, hidden=(8,)), latent_dim=2, hidden=(8,))
    >>> mean, std = enc.location_scale(torch.zeros(3, 4))
    >>> enc.warped_noise(mean, std, num_samples=5).shape, enc(torch.zeros(3, 4)).shape
    (torch.Size([5, 3, 2]), torch.Size([3, 2]))
    """

    def __init__(
        self,
        gaussian: nn.Module,
        latent_dim: int,
        noise_dim: int = 8,
        hidden: Sequence[int] = (64,),
        act: str = "silu",
    ) -> None:
        super().__init__()
        if not hasattr(gaussian, "moments"):
            raise ValueError(
                "LocationScaleEncoder needs an encoder with moments(x) -> (mean, std), "
                f"got {type(gaussian).__name__}"
            )
        if noise_dim <= 0:
            raise ValueError(f"noise_dim must be positive, got {noise_dim}")
        self.gaussian, self.latent_dim, self.noise_dim = gaussian, int(latent_dim), int(noise_dim)
        self.warp = MLP(3 * self.latent_dim + self.noise_dim, self.latent_dim, hidden, act)
        out = self.warp[-1]
        assert isinstance(out, nn.Linear)  # an MLP ends with a linear layer
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)

    def location_scale(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(μ(x), σ(x))``, each ``[batch, latent_dim]``. Not the moments of ``q`` (``u`` is not
        standard), hence not named ``moments``: that marks an explicit Gaussian encoder (IWAE)."""
        return cast(_MomentEncoder, self.gaussian).moments(x)

    @staticmethod
    def context(mean: Tensor, std: Tensor) -> Tensor:
        """``cat(μ, log σ)``: all ``g`` knows of ``x``, so all a discriminator of ``u`` needs of it."""
        return torch.cat([mean, std.log()], 1)

    def warped_noise(self, mean: Tensor, std: Tensor, num_samples: int = 1) -> Tensor:
        """``num_samples`` draws of ``u`` per example given ``(μ, σ)``:
        ``[num_samples, batch, latent_dim]``."""
        eta = torch.randn(num_samples, *mean.shape, device=mean.device, dtype=mean.dtype)
        eps = torch.randn(num_samples, mean.shape[0], self.noise_dim, device=mean.device, dtype=mean.dtype)
        context = self.context(mean, std).expand(num_samples, *mean.shape[:1], 2 * self.latent_dim)
        return eta + self.warp(torch.cat([eta, eps, context], -1))

    def forward(self, x: Tensor) -> Tensor:
        mean, std = self.location_scale(x)
        return mean + std * self.warped_noise(mean, std)[0]


def detached(location_scale: Optional[Tuple[Tensor, Tensor]]) -> Optional[Tuple[Tensor, Tensor]]:
    """A :class:`LocationScaleEncoder`'s ``(μ, σ)`` cut from their graph (``None`` stays ``None``).

    An algorithm computes them once per update: with their graph for the encoder's step, detached
    for the auxiliary network's steps, which must not reach the encoder.
    """
    return None if location_scale is None else (location_scale[0].detach(), location_scale[1].detach())


class GaussianEncoder(GaussianPosterior):
    """Explicit diagonal-Gaussian posterior ``N(μ(x), σ(x)²)`` — the VAE baseline.

    Args:
        data_shape: shape of one example.
        latent_dim: size of ``z``.
        hidden: hidden layer sizes.
        act: activation name.

    >>> mean, std = GaussianEncoder(4, 2, hidden=(8,)).moments(torch.zeros(3, 4))
    >>> mean.shape, bool((std > 0).all())
    (torch.Size([3, 2]), True)
    """

    def __init__(
        self, data_shape: DataShape, latent_dim: int, hidden: Sequence[int] = (256, 256), act: str = "silu"
    ) -> None:
        super().__init__()
        self.net = MLP(_flat_dim(data_shape), 2 * latent_dim, hidden, act)

    def net_output(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class Decoder(nn.Module):
    """MLP from ``z`` to an output of shape ``data_shape`` (logits or means).

    Args:
        latent_dim: size of ``z``.
        data_shape: shape of one example.
        hidden: hidden layer sizes.
        act: activation name.

    >>> Decoder(2, (1, 4, 4), hidden=(8,))(torch.zeros(3, 2)).shape
    torch.Size([3, 1, 4, 4])
    """

    def __init__(
        self, latent_dim: int, data_shape: DataShape, hidden: Sequence[int] = (256, 256), act: str = "silu"
    ) -> None:
        super().__init__()
        self.data_shape = as_shape(data_shape)
        self.net = MLP(latent_dim, math.prod(self.data_shape), hidden, act)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.data_shape)


class Discriminator(nn.Module):
    """Logit ``T(x, z)`` of a classifier between two distributions over ``(x, z)``.

    Used prior-contrastively (same ``x``, ``z`` from ``q`` or ``p``) and joint-contrastively.

    Args:
        data_shape: shape of one example.
        latent_dim: size of ``z``.
        hidden: hidden layer sizes.
        act: activation name.
        maxout_pieces: ``≥ 2``: maxout hidden layers of this many pieces (see :class:`MLP`), as in
            ALI's and PacGAN's discriminators for the 2-D mixtures; ``1``: linear layers and ``act``.

    >>> Discriminator(4, 2, hidden=(8,))(torch.zeros(3, 4), torch.zeros(3, 2)).shape
    torch.Size([3])
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        hidden: Sequence[int] = (256, 256),
        act: str = "silu",
        maxout_pieces: int = 1,
    ) -> None:
        super().__init__()
        self.net = MLP(_flat_dim(data_shape) + latent_dim, 1, hidden, act, maxout_pieces)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.net(torch.cat([x.flatten(1), z], 1)).squeeze(1)


class Denoiser(nn.Module):
    """Conditional denoiser ``F(z̃; x) = z̃ + σ · f(z̃, x)`` for latents corrupted at level ``σ``.

    The residual form scaled by ``σ`` keeps the regression target (``-η``) of unit scale at any
    noise level, so the score ``(F − z̃)/σ² = f/σ`` is learned equally well for small ``σ``.

    Args:
        data_shape: shape of one example (conditioning input).
        latent_dim: size of ``z``.
        noise_std: corruption level ``σ``.
        hidden: hidden layer sizes.
        act: activation name.

    >>> Denoiser(4, 2, noise_std=0.1, hidden=(8,))(torch.zeros(3, 2), torch.zeros(3, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        data_shape: DataShape,
        latent_dim: int,
        noise_std: float,
        hidden: Sequence[int] = (256, 256),
        act: str = "silu",
    ) -> None:
        super().__init__()
        if noise_std <= 0:
            raise ValueError(f"denoiser noise_std must be positive, got {noise_std}")
        self.noise_std = float(noise_std)
        self.net = MLP(_flat_dim(data_shape) + latent_dim, latent_dim, hidden, act)

    def forward(self, z_noisy: Tensor, x: Tensor) -> Tensor:
        return z_noisy + self.noise_std * self.net(torch.cat([x.flatten(1), z_noisy], 1))
