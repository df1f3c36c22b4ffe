"""Inference in a known model: an algorithm with ``learn_model=False`` and parts left out takes
them from its data module when the run is set up (and :mod:`ivi_lightning.evaluate` when it loads one)."""

from __future__ import annotations

from typing import Any

from ivi_lightning.algorithms.contracts import MODEL_PARTS, check_model
from ivi_lightning.distributions.support import LatentPrior, SimulatorLikelihood, as_prior, support_of


def adopt_known_model(algorithm: Any, datamodule: Any) -> None:
    """Give ``algorithm`` the model parts it was built without, from ``datamodule``.

    A data module with a ``simulator`` supplies its prior and simulator, seen in the
    standardised, unconstrained space fitted to its simulated training pairs (the prior's support
    mapped to ``R^d``, then z-scores of both sides; a resumed run then loads the saved
    statistics). Otherwise its ``prior`` and ``likelihood`` fill the parts that are ``None``.

    Raises:
        ValueError: a simulator data module with an algorithm that learns or was given a model, or
            parts missing with no known model to take them from.
    """
    name = type(algorithm).__name__
    if getattr(datamodule, "simulator", None) is not None:
        if algorithm.hparams.learn_model or algorithm.prior is not None or algorithm.likelihood is not None:
            raise ValueError(
                f"{name} was given a simulator data module, which supplies the model (its prior and "
                "simulator): "
                "construct the algorithm with learn_model=False and no prior= or likelihood="
            )
        theta, x = datamodule.training_simulations()
        prior = as_prior(datamodule.prior)
        algorithm.parameter_space.fit(theta, x, support_of(prior))
        algorithm.prior = LatentPrior(prior, algorithm.parameter_space)
        algorithm.likelihood = SimulatorLikelihood(datamodule.simulator, algorithm.parameter_space)
    elif algorithm.prior is None or algorithm.likelihood is None:
        known = {part: getattr(datamodule, part, None) for part in MODEL_PARTS}
        if known["prior"] is None or known["likelihood"] is None:
            raise ValueError(
                f"{name}(learn_model=False) needs a fixed model: pass prior= and likelihood=, "
                "or use a data module with a known model (e.g. Toy2DDataModule('explaining_away'))"
            )
        algorithm.prior = algorithm.prior or known["prior"]
        algorithm.likelihood = algorithm.likelihood or known["likelihood"]
    else:
        return
    check_model(algorithm)
