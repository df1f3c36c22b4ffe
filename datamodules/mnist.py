"""MNIST from torchvision's raw IDX files, held in memory and batched without per-item Python."""

from __future__ import annotations

import gzip
import hashlib
import os
from typing import Any, Optional, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.toy2d import _BatchedTensors
from ivi_lightning.data import resumable_loader
from ivi_lightning.numbers import builtin_numbers
from ivi_lightning.training.checkpoints import builtin_hyperparameters

#: IDX file names of each split, as torchvision's ``MNIST`` stores them under ``MNIST/raw``.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_IDX_DTYPES: dict = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode an IDX file (LeCun's MNIST format) from its bytes.

    Layout: two zero bytes, a type code (``0x08`` = uint8, ...), the number of dimensions,
    one big-endian int32 per dimension, then the values in C order.

    Args:
        data: the file's bytes (already decompressed).
        name: file name used in error messages.

    Raises:
        ValueError: the header is not IDX or the payload is shorter or longer than it says.

    >>> header = bytes([0, 0, 8, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    >>> parse_idx(header + bytes(range(6))).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{name} is not an IDX file (bad magic number {data[:4].hex() or 'empty'}): the file is corrupt; "
            "delete it and download again"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name} is truncated inside its header: delete it and download again")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{name} is truncated or corrupt: its header promises shape {shape} ({expected} bytes) but the "
            "file has "
            f"{len(data)} bytes; delete it and download again"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="), copy=False)
    )


def _read(path: str) -> bytes:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as error:  # a truncated .gz fails while decompressing
        raise ValueError(
            f"{path} could not be read ({error}): the file is corrupt; delete it and download again"
        ) from error


def mnist_raw_dir(data_dir: str) -> str:
    """Where the IDX files are expected: ``<data_dir>/MNIST/raw`` (torchvision's layout)."""
    return os.path.join(data_dir, "MNIST", "raw")


def find_mnist_files(data_dir: str) -> dict:
    """Paths of the four IDX files (plain, else ``.gz``); one ``FileNotFoundError`` naming all missing ones.

    Args:
        data_dir: the directory holding ``MNIST/raw``.
    """
    raw, found, missing = mnist_raw_dir(data_dir), {}, []
    for name in (n for pair in MNIST_FILES.values() for n in pair):
        candidates = [os.path.join(raw, name), os.path.join(raw, name + ".gz")]
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            missing.append(name)
        found[name] = path
    if missing:
        raise FileNotFoundError(
            f"MNIST not found in {os.path.abspath(raw)}: missing {', '.join(missing)} (each may also be "
            ".gz). "
            f"Expected the files {', '.join(n for pair in MNIST_FILES.values() for n in pair)} there. Fix: "
            "pass "
            "download=True (torchvision downloads them into that layout) or copy torchvision's MNIST/raw "
            "folder "
            f"into {os.path.abspath(data_dir)}."
        )
    return found


