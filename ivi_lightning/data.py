"""Batch order that is the same on every rank, split between ranks, and resumable mid-epoch."""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple, cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class Simulations(NamedTuple):
    """A batch of simulated pairs ``x_i ~ p(x|θ_i)``, ``θ_i ~ p(θ)``, in the user's units.

    Algorithms recognise it (see ``ImplicitVI.update_joints``): the joint-contrastive ones take
    their model joints from these pairs instead of calling the simulator.
    """

    x: Tensor
    theta: Tensor


def batch_tensor(batch: Any) -> Tensor:
    """The data tensor of a batch: ``x``, the first of ``(x, label, ...)``, or a :class:`Simulations`' ``x``.

    >>> batch_tensor((torch.zeros(2, 3), torch.ones(2))).shape
    torch.Size([2, 3])
    """
    if isinstance(batch, Simulations):
        return batch.x
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def batch_labels(batch: Any) -> Optional[Tensor]:
    """The class labels of an ``(x, label, ...)`` batch (one integer per example), else ``None``.

    >>> batch_labels((torch.zeros(2, 3), torch.tensor([4, 7]))).tolist(), batch_labels(torch.zeros(2, 3))
    ([4, 7], None)
    """
    labels = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
    return labels if torch.is_tensor(labels) and labels.dim() == 1 else None


def check_split(batch_size: int, parts: int) -> None:
    """Refuse a batch of ``batch_size`` examples that ``parts`` equal update batches cannot divide."""
    if batch_size % parts:
        raise ValueError(
            f"a batch of {batch_size} examples cannot be split into updates_per_batch={parts} equal update "
            "batches: "
            f"set the data module's batch_size to a multiple of {parts} (updates_per_batch × the update "
            "batch size)"
        )


def split_batch(x: Tensor, parts: int) -> Tuple[Tensor, ...]:
    """``x`` as ``parts`` equal update batches along its first dimension (checked by :func:`check_split`)."""
    if parts == 1:
        return (x,)
    check_split(x.shape[0], parts)
    return x.chunk(parts)


