"""Default networks by ``architecture`` name, so a config picks a family without repeating sizes.

An algorithm asks ``build_network(kind, architecture, data_shape=..., latent_dim=..., **options)``
for each part it was not given. Architectures register a builder per kind with
:func:`register`; ``"mlp"`` is built in, image architectures add theirs.

Options every builder receives (and may ignore): ``data_shape``, ``latent_dim``, ``hidden``,
``noise_dim``, ``noise_injection``, ``generator_act`` (activation of encoders and decoders).

Kinds: ``implicit_encoder``, ``gaussian_encoder``, ``location_scale_encoder`` (built from the
architecture's ``gaussian_encoder`` for every architecture), ``decoder``, ``discriminator`` (``T(x, z)``,
also used for joints), ``denoiser`` (``F(z̃; x)``).
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

from torch import nn

from ivi_lightning.nets import mlp

_BUILDERS: Dict[Tuple[str, str], Callable[..., nn.Module]] = {}


def register(architecture: str, kind: str) -> Callable:
    """Decorator registering ``builder(data_shape, latent_dim, **options) -> nn.Module``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BUILDERS[(architecture, kind)] = builder
        return builder

    return wrap


def architectures() -> list:
    return sorted({arch for arch, _ in _BUILDERS})


def build_network(kind: str, architecture: str, **options) -> nn.Module:
    """Build the default ``kind`` network of ``architecture``.

    >>> build_network("discriminator", "mlp", data_shape=(4,), latent_dim=2, hidden=(8,))(
    ...     __import__("torch").zeros(3, 4), __import__("torch").zeros(3, 2)).shape
    torch.Size([3])
    """
    if kind == "location_scale_encoder" and (architecture, kind) not in _BUILDERS:
        gaussian = build_network("gaussian_encoder", architecture, **options)
        return mlp.LocationScaleEncoder(gaussian, options["latent_dim"], options.get("noise_dim", 8), act=options.get("generator_act", "silu"))
    try:
        builder = _BUILDERS[(architecture, kind)]
    except KeyError:
        available = sorted(a for a, k in _BUILDERS if k == kind)
        raise ValueError(f"no {kind!r} network for architecture {architecture!r}; available: {available}") from None
    return builder(**options)


@register("mlp", "implicit_encoder")
def _mlp_implicit_encoder(data_shape, latent_dim, hidden=(256, 256), noise_dim=8, noise_injection="both", generator_act="silu",
                          noise_components=1, **_):
    return mlp.ImplicitEncoder(data_shape, latent_dim, hidden, noise_dim, noise_injection, act=generator_act, noise_components=noise_components)


@register("mlp", "gaussian_encoder")
def _mlp_gaussian_encoder(data_shape, latent_dim, hidden=(256, 256), generator_act="silu", **_):
    return mlp.GaussianEncoder(data_shape, latent_dim, hidden, act=generator_act)


@register("mlp", "decoder")
def _mlp_decoder(data_shape, latent_dim, hidden=(256, 256), generator_act="silu", **_):
    return mlp.Decoder(latent_dim, data_shape, hidden, act=generator_act)


@register("mlp", "discriminator")
def _mlp_discriminator(data_shape, latent_dim, hidden=(256, 256), **_):
    return mlp.Discriminator(data_shape, latent_dim, hidden)


@register("mlp", "denoiser")
def _mlp_denoiser(data_shape, latent_dim, noise_std, hidden=(256, 256), **_):
    return mlp.Denoiser(data_shape, latent_dim, noise_std, hidden)
