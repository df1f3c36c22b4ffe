"""ivi-lightning: variational inference with implicit distributions, in PyTorch Lightning."""
from ivi_lightning.algorithms import PCAdv, PCDen, VAE, ImplicitVI
from ivi_lightning.algorithms import JCAdv, JCAdvRMD, JCDen, JCHybrid
from ivi_lightning.distributions import ImplicitLikelihood, ImplicitPrior
from ivi_lightning.distributions import (
    BernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    NormalPrior,
    Prior,
    StandardNormalPrior,
)

__version__ = "0.1.0"
__all__ = [
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "ImplicitVI",
    "Likelihood",
    "NormalPrior",
    "PCAdv",
    "PCDen",
    "Prior",
    "StandardNormalPrior",
    "VAE",
    "JCAdv",
    "JCAdvRMD",
    "JCDen",
    "JCHybrid",
    "ImplicitLikelihood",
    "ImplicitPrior",
]
