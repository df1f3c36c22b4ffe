"""What the callbacks share."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytorch_lightning as pl
import torch


def local_log_dir(trainer: pl.Trainer) -> str:
    """The run's log directory (created if missing), found without any collective call.

    ``Trainer.log_dir`` broadcasts rank 0's answer to every rank, so calling it from code that
    runs on rank 0 only deadlocks under DDP. This resolves it as the Trainer does (the logger's
    ``log_dir``, else its ``save_dir``, else ``default_root_dir``), locally.

    Args:
        trainer: the running Trainer.
    """
    logger = trainer.logger
    log_dir = (
        getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) if logger is not None else None
    )
    log_dir = log_dir or trainer.default_root_dir
    os.makedirs(log_dir, exist_ok=True)
    return log_dir


@contextlib.contextmanager
def private_random_stream(device: torch.device, seed: int) -> Iterator[None]:
    """Draw from a stream seeded by ``seed`` inside the block; training's stream is put back after it.

    A callback that samples (prior draws, encoder noise) inside this block leaves the global
    random state as it found it, so a run resumed from a checkpoint draws the same training noise
    as an uninterrupted one, and every drawing of the callback uses the same noise.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
