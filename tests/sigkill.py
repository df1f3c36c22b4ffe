"""A callback that kills its own process with SIGKILL (nothing is written, no handler runs), for
tests of resuming through the ``ivi`` command: ``--trainer.callbacks+=sigkill.SigkillAt``."""
import os
import signal

import pytorch_lightning as pl


class SigkillAt(pl.Callback):
    """SIGKILL this process when a batch starts at ``global_step >= step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
