"""Simulation-based inference: pairs ``(θ, x)`` from a prior and a simulator, with a fixed budget or
online."""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ivi_lightning.data import Simulations, resumable_loader
from ivi_lightning.distributions import Likelihood, Prior
from ivi_lightning.distributions.support import as_prior, simulate_with
from ivi_lightning.numbers import builtin_numbers, is_whole_number
from ivi_lightning.training.checkpoints import builtin_hyperparameters

Simulator = Union[Likelihood, Callable[[Tensor], Tensor]]


class TwoMoonsSimulator(Likelihood):
    """sbibm's ``two_moons`` simulator: a crescent whose position depends on ``|θ₁ + θ₂|``, so the
    posterior of one observation is two crescents (use it with ``BoxUniform([-1, -1], [1, 1])``).

    >>> TwoMoonsSimulator()(torch.zeros(3, 2)).shape
    torch.Size([3, 2])
    """

    def sample(self, theta: Tensor) -> Tensor:
        angle = (torch.rand(theta.shape[0], device=theta.device) - 0.5) * math.pi
        radius = 0.1 + 0.01 * torch.randn(theta.shape[0], device=theta.device)
        point = torch.stack([radius * angle.cos() + 0.25, radius * angle.sin()], 1)
        shift = torch.stack([-(theta[:, 0] + theta[:, 1]).abs(), theta[:, 1] - theta[:, 0]], 1) / math.sqrt(2)
        return point + shift

    def __call__(self, theta: Tensor) -> Tensor:
        return self.sample(theta)


class _PairTensors(Dataset):
    """Stored pairs, indexed by a whole batch of indices (one gather per batch)."""

    def __init__(self, pairs: Simulations) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return self.pairs.x.shape[0]

    def __getitem__(self, indices: Tensor) -> Simulations:
        return Simulations(self.pairs.x[indices], self.pairs.theta[indices])


class _FreshSimulations(Dataset):
    """Online mode: every batch is simulated afresh (the indices only set its size)."""

    def __init__(self, module: "SimulatorDataModule", length: int) -> None:
        self.module, self.length = module, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, indices: Tensor) -> Simulations:
        return self.module.simulate_batch(len(indices))


