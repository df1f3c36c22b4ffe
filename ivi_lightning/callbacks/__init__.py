"""Callbacks: exact-posterior scoring and plots for the toys; image grids for MNIST and CelebA;
AIS log-likelihood; compiling the networks; a learning-rate schedule."""

from ivi_lightning.callbacks.ais import AISCallback
from ivi_lightning.callbacks.compile import CompileNetworks
from ivi_lightning.callbacks.images import (
    ImageCallback,
    LatentInterpolation,
    LatentScatter,
    ReconstructionGrid,
    SampleGrid,
)
from ivi_lightning.callbacks.schedules import LinearLRDecay
from ivi_lightning.callbacks.toy import ExactPosteriorCallback

__all__ = [
    "AISCallback",
    "CompileNetworks",
    "ExactPosteriorCallback",
    "ImageCallback",
    "LatentInterpolation",
    "LatentScatter",
    "LinearLRDecay",
    "ReconstructionGrid",
    "SampleGrid",
]
