"""Checks of the Trainer an algorithm is fitted with, made when fitting starts."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.nn.parallel import DistributedDataParallel

from ivi_lightning.algorithms.contracts import check_bernoulli_data
from ivi_lightning.data import batch_tensor

# Lightning's EMA callback (pytorch-lightning >= 2.6; None before).
EMAWeightAveraging = getattr(pl.callbacks, "EMAWeightAveraging", None)


class FitChecks(pl.Callback):
    """Refuse, before the first batch, a Trainer whose set-up would fail or train wrongly.

    * Plain DDP: the algorithms alternate optimizers, so each backward leaves some networks
      unused, which DDP without ``find_unused_parameters`` fails on.
    * Data out of ``[0, 1]`` for a Bernoulli likelihood (checked on the first batch).
    * ``EMAWeightAveraging(update_every_n_steps != 1)`` with several optimizer steps a batch: it
      counts optimizer steps but is checked only at a batch's end, so it would update
      erratically or never (one step a batch, a VAE, counts batches, as meant).
    """

    def __init__(self) -> None:
        self.data_checked = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """On the first batch: data that the likelihood cannot model (a Bernoulli one, outside [0, 1])."""
        if not self.data_checked:
            self.data_checked = True
            check_bernoulli_data(pl_module, batch_tensor(batch))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        name = type(pl_module).__name__
        model = trainer.strategy.model
        if isinstance(model, DistributedDataParallel) and not model.find_unused_parameters:
            raise ValueError(
                f"{name} alternates optimizers, so each backward leaves some networks unused and plain DDP "
                "fails; use strategy='ddp_find_unused_parameters_true' (or "
                "DDPStrategy(find_unused_parameters=True))"
            )
        one_step = len(trainer.optimizers) == 1 and pl_module.hparams.get("updates_per_batch", 1) == 1
        if EMAWeightAveraging is None or one_step:
            return
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, EMAWeightAveraging) and callback.update_every_n_steps != 1:
                raise ValueError(
                    f"EMAWeightAveraging(update_every_n_steps={callback.update_every_n_steps}) counts "
                    f"optimizer steps, but {name} takes several per batch and the average is updated only "
                    "at a batch's end, so it would update erratically or never: keep 1 (one update a "
                    "batch), and set a longer horizon with decay"
                )