class SimulatorDataModule(pl.LightningDataModule):
    """Pairs ``θ ~ p(θ)``, ``x ~ simulator(θ)`` for amortised inference of ``p(θ|x)``.

    With ``num_simulations=N`` the N pairs are simulated once at setup (seeded, in batches of
    ``simulation_batch_size``, with a progress bar), held in memory and split into training and
    validation pairs; training never calls the simulator again, since the joint-contrastive
    algorithms take their model joints from the pairs: the budget is N, as with sbi. With
    ``num_simulations=None`` every training batch is simulated afresh (online; an epoch is
    ``online_epoch_batches`` batches) and ``reference_simulations`` pairs, simulated once, serve
    for standardisation and validation.

    The prior and simulator are the *known model* that an algorithm with ``learn_model=False``
    adopts; it infers in standardised, unconstrained coordinates fitted to the training pairs and
    hands samples back in the user's units (``sample_posterior``). ``simulation_count`` counts
    every simulation run.

    Args:
        prior: ``p(θ)``: a :class:`~ivi_lightning.distributions.Prior` or any
            ``torch.distributions.Distribution`` over vectors (e.g. sbi's ``BoxUniform``).
        simulator: ``θ [n, dim] -> x [n, *data_shape]``: a function, or a ``Likelihood`` (its
            ``sample``).
        num_simulations: the simulation budget, or ``None`` for online simulation.
        batch_size: pairs per training batch.
        val_fraction: share of the budget (or of the reference pairs) kept for validation.
        simulation_batch_size: parameters passed to the simulator at once.
        reference_simulations: online mode only: pairs simulated once for standardisation and
            validation.
        online_epoch_batches: online mode only: batches per epoch.
        seed: seed of the simulated pairs (and of their order).

    >>> from ivi_lightning.distributions.support import BoxUniform
    >>> dm = SimulatorDataModule(
    ...     BoxUniform([-1.0, -1.0], [1.0, 1.0]), TwoMoonsSimulator(), num_simulations=100, batch_size=10
    ... )
    >>> dm.setup("fit")
    >>> dm.data_shape, dm.latent_dim, dm.simulation_count
    ((2,), 2, 100)
    """

    def __init__(
        self,
        prior: Union[Prior, Distribution],
        simulator: Simulator,
        num_simulations: Optional[int] = None,
        batch_size: int = 256,
        val_fraction: float = 0.1,
        simulation_batch_size: int = 1000,
        reference_simulations: int = 10_000,
        online_epoch_batches: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("batch_size", batch_size),
            ("simulation_batch_size", simulation_batch_size),
            ("reference_simulations", reference_simulations),
            ("online_epoch_batches", online_epoch_batches),
        ):
            if not is_whole_number(value, 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_simulations is not None and not is_whole_number(num_simulations, 1):
            raise ValueError(
                "num_simulations must be a positive integer (the budget) or None (online), "
                f"got {num_simulations!r}"
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if not callable(simulator) and not isinstance(simulator, Likelihood):
            raise TypeError(
                f"simulator must be a function theta -> x or a Likelihood, got {type(simulator).__name__}"
            )
        self.save_hyperparameters(ignore=["prior", "simulator"])
        builtin_hyperparameters(self)
        self.prior, self.simulator = as_prior(prior), simulator
        self.num_simulations, self.batch_size, self.val_fraction = builtin_numbers(
            (num_simulations, batch_size, val_fraction)
        )
        self.simulation_batch_size, self.seed = builtin_numbers((simulation_batch_size, seed))
        self.reference_simulations, self.online_epoch_batches = builtin_numbers(
            (reference_simulations, online_epoch_batches)
        )
        self.latent_dim = self.prior.dim
        self.simulation_count = 0
        self.data_shape: Tuple[int, ...] = self._probe_shape()
        num_train = num_simulations - self._num_validation(num_simulations) if num_simulations else 0
        if num_simulations is not None and num_train < batch_size:
            raise ValueError(
                f"num_simulations={num_simulations} leaves {num_train} training pairs, "
                f"fewer than one batch of batch_size={batch_size}: lower batch_size or raise num_simulations"
            )
        self.train_pairs: Optional[Simulations] = None
        self.val_pairs: Optional[Simulations] = None

    def _num_validation(self, num_simulations: int) -> int:
        """How many of ``num_simulations`` stored pairs are kept for validation (the first ones)."""
        return int(round(self.val_fraction * num_simulations))

    def _simulate(self, theta: Tensor) -> Tensor:
        x = simulate_with(self.simulator)(theta)
        if not isinstance(x, Tensor):
            x = torch.as_tensor(np.asarray(x), dtype=theta.dtype)
        self.simulation_count += theta.shape[0]
        return x

    def _probe_shape(self) -> Tuple[int, ...]:
        """The shape of one simulation, from two parameters of the prior (not counted, random streams
        untouched)."""
        with torch.random.fork_rng(devices=[]):
            theta = self.prior.sample(2)
            if tuple(theta.shape) != (2, self.prior.dim):
                raise ValueError(
                    f"the prior's sample(2) must have shape [2, {self.prior.dim}], got {list(theta.shape)}"
                )
            x = self._simulate(theta)
        self.simulation_count = 0
        if x.dim() < 2 or x.shape[0] != 2:
            raise ValueError(
                "the simulator must return one simulation per parameter, [n, *data_shape]: "
                f"for n = 2 it returned {list(x.shape)}"
            )
        return tuple(x.shape[1:])

    def simulate_batch(self, num_simulations: int) -> Simulations:
        """``num_simulations`` fresh pairs from the global random stream (online training batches)."""
        theta = self.prior.sample(num_simulations)
        return Simulations(self._simulate(theta).to(theta.dtype), theta)

    def simulate(self, num_simulations: int, seed: int) -> Simulations:
        """``num_simulations`` pairs, reproducible from ``seed``, leaving the global random streams
        untouched."""
        chunks = []
        numpy_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            try:
                with tqdm(
                    total=num_simulations, desc="simulating", unit="sim", disable=not sys.stderr.isatty()
                ) as bar:
                    for start in range(0, num_simulations, self.simulation_batch_size):
                        chunks.append(
                            self.simulate_batch(min(self.simulation_batch_size, num_simulations - start))
                        )
                        bar.update(chunks[-1].theta.shape[0])
            finally:
                np.random.set_state(numpy_state)
        pairs = Simulations(torch.cat([c.x for c in chunks]), torch.cat([c.theta for c in chunks]))
        if not bool(torch.isfinite(pairs.x).all()):
            bad = int((~torch.isfinite(pairs.x.flatten(1))).any(1).sum())
            raise ValueError(
                f"{bad} of {num_simulations} simulations contain NaN or inf: "
                "make the simulator return finite values"
            )
        return pairs

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_pairs is not None or self.val_pairs is not None:
            return
        stored = self.simulate(self.num_simulations or self.reference_simulations, self.seed)
        num_val = self._num_validation(stored.x.shape[0])
        self.val_pairs = Simulations(*(t[:num_val] for t in stored))
        # Online, the reference pairs serve whole for standardisation; a budget is split.
        self.train_pairs = (
            stored if self.num_simulations is None else Simulations(*(t[num_val:] for t in stored))
        )

    def training_simulations(self) -> Tuple[Tensor, Tensor]:
        """``(θ, x)`` of the training pairs (online: the reference pairs), from which standardisation is
        fitted."""
        self.setup("fit")
        if self.train_pairs is None:
            raise RuntimeError("the training pairs are missing after setup(): call setup() first")
        return self.train_pairs.theta, self.train_pairs.x

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Log ``data/simulations`` (the simulations run so far) at the Trainer's logging cadence."""
        trainer = getattr(self, "trainer", None)
        if (
            trainer is not None
            and trainer.training
            and trainer.logger is not None
            and trainer.global_step % trainer.log_every_n_steps == 0
        ):
            trainer.logger.log_metrics(
                {"data/simulations": float(self.simulation_count)}, step=trainer.global_step
            )
        return batch

    def train_dataloader(self) -> DataLoader:
        if self.num_simulations is None:
            fresh = _FreshSimulations(self, self.online_epoch_batches * self.batch_size)
            return resumable_loader(fresh, self.batch_size, shuffle=True, seed=self.seed)
        if self.train_pairs is None:
            raise RuntimeError("no training pairs: call setup() first")
        return resumable_loader(_PairTensors(self.train_pairs), self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> Union[DataLoader, List[DataLoader]]:
        if self.val_pairs is None or self.val_pairs.x.shape[0] == 0:
            return []
        return resumable_loader(
            _PairTensors(self.val_pairs),
            min(self.batch_size, self.val_pairs.x.shape[0]),
            shuffle=False,
            seed=self.seed,
        )
