"""Lightning's messages that do not apply to this library, silenced for every run of it.

* The promotional tips ("💡 Tip: ... litlogger / litmodels"), printed by every rank at every run.
* ``ModelCheckpoint(every_n_train_steps=...)``'s advice to save the model state inside
  ``training_step`` before ``optimizer.step()`` under manual optimization: every algorithm here
  takes all of a batch's optimizer steps in ``training_step``, and the checkpoint written after it
  is the state a resumed run needs (resuming from it is exact, see the Resuming guide).
* A deprecation inside Lightning's own pytree helper (nothing a user can change).

Done with Python's ``logging`` filters and ``warnings`` filters, nothing of Lightning's internals.
"""

from __future__ import annotations

import logging
import warnings

TIP_PREFIX = "💡 Tip:"
#: Loggers that Lightning's ``rank_zero_info`` writes to (the one set last by an import is used).
RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
MISLEADING_WARNINGS = (
    "Using ModelCheckpoint with manual optimization and every_n_train_steps",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(TIP_PREFIX)


_FILTER = _NoTips()


def quiet_lightning() -> None:
    """Install the filters (idempotent)."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for message in MISLEADING_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
