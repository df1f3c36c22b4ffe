"""One short error line for a bad input at the command line, instead of a chained traceback.

A check of the library (an algorithm's or data module's argument, a checkpoint, a disk that
fills up) raises an exception whose message names the cause and the fix. Through jsonargparse
it arrives wrapped in "Does not validate against any of the Union subtypes" and a dump of the
config; :func:`one_line_errors` prints the library's own message instead, as argparse prints
its errors, and exits with status 2 (1 for a run that failed while training). Set the
environment variable ``IVI_TRACEBACK=1`` to get the full traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Iterator, List, Optional

from lightning_fabric.utilities.exceptions import MisconfigurationException

from ivi_lightning.checkpoint import CheckpointError
from ivi_lightning.training.nonfinite import NonFiniteLossError

TRACEBACK_VARIABLE = "IVI_TRACEBACK"
#: Errors that carry a message for the user (anything else is a bug and keeps its traceback).
INPUT_ERRORS = (ValueError, TypeError, CheckpointError, FileNotFoundError, MisconfigurationException)
RUN_ERRORS = (NonFiniteLossError,)
#: Named in the line: the library's own exception types (ValueError and TypeError speak for themselves).
NAMED = (CheckpointError, NonFiniteLossError, MisconfigurationException, FileNotFoundError)
#: jsonargparse's wrappers around the error that matters.
WRAPPER_PREFIXES = ("Does not validate against any of the Union subtypes", "Problem with given class_path")


def disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno == errno.ENOSPC


def _chain(error: BaseException) -> List[BaseException]:
    chain: List[BaseException] = []
    current: Optional[BaseException] = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def user_error(error: BaseException) -> Optional[BaseException]:
    """The exception whose message the user should read, or ``None`` for a bug (keep the traceback).

    The innermost error of the chain that is an input error and not one of jsonargparse's wrappers,
    a full disk, or a failed run.
    """
    chain = _chain(error)
    for candidate in reversed(chain):
        if disk_full(candidate) or isinstance(candidate, RUN_ERRORS):
            return candidate
    for candidate in reversed(chain):
        if isinstance(candidate, INPUT_ERRORS) and not str(candidate).startswith(WRAPPER_PREFIXES):
            return candidate
    return None


def message_of(error: BaseException) -> str:
    text = " ".join(str(error).split()) if not isinstance(error, KeyError) else str(error)
    return f"{type(error).__name__}: {text}" if isinstance(error, NAMED) or disk_full(error) else text


@contextlib.contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """Turn a user error raised inside the block into ``<prog>: error: <message>`` on stderr and
    ``SystemExit`` (2 for a bad input, 1 for a run that failed); other exceptions pass unchanged."""
    try:
        yield
    except Exception as error:
        shown = user_error(error)
        if shown is None or os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        sys.stderr.write(f"{prog}: error: {message_of(shown)}\n")
        sys.stderr.write(f"(set {TRACEBACK_VARIABLE}=1 to see the traceback)\n")
        status = 1 if disk_full(shown) or isinstance(shown, RUN_ERRORS) else 2
        raise SystemExit(status) from None
