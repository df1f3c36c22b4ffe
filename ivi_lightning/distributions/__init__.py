"""Priors ``p(z)`` and likelihoods ``p(x|z)``: explicit, implicit, bounded, or your own simulator."""

from ivi_lightning.distributions.base import (
    DataShape,
    Likelihood,
    Prior,
    as_shape,
    has_log_prob,
    require_log_prob,
)
from ivi_lightning.distributions.implicit import ImplicitLikelihood, ImplicitPrior
from ivi_lightning.distributions.standard import (
    BernoulliLikelihood,
    GaussianLikelihood,
    NormalPrior,
    StandardNormalPrior,
)
from ivi_lightning.distributions.support import BoxUniform, DistributionPrior, ParameterSpace, as_prior

__all__ = [
    "BernoulliLikelihood",
    "BoxUniform",
    "DistributionPrior",
    "ParameterSpace",
    "as_prior",
    "DataShape",
    "GaussianLikelihood",
    "Likelihood",
    "NormalPrior",
    "Prior",
    "StandardNormalPrior",
    "as_shape",
    "has_log_prob",
    "require_log_prob",
    "ImplicitLikelihood",
    "ImplicitPrior",
]
