"""The hyperparameters every algorithm shares (see :class:`~ivi_lightning.algorithms.base.ImplicitVI`):
their checks, and the default networks they size.

* :func:`check_hyperparameters`: the first one out of its range, named.
* :func:`default_network`: a network of the algorithm's ``architecture``, sized to its data and latent.
* :func:`context_network`: an MLP that takes a location–scale encoder's ``cat(μ, log σ)`` for ``x``.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from ivi_lightning.algorithms.contracts import check_integers
from ivi_lightning.nets.factory import build_network
from ivi_lightning.shapes import as_shape
from ivi_lightning.training.nonfinite import NONFINITE_ACTIONS

LIKELIHOOD_FAMILIES = (None, "bernoulli", "gaussian")


def check_hyperparameters(hparams: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first shared hyperparameter out of its range (or not an integer)."""
    check_integers(hparams)
    if hparams["on_nonfinite"] not in NONFINITE_ACTIONS:
        raise ValueError(
            f"on_nonfinite must be one of {', '.join(NONFINITE_ACTIONS)}, got {hparams['on_nonfinite']!r}"
        )
    if hparams["grad_clip"] is not None and hparams["grad_clip"] <= 0:
        raise ValueError(f"grad_clip must be positive (or None for no clipping), got {hparams['grad_clip']}")
    if int(hparams["latent_dim"]) <= 0:
        raise ValueError(f"latent_dim must be positive, got {hparams['latent_dim']}")
    for name in ("lr", "aux_lr", "aux_steps", "updates_per_batch"):
        if hparams[name] <= 0:
            raise ValueError(f"{name} must be positive, got {hparams[name]}")
    if hparams["likelihood_family"] not in LIKELIHOOD_FAMILIES:
        raise ValueError(
            f"likelihood_family must be 'bernoulli' or 'gaussian', got {hparams['likelihood_family']!r}"
        )


def default_network(hparams: Mapping[str, Any], kind: str, **options: Any) -> nn.Module:
    """A default ``kind`` network of ``hparams["architecture"]``, sized by the shared hyperparameters.

    Args:
        hparams: an algorithm's saved hyperparameters.
        kind: a kind of :mod:`~ivi_lightning.nets.factory` (``"decoder"``, ``"discriminator"``, ...).
        **options: options of this network only; one its builder does not take is an error.
    """
    shared = {k: hparams[k] for k in ("noise_dim", "noise_injection", "noise_components")}
    shared.update(data_shape=as_shape(hparams["data_shape"]), latent_dim=int(hparams["latent_dim"]))
    shared.update(hidden=tuple(hparams["hidden"]), generator_act=hparams["generator_activation"])
    return build_network(kind, hparams["architecture"], shared=shared, **options)


def context_network(hparams: Mapping[str, Any], kind: str, **options: Any) -> nn.Module:
    """A default ``kind`` MLP taking a location–scale encoder's ``cat(μ, log σ)`` in place of ``x``:
    all its noise ``u`` knows of ``x``.

    Its layers are ``hidden`` for the ``"mlp"`` architecture; for the others, two of
    ``8 · latent_dim`` units, within 64–256.

    Args:
        hparams: an algorithm's saved hyperparameters.
        kind: a kind of :mod:`~ivi_lightning.nets.factory` taking ``(condition, z)``.
        **options: options of this network only.
    """
    latent_dim = int(hparams["latent_dim"])
    width = min(256, max(64, 8 * latent_dim))
    hidden = hparams["hidden"] if hparams["architecture"] == "mlp" else (width, width)
    return build_network(
        kind, "mlp", data_shape=(2 * latent_dim,), latent_dim=latent_dim, hidden=tuple(hidden), **options
    )
