"""Ending a spawned DDP worker cleanly."""

from __future__ import annotations

import multiprocessing

import pytorch_lightning as pl
import torch


def destroy_gloo_group() -> None:
    """Destroy this process's gloo process group, if it has one (a local operation)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if torch.distributed.get_backend() == "gloo":
            torch.distributed.destroy_process_group()


class GlooWorkerTeardown(pl.Callback):
    """Destroy the gloo process group at the end of a spawned worker's run.

    Lightning leaves the group alive after ``fit`` (a later ``test`` in the same process reuses
    it). A worker process that exits with a gloo group alive can be aborted during interpreter
    finalization, when gloo's threads release tensors (``terminate called without an active
    exception``, SIGABRT; pytorch/pytorch#179291). A worker started by ``multiprocessing``
    (``strategy="ddp_spawn"`` or ``start_method="spawn"``) ends with its run, so its group is
    destroyed at teardown; the main process keeps its group.
    """

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if multiprocessing.parent_process() is not None:
            destroy_gloo_group()
