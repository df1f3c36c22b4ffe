"""Microseconds per training batch of the data paths, for the toy and MNIST batch sizes.

* ``per-item``: the standard ``DataLoader(TensorDataset, batch_size=B, shuffle=True)``: one
  ``__getitem__`` per example, then ``default_collate`` stacks them;
* ``BatchSampler``: ``BatchSampler(RandomSampler)`` + ``batch_size=None``: one gather per batch;
* ``index list``: an index *list* per batch, as ``BatchSampler`` or a sampler that yields
  ``randperm(...)[k*B:(k+1)*B].tolist()`` produce, gathered at once (``batch_size=None``);
* ``index tensor``: the same slices of a ``torch.randperm`` yielded as ``LongTensor`` (no
  Python ints).

Each path yields full epochs' worth of batches (MNIST's with its dynamic binarisation where the
data module does it); numbers are medians over interleaved repeats, one thread.

Usage: ``python benchmarks/data_path.py``
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable, Dict, Iterable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from datamodules.mnist import _PixelBatches
from datamodules.toy2d import _BatchedTensors


class PermutationBatches:
    """Index batches as slices of one ``torch.randperm`` per epoch, as tensors or as lists.

    Args:
        num_samples: size of the dataset.
        batch_size: indices per batch (the last incomplete batch is dropped).
        as_list: yield Python lists (``.tolist()``) instead of ``LongTensor`` slices.
    """

    def __init__(self, num_samples: int, batch_size: int, as_list: bool) -> None:
        self.num_samples, self.batch_size, self.as_list = num_samples, batch_size, as_list

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def __iter__(self):
        order = torch.randperm(self.num_samples)
        for k in range(len(self)):
            block = order[k * self.batch_size : (k + 1) * self.batch_size]
            yield block.tolist() if self.as_list else block


class _BinarizedItems(TensorDataset):
    """Per-item MNIST: one uint8 image at a time, scaled and binarised (as a per-item dataset would)."""

    def __getitem__(self, index):
        image, label = self.tensors[0][index], self.tensors[1][index]
        x = image.float().div_(255.0)
        return (torch.rand_like(x) < x).to(x.dtype), label


def per_batch_us(make_loader: Callable[[], Iterable], batches: int) -> float:
    """CPU microseconds per batch over the first ``batches`` batches of a fresh loader (process time:
    robust to other jobs on a shared machine)."""
    start, count = time.process_time(), 0
    while count < batches:
        for _ in make_loader():
            count += 1
            if count == batches:
                break
    return 1e6 * (time.process_time() - start) / batches


def main() -> None:
    torch.set_num_threads(1)
    toy = torch.randn(20000, 1)
    images = (torch.rand(55000, 1, 28, 28) * 255).to(torch.uint8)
    labels = torch.randint(10, (55000,))
    cases: Dict[str, Dict[str, Callable[[], Iterable]]] = {
        "toy (20000x1, batch 256)": {
            "per-item": lambda: DataLoader(TensorDataset(toy), batch_size=256, shuffle=True, drop_last=True),
            "BatchSampler": lambda: DataLoader(_BatchedTensors(toy), sampler=BatchSampler(RandomSampler(range(20000)), 256, True), batch_size=None),
            "index list": lambda: DataLoader(_BatchedTensors(toy), sampler=PermutationBatches(20000, 256, True), batch_size=None),
            "index tensor": lambda: DataLoader(_BatchedTensors(toy), sampler=PermutationBatches(20000, 256, False), batch_size=None),
        },
        "MNIST (55000x1x28x28 uint8, dynamic binarisation, batch 128)": {
            "per-item": lambda: DataLoader(_BinarizedItems(images, labels), batch_size=128, shuffle=True, drop_last=True),
            "BatchSampler": lambda: DataLoader(_PixelBatches(images, labels, "dynamic"), sampler=BatchSampler(RandomSampler(range(55000)), 128, True), batch_size=None),
            "index list": lambda: DataLoader(_PixelBatches(images, labels, "dynamic"), sampler=PermutationBatches(55000, 128, True), batch_size=None),
            "index tensor": lambda: DataLoader(_PixelBatches(images, labels, "dynamic"), sampler=PermutationBatches(55000, 128, False), batch_size=None),
        },
    }
    names = ["per-item", "BatchSampler", "index list", "index tensor"]
    print("| data | " + " | ".join(f"{n} µs/batch" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for data, loaders in cases.items():
        times: Dict[str, list] = {k: [] for k in loaders}
        for _ in range(5):
            for name, make in loaders.items():
                times[name].append(per_batch_us(make, 200))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"| {data} | " + " | ".join(f"{med[n]:.0f}" for n in names) + " |", flush=True)


if __name__ == "__main__":
    main()
