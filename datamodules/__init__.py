"""LightningDataModules: toy 2-D problems, MNIST and CelebA."""
from datamodules.celeba import CelebADataModule
from datamodules.mnist import MNISTDataModule
from datamodules.toy2d import ExplainingAwayLikelihood, Toy2DDataModule

__all__ = ["CelebADataModule", "ExplainingAwayLikelihood", "MNISTDataModule", "Toy2DDataModule"]
