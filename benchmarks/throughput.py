"""Training throughput (images per second) of every algorithm on the image profiles.

* CPU: MNIST with the compact conv networks (``conv_small``, the ``configs/*/mnist.yaml`` settings).
* CUDA (the same script, unchanged): also MNIST and CelebA-shaped data (3×64×64) with the full
  ``conv`` networks (``configs/*/celeba.yaml`` settings) in ``bf16-mixed``.

Each row trains through the Trainer (no logger, no progress bar, no validation), times the
iterations after warm-up and reports ``batch_size × iterations / seconds``; an iteration is one
encoder update plus its ``aux_steps`` auxiliary updates. Rates are per wall-clock second and,
on CPU, also per second of process CPU time (``images/CPU-s``: what the machine would do if it
were not shared; with one thread the two agree on an idle machine). MNIST comes from ``--data_dir`` (real
images, dynamically binarised) or, when the files are missing, random binary images of the same
shape (said in the output); CelebA-shaped data is always random (throughput does not depend on it).

Usage::

    python benchmarks/throughput.py                    # CPU: a few seconds per algorithm
    python benchmarks/throughput.py --compile          # the same with CompileNetworks
    python benchmarks/throughput.py --profiles mnist_conv_small celeba_conv --seconds 10   # on a GPU
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
import warnings
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules import MNISTDataModule
from datamodules.toy2d import _BatchedTensors
from ivi_lightning import JCAdv, JCDen, PCAdv, PCDen, VAE
from ivi_lightning.callbacks.compile import CompileNetworks

ALGORITHMS = {"VAE": VAE, "PCAdv": PCAdv, "PCDen": PCDen, "JCAdv": JCAdv, "JCDen": JCDen}
EXTRA = {"VAE": {}, "PCAdv": {"aux_steps": 1}, "PCDen": {"aux_steps": 1}, "JCAdv": {"aux_steps": 1}, "JCDen": {"aux_steps": 1, "data_noise_std": 0.1}}
#: profile -> (data, model options, precision on CUDA); the settings of configs/*/{mnist,celeba}.yaml.
PROFILES = {
    "mnist_conv_small": ("mnist", dict(latent_dim=8, architecture="conv_small", hidden=(256,), noise_dim=8, lr=3e-4, aux_lr=3e-4, likelihood_family="bernoulli"), 128),
    "mnist_conv": ("mnist", dict(latent_dim=8, architecture="conv", hidden=(256,), noise_dim=8, lr=3e-4, aux_lr=3e-4, likelihood_family="bernoulli"), 128),
    "celeba_conv": ("celeba", dict(latent_dim=32, architecture="conv", hidden=(512,), noise_dim=16, lr=1e-4, aux_lr=3e-4, likelihood_family="gaussian"), 64),
}


class RandomImages(pl.LightningDataModule):
    """Random images of ``data_shape`` held in memory, batched with one gather per batch.

    Args:
        data_shape: shape of one image.
        num_samples: images in the set.
        batch_size: images per batch.
        binary: binary pixels (for a Bernoulli likelihood) instead of uniform grey levels.
    """

    def __init__(self, data_shape: tuple, num_samples: int, batch_size: int, binary: bool) -> None:
        super().__init__()
        self.data_shape, self.batch_size = tuple(data_shape), batch_size
        images = torch.rand(num_samples, *data_shape, generator=torch.Generator().manual_seed(0))
        self.train_set = _BatchedTensors(images.round() if binary else images)

    def train_dataloader(self) -> DataLoader:
        from torch.utils.data import BatchSampler, RandomSampler

        return DataLoader(self.train_set, sampler=BatchSampler(RandomSampler(self.train_set), self.batch_size, drop_last=True), batch_size=None)


def make_data(kind: str, batch_size: int, data_dir: str) -> tuple:
    """``(data module, description)`` for ``kind`` (``"mnist"`` or ``"celeba"``)."""
    if kind == "celeba":
        return RandomImages((3, 64, 64), 4096, batch_size, binary=False), "random 3x64x64"
    dm = MNISTDataModule(data_dir=data_dir, batch_size=batch_size)
    try:
        dm.setup("fit")
        return dm, "MNIST"
    except FileNotFoundError:
        return RandomImages((1, 28, 28), 8192, batch_size, binary=True), "random binary 1x28x28 (MNIST not found)"


class _Timer(pl.Callback):
    """Times batches ``warmup`` … after the first, stopping after ``seconds`` of timed batches."""

    def __init__(self, warmup: int, seconds: float, sync) -> None:
        self.warmup, self.seconds, self.sync = warmup, seconds, sync
        self.count, self.t0, self.c0, self.timed = 0, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.count == self.warmup:
            self.sync()
            self.t0, self.c0 = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.count += 1
        if self.t0 is not None:
            self.timed += 1
            if self.timed % 5 == 0:
                self.sync()
                if time.perf_counter() - self.t0 >= self.seconds and self.timed >= 10:
                    self.elapsed = time.perf_counter() - self.t0
                    self.cpu = time.process_time() - self.c0
                    trainer.should_stop = True


def measure(name: str, profile: str, args: argparse.Namespace, cuda: bool) -> Dict[str, object]:
    kind, options, batch_size = PROFILES[profile]
    dm, data = make_data(kind, batch_size, args.data_dir)
    torch.manual_seed(0)
    model = ALGORITHMS[name](data_shape=dm.data_shape, **options, **EXTRA[name])
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    timer = _Timer(args.warmup, args.seconds, sync)
    callbacks: List[pl.Callback] = [timer] + ([CompileNetworks()] if args.compile else [])
    precision = "bf16-mixed" if cuda and profile != "mnist_conv_small" else "32-true"
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision=precision, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, callbacks=callbacks,
    )
    trainer.fit(model, dm)
    return dict(images=batch_size * timer.timed / timer.elapsed, cpu_images=batch_size * timer.timed / timer.cpu,
                iterations=timer.timed / timer.elapsed, precision=precision, data=data, batch=batch_size)


def main(argv: Optional[List[str]] = None) -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", choices=list(PROFILES),
                        default=list(PROFILES) if cuda else ["mnist_conv_small"])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per row")
    parser.add_argument("--warmup", type=int, default=None, help="untimed batches first (default 5, 30 with --compile)")
    parser.add_argument("--compile", action="store_true", help="compile the networks (CompileNetworks callback)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--data_dir", default=os.environ.get("MNIST_DIR", "/work/shared/data" if os.path.isdir("/work/shared/data") else "data"))
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = 30 if args.compile else 5
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)

    device = torch.cuda.get_device_name(0) if cuda else f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    print(f"# device: {device}; torch {torch.__version__}, lightning {pl.__version__}; compile={args.compile}")
    print("| profile | data | precision | algorithm | batch | images/s | iterations/s |" + ("" if cuda else " images/CPU-s |"))
    print("|---|---|---|---|---|---|---|" + ("" if cuda else "---|"))
    for profile in args.profiles:
        for name in args.algorithms:
            r = measure(name, profile, args, cuda)
            cpu = "" if cuda else f" {r['cpu_images']:.0f} |"
            print(f"| {profile} | {r['data']} | {r['precision']} | {name} | {r['batch']} | {r['images']:.0f} | {r['iterations']:.2f} |{cpu}", flush=True)


if __name__ == "__main__":
    main()
