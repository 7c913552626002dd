"""Flips along chosen axes, with a label swap table for lateralised structures.

On the RAS model grid axis 0 is x (right-left): flipping it turns a left hippocampus into a right
one, so the label values of each left/right pair must be swapped with it. Flips of y (A-P) and z
(S-I) do not change sides and leave the labels as they are.

Example:
    >>> swap = label_swap_table([(17, 53)])  # e.g. FreeSurfer left/right hippocampus
    >>> labels = np.array([17, 53, 0, 0]).reshape(4, 1, 1)
    >>> image, flipped = apply_flip(labels[None].astype(np.float32), labels, FlipParams((0,)), swap)
    >>> flipped.ravel().tolist()
    [0, 0, 17, 53]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ._checks import check_probability

LEFT_RIGHT_AXIS = 0


@dataclass(frozen=True)
class FlipParams:
    axes: tuple[int, ...] = ()  # the spatial axes (0, 1, 2 = x, y, z) to flip


def label_swap_table(pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    """A lookup table sending each value of the ``(a, b)`` pairs to the other and every other value
    (up to the largest one named) to itself. A pair may be listed in both directions (as the items
    of a ``{left: right, right: left}`` dict are), but no value may have two partners."""
    partner: dict[int, int] = {}
    for pair in pairs:
        a, b = (int(v) for v in pair)
        if a == b or min(a, b) < 0:
            raise ValueError(f"a label swap pairs two different non-negative values, got {tuple(pair)}")
        for value, other in ((a, b), (b, a)):
            if partner.setdefault(value, other) != other:
                raise ValueError(f"label {value} is paired with both {partner[value]} and {other}")
    table = np.arange(max(partner, default=-1) + 1)
    for value, other in partner.items():
        table[value] = other
    return table


def sample_flip(rng: np.random.Generator, axes: Sequence[int], probability: float) -> FlipParams:
    """Flip each of ``axes`` independently with ``probability``."""
    check_probability("probability", probability)
    return FlipParams(tuple(int(a) for a in axes if rng.random() < probability))


def apply_flip(image: np.ndarray, labels: np.ndarray, params: FlipParams,
               swap_table: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``image`` (C, X, Y, Z) and ``labels`` (X, Y, Z); when x is flipped, relabel with
    ``swap_table`` (from :func:`label_swap_table`; ``None`` for labels without sides)."""
    if not params.axes:
        return image, labels
    image = np.ascontiguousarray(np.flip(image, [a + 1 for a in params.axes]))
    labels = np.ascontiguousarray(np.flip(labels, params.axes))
    if LEFT_RIGHT_AXIS in params.axes and swap_table is not None:
        largest = int(labels.max(initial=0))
        if largest >= len(swap_table):  # values beyond the table keep their value
            swap_table = np.concatenate([swap_table, np.arange(len(swap_table), largest + 1)])
        labels = swap_table[labels].astype(labels.dtype)
    return image, labels
