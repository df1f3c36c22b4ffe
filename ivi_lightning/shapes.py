"""Types both the networks and the distributions use: the shape of one example."""

from __future__ import annotations

from typing import Tuple, Union

DataShape = Union[int, Tuple[int, ...]]


def as_shape(data_shape: DataShape) -> Tuple[int, ...]:
    """Normalise ``data_shape`` (an int for vectors, a tuple for images) to a tuple.

    >>> as_shape(4), as_shape([1, 28, 28])
    ((4,), (1, 28, 28))
    """
    shape = (int(data_shape),) if isinstance(data_shape, int) else tuple(int(s) for s in data_shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"data_shape must be a positive int or a tuple of positive ints, got {data_shape!r}")
    return shape
