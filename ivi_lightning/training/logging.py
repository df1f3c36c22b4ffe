"""The logging cadence of training metrics: :class:`CadencedLogging`, the algorithms' ``log_metrics``.

Lightning's own hooks (``ModelHooks``, ``CheckpointHooks``) are mixins of ``LightningModule``;
this is one in the same form, so the algorithms' base class only names it.
"""

from __future__ import annotations

from typing import Any, Dict

import pytorch_lightning as pl
import torch
from torch import Tensor

from ivi_lightning.training.nonfinite import trainer_of


def is_logging_batch(trainer: pl.Trainer) -> bool:
    """Whether the Trainer writes this training batch's metrics to its loggers.

    True every ``log_every_n_steps`` *batches* (in manual optimization ``global_step`` counts
    every optimizer's steps; the Trainer's logging cadence counts batches), on the first batch
    (so the progress bar and ``trainer.callback_metrics`` fill at once), on the last (when the
    Trainer is stopping), under ``fast_dev_run`` and outside training.
    """
    if getattr(trainer, "fast_dev_run", False) or not trainer.training:
        return True
    batch = trainer.fit_loop.total_batch_idx  # this batch's index, counted across epochs
    every: int = getattr(trainer, "log_every_n_steps", 50)
    return batch == 0 or trainer.should_stop or (every > 0 and (batch + 1) % every == 0)


def log_on_logging_batches(
    module: pl.LightningModule, prefix: str, metrics: Dict[str, Tensor], **kwargs: Any
) -> None:
    """``module.log_dict`` of ``metrics`` as ``prefix/name``, on :func:`is_logging_batch` batches only.

    In between, ``trainer.callback_metrics`` and the progress bar keep the last logged values;
    ``Trainer(log_every_n_steps=1)`` logs every batch. Metrics are averaged over ranks under DDP.
    """
    trainer = trainer_of(module)
    if trainer is not None and not is_logging_batch(trainer):
        return
    kwargs.setdefault("sync_dist", trainer is not None and trainer.world_size > 1)
    values = {f"{prefix}/{k}": v.detach() for k, v in metrics.items()}
    if values and not kwargs["sync_dist"]:
        # One device-to-host copy for all: Lightning reads progress-bar metrics on every batch.
        values = dict(zip(values, torch.stack([v.float() for v in values.values()]).cpu().unbind()))
    module.log_dict(values, **kwargs)


class CadencedLogging(pl.LightningModule):
    """``log_metrics``: training metrics logged on the Trainer's logging batches only."""

    def logging_step(self) -> bool:
        """Whether this training step's metrics are logged (see :func:`is_logging_batch`)."""
        trainer = trainer_of(self)
        return trainer is None or is_logging_batch(trainer)

    def log_metrics(self, prefix: str, metrics: Dict[str, Tensor], **kwargs: Any) -> None:
        """``log_dict`` of ``metrics`` as ``prefix/name`` on :meth:`logging_step` batches.

        Args:
            prefix: e.g. ``"train"``.
            metrics: scalar tensors by name.
            **kwargs: for ``log_dict`` (``prog_bar=True``, ...).
        """
        log_on_logging_batches(self, prefix, metrics, **kwargs)