def load_mnist_split(data_dir: str, split: str) -> Tuple[Tensor, Tensor]:
    """``(images uint8 [N, 1, 28, 28], labels int64 [N])`` of ``split`` (``"train"`` or ``"test"``).

    Args:
        data_dir: the directory holding ``MNIST/raw``.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    paths = find_mnist_files(data_dir)
    image_path, label_path = (paths[n] for n in MNIST_FILES[split])
    images, labels = parse_idx(_read(image_path), image_path), parse_idx(_read(label_path), label_path)
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{image_path} / {label_path} do not hold uint8 images [N, H, W] and labels [N]: not MNIST files"
        )
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{image_path} holds {images.shape[1]}x{images.shape[2]} images, MNIST's are 28x28")
    if len(images) != len(labels):
        raise ValueError(
            f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels: one of them "
            "is truncated or corrupt"
        )
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


class _PixelBatches(_BatchedTensors):
    """Gathers a whole batch of uint8 images at once and returns ``(float x, label)``.

    ``mode``: ``"dynamic"`` draws a fresh Bernoulli image of the gathered batch on every use
    (one vectorised ``rand < p``), ``"fixed"`` returns stored binary images, ``"none"``
    returns grey levels in ``[0, 1]``.
    """

    def __init__(self, images: Tensor, labels: Tensor, mode: str, seed: int = 0) -> None:
        super().__init__(images, labels)
        self.mode, self.seed = mode, seed

    def __getitem__(self, indices):
        images, labels = self.tensors[0][indices], self.tensors[1][indices]
        if self.mode == "fixed":
            return images.float(), labels
        x = images.float().div_(255.0)
        if self.mode == "dynamic":
            # u < p with u ~ U[0, 1) is a Bernoulli(p) draw, the same distribution as
            # torch.bernoulli and faster on CPU (docs/benchmarks/performance.md).
            u = torch.rand(x.shape, generator=batch_generator(self.seed, indices), dtype=x.dtype)
            x = (u < x).to(x.dtype)
        return x, labels


def batch_generator(seed: int, indices: Any) -> torch.Generator:
    """A generator seeded by ``seed`` and the batch's indices: a batch's binarisation noise.

    It depends on nothing else (not on the global random stream, the process or the worker), so a
    run resumed from a checkpoint, with loading prefetched or in workers, binarises every batch
    as the uninterrupted run did. The training order is a fresh permutation every epoch, so a
    batch's draw is fresh each time.
    """
    block = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    digest = hashlib.blake2b(block.numpy().tobytes(), digest_size=8, key=str(seed).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class MNISTDataModule(pl.LightningDataModule):
    """MNIST digits ``[batch, 1, 28, 28]`` with labels, from torchvision's raw IDX files.

    The files are read once into memory (uint8); batches are gathered with one index per batch
    (no per-item ``__getitem__``). The 60,000 training images are split (seeded) into
    ``60,000 − val_size`` for training and ``val_size`` for validation; the 10,000 ``t10k``
    images are the test set.

    Binarisation (``binarize="dynamic"``): every training batch is a fresh Bernoulli draw of
    its grey levels, re-drawn each time an image is used; validation and test images are
    binarised once with a generator seeded by ``seed``, so their scores are reproducible.
    ``binarize="none"`` gives grey levels in ``[0, 1]`` everywhere.

    Args:
        data_dir: directory holding ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
            (or the same names with ``.gz``) — torchvision's layout.
        download: download the files with ``torchvision.datasets.MNIST`` in ``prepare_data``.
        batch_size: examples per batch.
        num_workers: data loader workers (0 is fastest for in-memory batches).
        binarize: ``"dynamic"`` or ``"none"``.
        val_size: training images held out for validation.
        seed: seed of the split and of the fixed validation/test binarisation.
    """

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        binarize: str = "dynamic",
        val_size: int = 5000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if binarize not in ("dynamic", "none"):
            raise ValueError(
                "binarize must be 'dynamic' (fresh Bernoulli draws) or 'none' (grey levels), got "
                f"{binarize!r}"
            )
        if batch_size <= 0 or num_workers < 0 or val_size < 0:
            raise ValueError(
                f"batch_size must be positive and num_workers, val_size non-negative, got {batch_size}, "
                f"{num_workers}, {val_size}"
            )
        self.save_hyperparameters()
        builtin_hyperparameters(self)
        self.data_dir, self.download, self.batch_size, self.num_workers = builtin_numbers(
            (data_dir, download, batch_size, num_workers)
        )
        self.binarize, self.val_size, self.seed = builtin_numbers((binarize, val_size, seed))
        self.data_shape: Tuple[int, int, int] = (1, 28, 28)
        self.train_set: Optional[_PixelBatches] = None
        self.val_set: Optional[_PixelBatches] = None
        self.test_set: Optional[_PixelBatches] = None

    def prepare_data(self) -> None:
        if self.download:
            from torchvision.datasets import MNIST

            MNIST(self.data_dir, train=True, download=True)
            MNIST(self.data_dir, train=False, download=True)

    def _fixed(self, images: Tensor, labels: Tensor, offset: int) -> _PixelBatches:
        """A held-out set binarised once, reproducibly (or grey levels when ``binarize='none'``)."""
        if self.binarize == "none":
            return _PixelBatches(images, labels, "none")
        generator = torch.Generator().manual_seed(self.seed + offset)
        binary = torch.bernoulli(images.float().div_(255.0), generator=generator).to(torch.uint8)
        return _PixelBatches(binary, labels, "fixed")

    def setup(self, stage: Optional[str] = None) -> None:
        if self.download:
            try:
                find_mnist_files(self.data_dir)
            except FileNotFoundError:
                self.prepare_data()  # used without a Trainer, which would have called it
        if self.train_set is None:
            images, labels = load_mnist_split(self.data_dir, "train")
            if self.val_size >= len(images):
                raise ValueError(
                    f"val_size={self.val_size} leaves no training images out of {len(images)}: lower val_size"
                )
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
            val, train = order[: self.val_size], order[self.val_size :]
            self.train_set = _PixelBatches(images[train], labels[train], self.binarize, self.seed)
            self.val_set = self._fixed(images[val], labels[val], offset=1)
        if self.test_set is None and stage in (None, "test", "predict"):
            self.test_set = self._fixed(*load_mnist_split(self.data_dir, "test"), offset=2)

    def _loader(self, dataset: Optional[_PixelBatches], shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(
                "MNISTDataModule: call setup() (the Trainer does) before asking for a data loader"
            )
        if shuffle and len(dataset) < self.batch_size:
            raise ValueError(
                f"batch_size={self.batch_size} exceeds the {len(dataset)} training images: lower batch_size"
            )
        # Whole batches gathered (and binarised) by index tensors, in a seeded order that resumes mid-epoch.
        return resumable_loader(
            dataset,
            self.batch_size,
            shuffle,
            self.seed,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            self.setup("test")
        return self._loader(self.test_set, shuffle=False)