def _world() -> tuple:
    """``(world_size, rank)`` of the initialised process group, else ``(1, 0)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class ResumableBatchSampler(DistributedSampler):
    """Index blocks (``LongTensor``) of a permutation seeded by ``(seed, epoch)``, split between ranks,
    resumable.

    Every rank draws the same permutation (from its own generator, not the global RNG, so the
    ranks' different noise streams cannot desynchronise it); global batch ``k`` holds
    ``batch_size × num_replicas`` indices and rank ``r`` takes its ``r``-th block. It subclasses
    ``DistributedSampler`` so Lightning leaves it in place under DDP and calls ``set_epoch``.
    ``state_dict`` records the seed, the epoch and the batches already handed out; after
    ``load_state_dict`` the same epoch resumes at the next batch (a checkpoint taken mid-epoch
    continues exactly where it stopped).

    Args:
        data_size: number of examples.
        batch_size: examples per batch on each rank.
        shuffle: permute each epoch (else in order).
        drop_last: drop the last incomplete global batch; without it, under several ranks, the
            indices wrap around so every rank gets the same number of full batches.
        seed: seed of the permutations.
        num_replicas: number of ranks (default: the process group's, else 1).
        rank: this rank (default: the process group's, else 0).
    """

    def __init__(
        self,
        data_size: int,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
    ) -> None:
        world, this_rank = _world()
        self.num_replicas = int(num_replicas if num_replicas is not None else world)
        self.rank = int(rank if rank is not None else this_rank)
        if data_size <= 0 or batch_size <= 0:
            raise ValueError(f"data_size and batch_size must be positive, got {data_size} and {batch_size}")
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside 0..{self.num_replicas - 1}")
        self.data_size, self.batch_size = int(data_size), int(batch_size)
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, int(seed)
        self.epoch = 0
        self._resume_epoch, self._resume_batches = -1, 0
        self._handed_out = 0

    def __len__(self) -> int:
        span = self.batch_size * self.num_replicas
        return self.data_size // span if self.drop_last else -(-self.data_size // span)

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (called by Lightning at every epoch start)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[List[int]]:
        if self.shuffle:
            order = torch.randperm(
                self.data_size, generator=torch.Generator().manual_seed(self.seed + self.epoch)
            )
        else:
            order = torch.arange(self.data_size)
        span, batches = self.batch_size * self.num_replicas, len(self)
        if not self.drop_last and self.num_replicas > 1 and batches * span > self.data_size:
            order = order.repeat(-(-batches * span // self.data_size))[: batches * span]
        start = self._resume_batches if self._resume_epoch == self.epoch else 0
        self._resume_epoch, self._resume_batches = -1, 0
        for k in range(start, batches):
            self._handed_out = k + 1
            block = order[
                k * span + self.rank * self.batch_size : k * span + (self.rank + 1) * self.batch_size
            ]
            if len(block):
                # A LongTensor: cheaper to gather with than a Python list (benchmarks/data_path.py).
                yield block  # type: ignore[misc]

    def state_dict(self) -> Dict[str, Any]:
        """``{"seed", "epoch", "batches"}``: the permutations' seed, the epoch and how many of its
        batches were handed out."""
        return {"seed": self.seed, "epoch": self.epoch, "batches": self._handed_out}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume ``state["epoch"]`` after its first ``state["batches"]`` batches, with the saved seed."""
        self.seed = int(state.get("seed", self.seed))
        self._resume_epoch, self._resume_batches = int(state["epoch"]), int(state["batches"])
        self._handed_out = self._resume_batches


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableBatchSampler` whose position Lightning checkpoints.

    Lightning stores ``state_dict()`` of loaders that have one in the checkpoint and calls
    ``load_state_dict`` on resume, so training continues with the batch after the last one
    trained. The dataset is indexed by whole index tensors (one gather per batch). Loading touches
    no global random stream.

    Args:
        dataset: a dataset whose ``__getitem__`` takes a ``LongTensor`` of indices.
        batch_sampler: the sampler; it is passed as ``sampler`` with ``batch_size=None``.
        **kwargs: other ``DataLoader`` arguments.
    """

    def __init__(self, dataset: Dataset, batch_sampler: ResumableBatchSampler, **kwargs: Any) -> None:
        kwargs.pop("sampler", None)
        kwargs.pop("batch_size", None)
        # Its own generator: a new iterator (every epoch) then draws its worker seed from it, not
        # from the global stream that the networks' noise comes from (so resuming stays exact).
        kwargs.setdefault("generator", torch.Generator().manual_seed(batch_sampler.seed))
        super().__init__(dataset, sampler=batch_sampler, batch_size=None, **kwargs)

    def state_dict(self) -> Dict[str, Any]:
        """The sampler's position (see :meth:`ResumableBatchSampler.state_dict`)."""
        return cast(ResumableBatchSampler, self.sampler).state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume the sampler at ``state``."""
        cast(ResumableBatchSampler, self.sampler).load_state_dict(state)


def resumable_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, seed: int, **kwargs: Any
) -> ResumableLoader:
    """A :class:`ResumableLoader` over ``dataset`` whose batches are gathered whole by index tensors.

    The order is seeded by ``seed`` plus ``seed_everything``'s seed (as Lightning's own samplers),
    the same on every rank and split between them; training drops the last incomplete batch.

    Args:
        dataset: a dataset whose ``__getitem__`` takes a ``LongTensor`` of indices.
        batch_size: examples per batch on each rank.
        shuffle: a new permutation every epoch (training) or the stored order (evaluation).
        seed: the data module's seed.
        **kwargs: other ``DataLoader`` arguments (``num_workers``, ...).
    """
    seed = seed + int(os.environ.get("PL_GLOBAL_SEED", 0))
    sampler = ResumableBatchSampler(
        len(dataset),  # type: ignore[arg-type]
        batch_size,
        shuffle=shuffle,
        drop_last=shuffle,
        seed=seed,
    )
    if len(sampler) == 0:  # training drops incomplete batches: it would train nothing and end "successfully"
        processes = f" × {sampler.num_replicas} processes" if sampler.num_replicas > 1 else ""
        raise ValueError(
            f"a training batch of {batch_size} examples{processes} is larger than the data set "
            f"({sampler.data_size} examples), so no batch would be trained: lower batch_size or use more data"
        )
    return ResumableLoader(dataset, sampler, **kwargs)
