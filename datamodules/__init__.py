"""LightningDataModules: toy 2-D problems (and, as they land, MNIST and CelebA)."""
from datamodules.toy2d import ExplainingAwayLikelihood, Toy2DDataModule

__all__ = ["ExplainingAwayLikelihood", "Toy2DDataModule"]
