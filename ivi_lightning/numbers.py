"""Predicates for arguments that are numbers, shared by the networks, the algorithms and the
callbacks (a module of its own so that :mod:`ivi_lightning.nets` need not import the algorithms).

* :func:`is_nonnegative_number`: a weight or a standard deviation.
* :func:`is_whole_number`: a count, e.g. of steps, of joints or of maxout pieces, at least some minimum.
"""

from __future__ import annotations

import math
from typing import Any


def is_nonnegative_number(value: Any) -> bool:
    """Whether ``value`` is a finite ``int`` or ``float`` ≥ 0 (not a ``bool``): a weight or a std.

    Args:
        value: the argument to check.

    >>> [is_nonnegative_number(v) for v in (0, 0.1, -1, float("inf"), float("nan"), True, "1")]
    [True, True, False, False, False, False, False]
    """
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value < math.inf


def is_whole_number(value: Any, minimum: int) -> bool:
    """Whether ``value`` is an ``int`` ≥ ``minimum`` (not a ``bool``): a count of steps, joints, samples.

    Args:
        value: the argument to check.
        minimum: the smallest count allowed.

    >>> [is_whole_number(v, 1) for v in (1, 48000, 0, 2.5, True, "3")]
    [True, True, False, False, False, False]
    """
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum
