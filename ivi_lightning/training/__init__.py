"""How an algorithm is trained, around what it is: each concern in its own small module and in
its natural Lightning form, installed through public API.

* :mod:`~ivi_lightning.training.nonfinite`: the non-finite policy (``on_nonfinite``).
* :mod:`~ivi_lightning.training.random_streams`: per-rank noise streams, saved and resumed.
* :mod:`~ivi_lightning.training.checkpoints`: atomic checkpoint writes; the algorithm that wrote
  one and its skipped-update count (``CheckpointRecords``, the algorithms' checkpoint hooks).
* :mod:`~ivi_lightning.training.checks`: Trainer set-ups refused before the first batch.
* :mod:`~ivi_lightning.training.distributed`: a spawned DDP worker's clean exit.
* :mod:`~ivi_lightning.training.logging`: the logging cadence of training metrics
  (``CadencedLogging``, the algorithms' ``log_metrics``).
* :mod:`~ivi_lightning.training.quiet`: Lightning's tips and warnings that do not apply here, off.

:func:`training_callbacks` is what ``ImplicitVI.configure_callbacks`` returns; the two hook sets
are mixins of ``LightningModule`` (the form of Lightning's own ``ModelHooks`` and
``CheckpointHooks``) that ``ImplicitVI`` derives from.
"""

from __future__ import annotations

import multiprocessing
from typing import List

import pytorch_lightning as pl

from ivi_lightning.training.checkpoints import AtomicCheckpoints
from ivi_lightning.training.checks import EMAWeightAveraging, FitChecks
from ivi_lightning.training.distributed import GlooWorkerTeardown
from ivi_lightning.training.nonfinite import NonFiniteLossError
from ivi_lightning.training.quiet import quiet_lightning
from ivi_lightning.training.random_streams import RANK_SEED_STRIDE, RankRandomStreams

__all__ = [
    "AtomicCheckpoints",
    "EMAWeightAveraging",
    "FitChecks",
    "GlooWorkerTeardown",
    "NonFiniteLossError",
    "RANK_SEED_STRIDE",
    "RankRandomStreams",
    "quiet_lightning",
    "training_callbacks",
]


def training_callbacks() -> List[pl.Callback]:
    """The callbacks every algorithm trains with (see :meth:`ImplicitVI.configure_callbacks`);
    ``GlooWorkerTeardown`` only in a process started by ``multiprocessing`` (a spawned DDP worker).

    Lightning calls every callback around every optimizer step, so only those a run needs are installed.
    """
    quiet_lightning()
    callbacks: List[pl.Callback] = [FitChecks(), RankRandomStreams(), AtomicCheckpoints()]
    if multiprocessing.parent_process() is not None:
        callbacks.append(GlooWorkerTeardown())
    return callbacks
