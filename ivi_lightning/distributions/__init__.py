"""Priors ``p(z)`` and likelihoods ``p(x|z)``: explicit, implicit, or your own simulator."""
from ivi_lightning.distributions.base import DataShape, Likelihood, Prior, as_shape, has_log_prob
from ivi_lightning.distributions.standard import BernoulliLikelihood, GaussianLikelihood, NormalPrior, StandardNormalPrior
from ivi_lightning.distributions.implicit import ImplicitLikelihood, ImplicitPrior

__all__ = [
    "BernoulliLikelihood",
    "DataShape",
    "GaussianLikelihood",
    "Likelihood",
    "NormalPrior",
    "Prior",
    "StandardNormalPrior",
    "as_shape",
    "has_log_prob",
    "ImplicitLikelihood",
    "ImplicitPrior",
]
