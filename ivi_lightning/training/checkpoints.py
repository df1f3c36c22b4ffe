"""Checkpoints: atomic writes in every Trainer (:class:`AtomicCheckpoints`), the algorithm that
wrote them (:class:`CheckpointRecords`, the algorithms' checkpoint hooks), and hyperparameters
they can be loaded with (:func:`builtin_hyperparameters`)."""

from __future__ import annotations

import io
import os
from typing import IO, Any, Dict, Optional, Union

import pytorch_lightning as pl
from pytorch_lightning.plugins import TorchCheckpointIO

from ivi_lightning.checkpoint import AtomicCheckpointIO, CheckpointError, read_checkpoint
from ivi_lightning.numbers import builtin_numbers

ALGORITHM_KEY = "ivi_algorithm"
SKIPS_KEY = "ivi_nonfinite_skips"


class CheckpointRecords(pl.LightningModule):
    """An algorithm's checkpoint hooks: each checkpoint records the algorithm that wrote it and its
    skipped-update count, and loading refuses another algorithm's checkpoint, before its weights.

    A mixin of ``LightningModule``, as Lightning's own ``CheckpointHooks`` is. The class that mixes
    it in directly (the algorithms' base class) loads any algorithm's checkpoint, a subclass only
    its own. The random streams are saved by :class:`~ivi_lightning.training.RankRandomStreams`.
    """

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        record_metadata(checkpoint, self)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        restore_metadata(checkpoint, self, expected_algorithm(type(self)))

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, with clear errors for a missing or corrupted file
        and for a checkpoint written by another algorithm."""
        source: Any = checked_source(checkpoint_path, expected_algorithm(cls))
        return super().load_from_checkpoint(source, *args, **kwargs)


def expected_algorithm(cls: type) -> Optional[str]:
    """The algorithm a checkpoint loaded by ``cls`` must come from (``None``: any, for the base class)."""
    return None if CheckpointRecords in cls.__bases__ else cls.__name__


def builtin_hyperparameters(obj: Any) -> Any:
    """``obj.hparams``, after ``save_hyperparameters``, with numpy's scalars replaced by Python
    numbers in place (:func:`~ivi_lightning.numbers.builtin_numbers`): a module or data module
    built with ``np.int64(3)`` then writes checkpoints that ``load_from_checkpoint`` and resuming
    read (torch refuses numpy objects when loading with ``weights_only=True``, Lightning's default).

    Args:
        obj: a ``LightningModule`` or ``LightningDataModule``.

    Returns:
        ``obj.hparams``.
    """
    obj.hparams.update(builtin_numbers(dict(obj.hparams)))
    return obj.hparams


class AtomicCheckpoints(pl.Callback):
    """Write checkpoints through :class:`~ivi_lightning.checkpoint.AtomicCheckpointIO`.

    Where the Trainer's strategy uses Lightning's default writer (``TorchCheckpointIO``), it is
    replaced through the strategy's public ``checkpoint_io`` setter when the run is set up; a
    writer passed as ``Trainer(plugins=[...])`` is kept.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def record_metadata(checkpoint: Dict[str, Any], algorithm: Any) -> None:
    """Record in ``checkpoint`` the algorithm that writes it and its skipped-update count.

    Lightning already stores every network (``state_dict``), optimizer, scheduler and the loops'
    progress (with the data loader's position for resumable loaders).
    """
    checkpoint[ALGORITHM_KEY] = type(algorithm).__name__
    checkpoint[SKIPS_KEY] = getattr(algorithm, "nonfinite_skips", 0)


def restore_metadata(checkpoint: Dict[str, Any], algorithm: Any, expected: Optional[str]) -> None:
    """Refuse another algorithm's ``checkpoint`` (:func:`check_algorithm`); restore the skip count."""
    check_algorithm(checkpoint, expected)
    algorithm.nonfinite_skips = int(checkpoint.get(SKIPS_KEY, 0))


def check_algorithm(checkpoint: Dict[str, Any], expected: Optional[str]) -> None:
    """Raise :class:`CheckpointError` if ``checkpoint`` was written by an algorithm other than ``expected``
    (``None``: any algorithm)."""
    saved = checkpoint.get(ALGORITHM_KEY)
    if saved is not None and expected is not None and saved != expected:
        raise CheckpointError(
            f"this checkpoint was written by {saved}, not {expected}: load it with "
            f"{saved}.load_from_checkpoint(...) "
            f"or, in the CLI, pass --model {saved} (its config) together with this --ckpt_path"
        )


def checked_source(
    path: Union[str, os.PathLike, IO[bytes]], expected: Optional[str]
) -> Union[str, os.PathLike, IO[bytes]]:
    """``path`` ready for ``LightningModule.load_from_checkpoint``, after the checks: a missing or
    unreadable file and another algorithm's checkpoint raise :class:`CheckpointError`.

    A local file is read once, into memory, and that copy is returned.
    """
    if not isinstance(path, (str, os.PathLike)):
        return path
    if not os.path.exists(path):
        read_checkpoint(os.fspath(path))  # raises the clear "does not exist" error
    with open(path, "rb") as f:
        data = io.BytesIO(f.read())
    check_algorithm(read_checkpoint(data, weights_only=False, name=os.fspath(path)), expected)
    data.seek(0)
    return data
