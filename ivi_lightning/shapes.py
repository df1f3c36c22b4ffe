"""Types both the networks and the distributions use: the shape of one example."""

from __future__ import annotations

from typing import Iterable, Tuple, Union

from ivi_lightning.numbers import is_whole_number

DataShape = Union[int, Tuple[int, ...]]


def as_shape(data_shape: DataShape) -> Tuple[int, ...]:
    """Normalise ``data_shape`` (an int for vectors, a tuple for images) to a tuple.

    >>> as_shape(4), as_shape([1, 28, 28])
    ((4,), (1, 28, 28))
    """
    given: object = data_shape
    sizes = list(given) if isinstance(given, Iterable) and not isinstance(given, (str, bytes)) else [given]
    if not sizes or any(not is_whole_number(s, 1) for s in sizes):
        raise ValueError(f"data_shape must be a positive int or a tuple of positive ints, got {data_shape!r}")
    return tuple(int(s) for s in sizes)  # type: ignore[arg-type]
