"""Toy problems with a 2-D latent or 2-D data, generated in memory: no download."""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ivi_lightning.data import resumable_loader
from ivi_lightning.distributions import Likelihood, NormalPrior, StandardNormalPrior
from ivi_lightning.numbers import builtin_numbers
from ivi_lightning.training.checkpoints import builtin_hyperparameters


class ExplainingAwayLikelihood(Likelihood):
    """``x ~ Exponential(rate = 3 + max(0, z₁)³ + max(0, z₂)³)`` (Huszár's explaining-away demo).

    A small ``x`` needs one large positive coordinate, not both: a two-lobed posterior.

    >>> lik = ExplainingAwayLikelihood()
    >>> lik.log_prob(torch.tensor([[0.5]]), torch.zeros(1, 2))  # log 3 − 3·0.5
    tensor([-0.4014])
    """

    def rate(self, z: Tensor) -> Tensor:
        return 3.0 + z.clamp_min(0).pow(3).sum(-1)

    def sample(self, z: Tensor) -> Tensor:
        return torch.empty(z.shape[0], 1, device=z.device, dtype=z.dtype).exponential_() / self.rate(
            z
        ).unsqueeze(1)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        rate = self.rate(z)
        return rate.log() - rate * x.reshape(-1)


class _BatchedTensors(TensorDataset):
    """A ``TensorDataset`` indexed by a whole batch of indices (a ``LongTensor``): one gather per batch."""

    def __getitem__(self, indices):
        return tuple(t[indices] for t in self.tensors)


TOYS = ("four_points", "explaining_away", "ring", "grid")


class Toy2DDataModule(pl.LightningDataModule):
    """Toy data sets with known structure.

    - ``four_points``: AVB's four one-hot vectors of ``{0,1}⁴`` (fit with a 2-D latent);
      the best log-likelihood is ``−log 4``.
    - ``explaining_away``: ``x`` from a known model (``prior`` ``N(0, 2² I)`` in 2-D,
      ``likelihood`` :class:`ExplainingAwayLikelihood`), so the exact posterior is computable.
      The prior's std of 2 makes small observations' posteriors clearly two-lobed.
    - ``ring``: 8 Gaussians (std 0.02) on a circle of radius 2; ``grid``: 25 Gaussians
      (std 0.05) on ``{−4, −2, 0, 2, 4}²`` (ALI's 2-D mixtures).

    Batches are gathered from in-memory tensors, one index list per batch.

    Args:
        dataset: one of ``four_points``, ``explaining_away``, ``ring``, ``grid``.
        num_samples: size of the training set (the validation set is a quarter of it).
        batch_size: examples per batch.
        seed: seed of the generated data (not of training).
    """

    def __init__(
        self, dataset: str = "explaining_away", num_samples: int = 20000, batch_size: int = 256, seed: int = 0
    ) -> None:
        super().__init__()
        if dataset not in TOYS:
            raise ValueError(f"unknown toy dataset {dataset!r}; choose one of {', '.join(TOYS)}")
        if num_samples <= 0 or batch_size <= 0:
            raise ValueError(
                f"num_samples and batch_size must be positive, got {num_samples} and {batch_size}"
            )
        if batch_size > num_samples:
            raise ValueError(
                f"batch_size={batch_size} is larger than the data set (num_samples={num_samples}), so no "
                "batch would be trained: lower batch_size or raise num_samples"
            )
        self.save_hyperparameters()
        builtin_hyperparameters(self)
        self.dataset, self.num_samples, self.batch_size, self.seed = builtin_numbers(
            (dataset, num_samples, batch_size, seed)
        )
        self.prior: Any = None  # a known model's parts, for learn_model=False algorithms
        self.likelihood: Any = None
        if dataset == "explaining_away":
            self.prior, self.likelihood = NormalPrior(2, std=2.0), ExplainingAwayLikelihood()
        elif dataset == "four_points":
            self.prior = StandardNormalPrior(2)
        self.data_shape: Tuple[int, ...] = {
            "four_points": (4,),
            "explaining_away": (1,),
            "ring": (2,),
            "grid": (2,),
        }[dataset]
        self.latent_dim = 2
        self.train_set: Any = None
        self.val_set: Any = None

    @property
    def latent_extent(self) -> float:
        """Half-width of the latent square that holds (nearly) all posterior mass."""
        return 3.0 * self.prior.std if self.prior is not None else 4.0

    @property
    def evaluation_points(self) -> Tensor:
        """Fixed observations at which posteriors are scored against the exact one."""
        if self.dataset == "explaining_away":
            return torch.tensor([[0.01], [0.05], [0.2], [1.0]])
        if self.dataset == "four_points":
            return torch.eye(4)
        return torch.zeros(0, *self.data_shape)

    def generate(self, num_samples: int, generator: torch.Generator) -> Tensor:
        """``num_samples`` fresh examples of the data set, drawn with ``generator``."""
        if self.dataset == "four_points":
            return torch.eye(4)[torch.randint(4, (num_samples,), generator=generator)]
        if self.dataset == "explaining_away":
            z = self.prior.std * torch.randn(num_samples, 2, generator=generator)
            rate = self.likelihood.rate(z).unsqueeze(1)
            return torch.empty(num_samples, 1).exponential_(generator=generator) / rate
        if self.dataset == "ring":
            angles = 2 * math.pi * torch.randint(8, (num_samples,), generator=generator) / 8
            centres, std = 2.0 * torch.stack([angles.cos(), angles.sin()], 1), 0.02
        else:
            axis = torch.arange(-4.0, 5.0, 2.0)
            centres, std = (
                torch.cartesian_prod(axis, axis)[torch.randint(25, (num_samples,), generator=generator)],
                0.05,
            )
        return centres + std * torch.randn(num_samples, 2, generator=generator)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is None:
            generator = torch.Generator().manual_seed(self.seed)
            self.train_set = _BatchedTensors(self.generate(self.num_samples, generator))
            self.val_set = _BatchedTensors(
                self.generate(max(self.num_samples // 4, self.batch_size), generator)
            )

    def _loader(self, dataset: TensorDataset, shuffle: bool) -> DataLoader:
        # Whole batches gathered by index tensors, in a seeded order that resumes mid-epoch.
        return resumable_loader(dataset, self.batch_size, shuffle, self.seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
