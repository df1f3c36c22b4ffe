"""Predicates for arguments that are numbers, shared by the networks, the algorithms and the
callbacks (a module of its own so that :mod:`ivi_lightning.nets` need not import the algorithms).

* :func:`is_nonnegative_number`: a weight or a standard deviation.
* :func:`is_whole_number`: a count, e.g. of steps, of joints or of maxout pieces, at least some minimum.
* :func:`builtin_numbers`: numpy's scalars (and other numbers) as Python's own, for checkpoints.

numpy's scalars count as numbers (``np.int64(3)`` is a whole number, ``np.float32(0.1)`` a weight),
as they do for torch and numpy.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_nonnegative_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number ≥ 0 (not a ``bool``): a weight or a std.

    Args:
        value: the argument to check.

    >>> import numpy as np
    >>> [is_nonnegative_number(v) for v in (0, 0.1, np.float32(0.1), -1, float("inf"), float("nan"), True)]
    [True, True, True, False, False, False, False]
    """
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and 0 <= float(value) < math.inf


def is_whole_number(value: Any, minimum: int) -> bool:
    """Whether ``value`` is an integer ≥ ``minimum`` (not a ``bool``): a count of steps, joints, samples.

    Args:
        value: the argument to check.
        minimum: the smallest count allowed.

    >>> import numpy as np
    >>> [is_whole_number(v, 1) for v in (1, 48000, np.int64(4), 0, 2.5, True, "3")]
    [True, True, True, False, False, False, False]
    """
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and int(value) >= minimum


def builtin_numbers(value: Any) -> Any:
    """``value`` with its numbers as Python's ``bool``, ``int`` and ``float``, inside lists, tuples and
    dicts too; anything else as it is.

    A numpy scalar saved in a checkpoint (say a hyperparameter ``np.int64(3)``) makes
    ``torch.load(weights_only=True)``, the default of Lightning's loading, refuse the whole file.

    Args:
        value: a hyperparameter, or a container of them.

    >>> import numpy as np
    >>> builtin_numbers({"steps": np.int64(3), "betas": (np.float32(0.5), 0.999), "on": np.bool_(True)})
    {'steps': 3, 'betas': (0.5, 0.999), 'on': True}
    """
    if type(value) in (bool, int, float, str) or value is None:
        return value
    if type(value) in (list, tuple):
        return type(value)(builtin_numbers(v) for v in value)
    if type(value) is dict:
        return {k: builtin_numbers(v) for k, v in value.items()}
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # np.bool_, 0-d arrays and tensors
        return value.item()
    return value
