"""Default networks by ``architecture`` name, so a config picks a family without repeating sizes.

An algorithm asks ``build_network(kind, architecture, shared=..., **options)`` for each part it
was not given. Architectures register a builder per kind with :func:`register`; ``"mlp"`` is
built in, image architectures add theirs.

Builders name every option they take as a keyword argument. ``shared`` holds the sizes an
algorithm gives all its networks (``data_shape``, ``latent_dim``, ``hidden``, ``noise_dim``,
``noise_injection``, ``noise_components``, ``generator_act``): each builder receives those it
names. ``options`` are meant for this network: one the builder does not take (a misspelling)
is an error naming it.

Kinds: ``implicit_encoder``, ``gaussian_encoder``, ``location_scale_encoder`` (built from the
architecture's ``gaussian_encoder`` for every architecture), ``deterministic_encoder``,
``decoder``, ``discriminator`` (``T(x, z)``, also used for joints), ``denoiser`` (``F(z̃; x)``),
``joint_denoiser``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Mapping, Optional, Set, Tuple

from torch import nn

from ivi_lightning.nets import mlp

_BUILDERS: Dict[Tuple[str, str], Callable[..., nn.Module]] = {}
#: Options of the location–scale wrapper around an architecture's Gaussian encoder.
_LOCATION_SCALE_OPTIONS = ("noise_dim", "generator_act")


def register(architecture: str, kind: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``builder(data_shape, latent_dim, *, option=default, ...) -> nn.Module``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BUILDERS[(architecture, kind)] = builder
        return builder

    return wrap


def architectures() -> list:
    return sorted({arch for arch, _ in _BUILDERS})


def _builder(kind: str, architecture: str) -> Callable[..., nn.Module]:
    try:
        return _BUILDERS[(architecture, kind)]
    except KeyError:
        available = sorted(a for a, k in _BUILDERS if k == kind)
        raise ValueError(
            f"no {kind!r} network for architecture {architecture!r}; available: {available}"
        ) from None


def accepted_options(kind: str, architecture: str) -> Set[str]:
    """The keyword arguments the ``kind`` builder of ``architecture`` takes."""
    if kind == "location_scale_encoder" and (architecture, kind) not in _BUILDERS:
        return accepted_options("gaussian_encoder", architecture) | set(_LOCATION_SCALE_OPTIONS)
    return set(inspect.signature(_builder(kind, architecture)).parameters)


def build_network(
    kind: str, architecture: str, shared: Optional[Mapping[str, Any]] = None, **options: Any
) -> nn.Module:
    """Build the default ``kind`` network of ``architecture``.

    Args:
        kind: e.g. ``"discriminator"``.
        architecture: e.g. ``"mlp"`` or ``"conv_small"``.
        shared: sizes common to an algorithm's networks; each is passed if the builder takes it.
        **options: this network's options; one the builder does not take raises ``TypeError``.

    >>> build_network("discriminator", "mlp", data_shape=(4,), latent_dim=2, hidden=(8,))(
    ...     __import__("torch").zeros(3, 4), __import__("torch").zeros(3, 2)).shape
    torch.Size([3])
    """
    accepted = accepted_options(kind, architecture)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(
            f"the {kind!r} network of architecture {architecture!r} takes no option "
            f"{', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(sorted(accepted))}"
        )
    merged = {**{k: v for k, v in (shared or {}).items() if k in accepted}, **options}
    if kind == "location_scale_encoder" and (architecture, kind) not in _BUILDERS:
        gaussian = build_network("gaussian_encoder", architecture, shared=merged)
        noise_dim, act = merged.get("noise_dim", 8), merged.get("generator_act", "silu")
        return mlp.LocationScaleEncoder(gaussian, merged["latent_dim"], noise_dim, act=act)
    return _builder(kind, architecture)(**merged)


@register("mlp", "implicit_encoder")
def _mlp_implicit_encoder(
    data_shape,
    latent_dim,
    hidden=(256, 256),
    noise_dim=8,
    noise_injection="both",
    generator_act="silu",
    noise_components=1,
):
    return mlp.ImplicitEncoder(
        data_shape,
        latent_dim,
        hidden,
        noise_dim,
        noise_injection,
        act=generator_act,
        noise_components=noise_components,
    )


@register("mlp", "gaussian_encoder")
def _mlp_gaussian_encoder(data_shape, latent_dim, hidden=(256, 256), generator_act="silu"):
    return mlp.GaussianEncoder(data_shape, latent_dim, hidden, act=generator_act)


@register("mlp", "decoder")
def _mlp_decoder(data_shape, latent_dim, hidden=(256, 256), generator_act="silu"):
    return mlp.Decoder(latent_dim, data_shape, hidden, act=generator_act)


@register("mlp", "discriminator")
def _mlp_discriminator(data_shape, latent_dim, hidden=(256, 256)):
    return mlp.Discriminator(data_shape, latent_dim, hidden)


@register("mlp", "denoiser")
def _mlp_denoiser(data_shape, latent_dim, noise_std, hidden=(256, 256)):
    return mlp.Denoiser(data_shape, latent_dim, noise_std, hidden)
