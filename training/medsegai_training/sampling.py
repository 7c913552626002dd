"""Random training patches with foreground oversampling.

With probability ``foreground_fraction`` a patch is centred (with jitter) on a random voxel of a
label chosen uniformly among the labels the case contains -- so small structures (ribs, spine)
are seen as often as large ones (lungs); otherwise the patch lies anywhere in the volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def crop(array: np.ndarray, start: Sequence[int], size: Sequence[int], pad_value=0) -> np.ndarray:
    """``array[..., start:start+size]`` over the last three axes; parts outside are ``pad_value``
    (a scalar, or one value per leading channel)."""
    lead = array.shape[:-3]
    spatial = array.shape[-3:]
    out = np.empty(lead + tuple(size), dtype=array.dtype)
    pad = np.asarray(pad_value, dtype=array.dtype)
    out[...] = pad.reshape(pad.shape + (1, 1, 1)) if pad.ndim else pad
    src, dst = [], []
    for s, n, dim in zip(start, size, spatial):
        lo, hi = max(s, 0), min(s + n, dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[(...,) + tuple(dst)] = array[(...,) + tuple(src)]
    return out


@dataclass
class _CaseIndex:
    image: np.ndarray
    labels: np.ndarray
    background: np.ndarray  # per channel: the value outside the field of view
    foreground: dict[int, np.ndarray]  # label value -> flat indices of its voxels


class PatchSampler:
    """Draw ``(image (C, *size), labels (*size))`` patches from in-memory cases.

    Args:
        cases: ``(image (C, X, Y, Z), labels (X, Y, Z))`` pairs on the model grid.
        foreground_fraction: probability that a patch is centred on a labelled voxel.
        jitter: fraction of the patch size by which a foreground centre is moved at random.
    """

    def __init__(self, cases: Sequence[tuple[np.ndarray, np.ndarray]], foreground_fraction: float = 0.5,
                 jitter: float = 0.25) -> None:
        if not cases:
            raise ValueError("no training cases")
        self.cases = []
        for image, labels in cases:
            if image.shape[1:] != labels.shape:
                raise ValueError(f"image {image.shape} and labels {labels.shape} differ in size")
            flat = labels.ravel()
            foreground = {int(v): np.flatnonzero(flat == v) for v in np.unique(flat) if v != 0}
            background = image.reshape(image.shape[0], -1).min(axis=1)
            self.cases.append(_CaseIndex(image, labels, background, foreground))
        self.foreground_fraction = float(foreground_fraction)
        self.jitter = float(jitter)

    def sample(self, rng: np.random.Generator, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        case = self.cases[int(rng.integers(len(self.cases)))]
        shape = case.labels.shape
        size = tuple(int(s) for s in size)
        lo = [min(0, d - s) for d, s in zip(shape, size)]
        hi = [max(0, d - s) for d, s in zip(shape, size)]
        if case.foreground and rng.random() < self.foreground_fraction:
            values = sorted(case.foreground)
            indices = case.foreground[values[int(rng.integers(len(values)))]]
            centre = np.unravel_index(int(indices[int(rng.integers(len(indices)))]), shape)
            start = []
            for c, s, a, b in zip(centre, size, lo, hi):
                j = int(self.jitter * s)
                offset = int(rng.integers(-j, j + 1)) if j else 0
                start.append(int(np.clip(c - s // 2 + offset, a, b)))
        else:
            start = [int(rng.integers(a, b + 1)) for a, b in zip(lo, hi)]
        return crop(case.image, start, size, case.background), crop(case.labels, start, size, 0)
