"""Checks of the hyperparameters every algorithm shares (see "
":class:`~ivi_lightning.algorithms.base.ImplicitVI`)."""

from __future__ import annotations

from typing import Any, Mapping

from ivi_lightning.algorithms.contracts import check_integers
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
