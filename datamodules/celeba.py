"""CelebA faces (aligned and cropped), centre-cropped and resized, from the standard file layout."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ivi_lightning.numbers import builtin_numbers
from ivi_lightning.training.checkpoints import builtin_hyperparameters

PARTITIONS = {"train": 0, "val": 1, "test": 2}


def celeba_paths(data_dir: str) -> Tuple[str, str]:
    """``(image folder, partition file)``: ``<data_dir>/celeba/img_align_celeba`` and
    ``<data_dir>/celeba/list_eval_partition.txt`` (torchvision's layout)."""
    root = os.path.join(data_dir, "celeba")
    return os.path.join(root, "img_align_celeba"), os.path.join(root, "list_eval_partition.txt")


def read_partition(path: str) -> dict:
    """``{split: [file names]}`` from ``list_eval_partition.txt``.

    Its lines read ``000001.jpg 0`` (0 train, 1 val, 2 test).

    Args:
        path: the partition file.

    Raises:
        ValueError: a line is not ``<file> <0|1|2>``.
    """
    splits: Dict[str, List[str]] = {name: [] for name in PARTITIONS}
    by_code = {code: name for name, code in PARTITIONS.items()}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ValueError(
                    f"{path}, line {number}: expected '<image file> <0|1|2>', got {line.strip()!r}; the file "
                    "is corrupt"
                )
            splits[by_code[int(fields[1])]].append(fields[0])
    return splits


def load_face(path: str, image_size: int = 64, crop_size: int = 148) -> Tensor:
    """One face as a float tensor ``[3, image_size, image_size]`` in ``[0, 1]``.

    The centred ``crop_size`` square (the largest centred square if the image is smaller) is
    resized with antialiasing (bilinear) to ``image_size``.

    Args:
        path: a JPEG (or any image PIL reads).
        image_size: side of the output.
        crop_size: side of the centred crop.
    """
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
        width, height = image.size
        side = min(crop_size, width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize(
            (image_size, image_size), getattr(Image, "Resampling", Image).BILINEAR
        )
        pixels = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0)


class CelebAFaces(Dataset):
    """Face images of one CelebA split, decoded per item (for data loader workers).

    Args:
        image_dir: folder of the JPEGs.
        files: file names in that folder.
        image_size: side of the output images.
        crop_size: side of the centred crop taken before resizing.
    """

    def __init__(self, image_dir: str, files: List[str], image_size: int = 64, crop_size: int = 148) -> None:
        self.image_dir, self.files, self.image_size, self.crop_size = (
            image_dir,
            list(files),
            image_size,
            crop_size,
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        return load_face(os.path.join(self.image_dir, self.files[index]), self.image_size, self.crop_size)


class CelebADataModule(pl.LightningDataModule):
    """CelebA aligned faces ``[batch, 3, image_size, image_size]``, continuous pixels in ``[0, 1]``.

    Preprocessing follows the common DCGAN / AVB convention for 64×64 CelebA: take the centred
    148×148 square of the 178×218 aligned image (the face, without most background), then
    resize it (bilinear, antialiased) to ``image_size``. Splits come from the official
    ``list_eval_partition.txt`` (0 train, 1 validation, 2 test). Images are decoded per item,
    so use ``num_workers`` > 0 for real training.

    Args:
        data_dir: directory holding ``celeba/img_align_celeba/*.jpg`` and
            ``celeba/list_eval_partition.txt`` — torchvision's layout.
        download: call ``torchvision.datasets.CelebA(data_dir, download=True)`` in
            ``prepare_data`` (Google Drive; often rate-limited — then download by hand).
        batch_size: examples per batch.
        image_size: side of the output images (64 for the conv networks; anything the network
            architecture accepts).
        num_workers: data loader worker processes (JPEG decoding happens in them).
        crop_size: side of the centred crop taken before resizing.
    """

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        batch_size: int = 64,
        image_size: int = 64,
        num_workers: int = 0,
        crop_size: int = 148,
    ) -> None:
        super().__init__()
        if batch_size <= 0 or image_size <= 0 or crop_size <= 0 or num_workers < 0:
            raise ValueError(
                f"batch_size, image_size and crop_size must be positive and num_workers non-negative, "
                f"got {batch_size}, {image_size}, {crop_size}, {num_workers}"
            )
        self.save_hyperparameters()
        builtin_hyperparameters(self)
        self.data_dir, self.download, self.batch_size = builtin_numbers((data_dir, download, batch_size))
        self.image_size, self.num_workers, self.crop_size = builtin_numbers(
            (image_size, num_workers, crop_size)
        )
        self.data_shape: Tuple[int, int, int] = (3, self.image_size, self.image_size)
        self.splits: Any = None

    def prepare_data(self) -> None:
        if self.download:
            from torchvision.datasets import CelebA

            CelebA(self.data_dir, split="all", target_type=[], download=True)

    def check_files(self) -> Tuple[str, dict]:
        """The image folder and the split lists; one ``FileNotFoundError`` naming what is missing."""
        image_dir, partition = celeba_paths(self.data_dir)
        if self.download and not (os.path.isdir(image_dir) and os.path.isfile(partition)):
            self.prepare_data()  # used without a Trainer, which would have called it
        missing = [
            p
            for p, ok in ((image_dir, os.path.isdir(image_dir)), (partition, os.path.isfile(partition)))
            if not ok
        ]
        if missing:
            raise FileNotFoundError(
                f"CelebA not found: missing {', '.join(os.path.abspath(p) for p in missing)}. Expected the "
                "aligned JPEGs in "
                f"{os.path.abspath(image_dir)}/ and the split file {os.path.abspath(partition)}. Fix: pass "
                "download=True "
                "(torchvision downloads and unpacks them there) or download img_align_celeba.zip and "
                "list_eval_partition.txt from the CelebA site and unpack them into that folder."
            )
        splits = read_partition(partition)
        if not splits["train"]:
            raise ValueError(
                f"{partition} lists no training images (code 0): the file is corrupt or incomplete"
            )
        absent = [
            f
            for f in (splits["train"][0], splits["train"][-1])
            if not os.path.isfile(os.path.join(image_dir, f))
        ]
        if absent:
            raise FileNotFoundError(
                f"{partition} lists {', '.join(absent)} but {os.path.abspath(image_dir)} has no such file: "
                "the image folder is incomplete; unpack img_align_celeba.zip there again"
            )
        return image_dir, splits

    def setup(self, stage: Optional[str] = None) -> None:
        if self.splits is None:
            self.image_dir, self.splits = self.check_files()

    def dataset(self, split: str) -> CelebAFaces:
        """The faces of ``split`` (``"train"``, ``"val"`` or ``"test"``).

        Args:
            split: which partition.
        """
        if self.splits is None:
            self.setup()
        return CelebAFaces(self.image_dir, self.splits[split], self.image_size, self.crop_size)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        if len(dataset) == 0:
            raise ValueError(f"the CelebA partition file lists no {split} images")
        if shuffle and len(dataset) < self.batch_size:
            raise ValueError(
                f"batch_size={self.batch_size} exceeds the {len(dataset)} training images: lower batch_size"
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
