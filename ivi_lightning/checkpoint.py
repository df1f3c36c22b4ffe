"""Checkpoint files that are never half-written, and clear errors for unreadable ones."""

from __future__ import annotations

import errno
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, Dict, Optional, Union

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins import TorchCheckpointIO

PathLike = Union[str, Path]


#: What ``torch.load`` raises for a truncated, damaged or foreign file.
UNREADABLE = (
    RuntimeError,
    EOFError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    ValueError,
    KeyError,
    OSError,
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupted, truncated or of another algorithm."""


class DiskFullError(OSError):
    """No space left for a checkpoint (``errno.ENOSPC``): the message names the disk's folder."""


def _disk_full(error: BaseException) -> bool:
    """Whether ``error`` or an error it was raised from is ENOSPC (torch reports it as a RuntimeError
    "unexpected pos" raised while handling the OSError)."""
    seen = []
    current: Optional[BaseException] = error
    while current is not None and current not in seen:
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.append(current)
        current = current.__cause__ or current.__context__
    return False


def _unreadable(path: Any, error: BaseException) -> BaseException:
    if "weights only" in str(error).lower() and "unsupported global" in str(error).lower():
        return error  # a checkpoint refused by weights_only=True: torch's own message says what to do
    reason = str(error).splitlines()[0].split(". ")[0] if str(error) else type(error).__name__
    return CheckpointError(
        f"checkpoint {str(path)!r} is corrupted or truncated (or not a checkpoint) and cannot be read "
        f"({type(error).__name__}: {reason}); use an earlier checkpoint (ivi writes checkpoints "
        "atomically, so the previous one is intact)"
    )


def read_checkpoint(
    source: Union[PathLike, io.BytesIO],
    map_location: Any = "cpu",
    weights_only: Optional[bool] = False,
    name: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """``torch.load`` of a checkpoint, with one clear error for a missing or unreadable file.

    Args:
        source: path of the checkpoint (or an in-memory file).
        map_location: passed to ``torch.load``.
        weights_only: passed to ``torch.load`` (ivi checkpoints hold only tensors and plain types).
        name: the file's name in messages (default ``source``).

    Raises:
        CheckpointError: the file does not exist, or is not a complete checkpoint.
    """
    if not isinstance(source, io.BytesIO) and not os.path.exists(source):
        raise CheckpointError(
            f"checkpoint {str(source)!r} does not exist: check the path (or pass ckpt_path='last')"
        )
    try:
        checkpoint = torch.load(source, map_location=map_location, weights_only=weights_only)
    except UNREADABLE as error:
        raise _unreadable(name or source, error) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{str(name or source)!r} is not a Lightning checkpoint (no 'state_dict'): pass a .ckpt written "
            "by Trainer"
        )
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes to a temporary file and renames it into place.

    A crash or kill during the write leaves the previous checkpoint untouched (``os.replace``
    is atomic on POSIX), so ``last.ckpt`` is always a complete file. Loading turns a missing
    or corrupted file into one :class:`CheckpointError` naming the file and what to do.
    :class:`~ivi_lightning.algorithms.base.ImplicitVI` installs it in every Trainer that uses
    the default ``TorchCheckpointIO``.
    """

    def save_checkpoint(
        self, checkpoint: Dict[str, Any], path: PathLike, storage_options: Optional[Any] = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` through a temporary file in the same folder.

        Args:
            checkpoint: the state to write.
            path: destination; remote (fsspec) paths fall back to Lightning's plain write.
            storage_options: unused, as in ``TorchCheckpointIO``.
        """
        fs = get_filesystem(path)
        if type(fs).__name__ != "LocalFileSystem":
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                self.write(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as error:
            if not _disk_full(error):
                raise
            raise DiskFullError(
                errno.ENOSPC,
                f"no space left on the disk holding {str(path.parent)!r} while writing checkpoint "
                f"{path.name!r}: free space there or write checkpoints to another disk "
                "(ModelCheckpoint(dirpath=...)); the previous checkpoint is intact",
            ) from None
        finally:
            if tmp.exists():
                tmp.unlink()

    def write(self, checkpoint: Dict[str, Any], file: IO[bytes]) -> None:
        """Write ``checkpoint`` into the open temporary ``file`` (``torch.save``)."""
        torch.save(checkpoint, file)

    def load_checkpoint(
        self,
        path: PathLike,
        map_location: Optional[Callable] = lambda storage, loc: storage,
        weights_only: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Read a checkpoint; a missing or unreadable file raises :class:`CheckpointError`.

        Args:
            path: the checkpoint.
            map_location: passed to ``torch.load``.
            weights_only: passed to ``torch.load``.
        """
        if get_filesystem(path).__class__.__name__ == "LocalFileSystem" and not os.path.exists(path):
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not exist: check ckpt_path (or pass ckpt_path='last')"
            )
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except UNREADABLE as error:
            raise _unreadable(path, error) from None
