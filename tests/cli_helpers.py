"""Faults for tests of the ``ivi`` command, given as CLI arguments (``tests`` on ``PYTHONPATH``):
``--trainer.callbacks+=cli_helpers.SigkillAt``, ``--trainer.plugins cli_helpers.FullDiskCheckpointIO``."""
import os
import signal

import pytorch_lightning as pl
import torch

from ivi_lightning.checkpoint import AtomicCheckpointIO


class SigkillAt(pl.Callback):
    """SIGKILL this process (nothing is written, no handler runs) when a batch starts at ``global_step >= step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class FullDiskCheckpointIO(AtomicCheckpointIO):
    """Writes every checkpoint to ``/dev/full``: the disk is full (ENOSPC), as torch meets it."""

    def write(self, checkpoint, file):
        with open("/dev/full", "wb") as full:
            torch.save(checkpoint, full)
            full.flush()
