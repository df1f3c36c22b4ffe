"""Callbacks: exact-posterior scoring and plots for the toys; image grids for MNIST and CelebA."""
from ivi_lightning.callbacks.images import ImageCallback, LatentInterpolation, LatentScatter, ReconstructionGrid, SampleGrid
from ivi_lightning.callbacks.toy import ExactPosteriorCallback

__all__ = ["ExactPosteriorCallback", "ImageCallback", "LatentInterpolation", "LatentScatter", "ReconstructionGrid", "SampleGrid"]
from ivi_lightning.callbacks.ais import AISCallback  # noqa: E402

__all__ += ["AISCallback"]
