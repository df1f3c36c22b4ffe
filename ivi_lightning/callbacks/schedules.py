"""Learning-rate schedules for the algorithms' manual optimization, as callbacks."""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl

from ivi_lightning.numbers import is_whole_number


class LinearLRDecay(pl.Callback):
    """Every optimizer's learning rate falls linearly from its initial value, to ``end`` times it
    at ``Trainer(max_steps=...)``, or at ``steps`` optimizer steps if given (then stays there).

    The algorithms step their optimizers themselves (manual optimization), so Lightning's scheduler
    hooks do not run; this sets each parameter group's ``lr`` before every batch from the Trainer's
    ``global_step``. The initial value is kept in the group as ``initial_lr`` (as torch's schedulers
    do), so it is saved with the optimizer and a resumed run continues the same schedule. Without
    ``steps`` the schedule runs to the resumed Trainer's ``max_steps`` (resuming with a larger one
    stretches it); with ``steps`` it is fixed, so a run may stop before the decay ends or go on
    after it.

    Args:
        end: the learning rate at the end of the decay, as a fraction of the initial one (``0``:
            none left).
        steps: the optimizer steps (``Trainer.global_step``) the decay lasts; ``None``: the
            Trainer's ``max_steps``.

    >>> LinearLRDecay(end=0.1).end
    0.1
    >>> LinearLRDecay(steps=48000).steps
    48000
    """

    def __init__(self, end: float = 0.0, steps: Optional[int] = None) -> None:
        if not 0.0 <= end <= 1.0:
            raise ValueError(
                f"LinearLRDecay(end={end}): end is a fraction of the initial learning rate, in [0, 1]"
            )
        if steps is not None and not is_whole_number(steps, 1):
            raise ValueError(
                f"LinearLRDecay(steps={steps!r}): steps is the number of optimizer steps the decay "
                "lasts, a whole number >= 1 (e.g. 48000), or None to decay over Trainer(max_steps=...)"
            )
        self.end = float(end)
        self.steps = steps

    def check_trainer(self, trainer: pl.Trainer) -> None:
        """Refuse a Trainer without ``max_steps`` when ``steps`` is not given (the ``ivi`` CLI asks
        before it writes anything)."""
        if self.steps is None and (trainer.max_steps is None or trainer.max_steps <= 0):
            raise ValueError(
                "LinearLRDecay decays the learning rate to its end at Trainer(max_steps=...), but "
                "max_steps is not set: pass max_steps (in the CLI, --trainer.max_steps N), or the "
                "decay's own length, LinearLRDecay(steps=N)"
            )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_trainer(trainer)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        steps = trainer.max_steps if self.steps is None else self.steps
        fraction = min(trainer.global_step / steps, 1.0)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * (1.0 - (1.0 - self.end) * fraction)
