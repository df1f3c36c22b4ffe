"""ivi-lightning: variational inference with implicit distributions, in PyTorch Lightning."""

from ivi_lightning.algorithms import VAE, ImplicitVI, JCAdv, JCAdvRMD, JCDen, JCHybrid, PCAdv, PCDen
from ivi_lightning.distributions import (
    BernoulliLikelihood,
    BoxUniform,
    GaussianLikelihood,
    ImplicitLikelihood,
    ImplicitPrior,
    Likelihood,
    NormalPrior,
    Prior,
    StandardNormalPrior,
)

__version__ = "0.1.0"
__all__ = [
    "BernoulliLikelihood",
    "BoxUniform",
    "GaussianLikelihood",
    "ImplicitLikelihood",
    "ImplicitPrior",
    "ImplicitVI",
    "JCAdv",
    "JCAdvRMD",
    "JCDen",
    "JCHybrid",
    "Likelihood",
    "NormalPrior",
    "PCAdv",
    "PCDen",
    "Prior",
    "StandardNormalPrior",
    "VAE",
]
