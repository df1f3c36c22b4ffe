"""LightningDataModules: toy 2-D problems, simulators, MNIST and CelebA."""

from datamodules.celeba import CelebADataModule
from datamodules.mnist import MNISTDataModule
from datamodules.simulator import SimulatorDataModule, TwoMoonsSimulator
from datamodules.toy2d import ExplainingAwayLikelihood, Toy2DDataModule

__all__ = [
    "CelebADataModule",
    "ExplainingAwayLikelihood",
    "MNISTDataModule",
    "SimulatorDataModule",
    "Toy2DDataModule",
    "TwoMoonsSimulator",
]
