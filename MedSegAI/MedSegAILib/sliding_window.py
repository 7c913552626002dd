"""Sliding-window inference over a whole volume with Gaussian or constant blending.

The same windows, weights and padding as MONAI's ``sliding_window_inference`` (tested against it:
constant zeros as MONAI's default, or ``replicate`` as its ``padding_mode="replicate"``),
in a module that imports neither MONAI nor torch: ``import monai`` loads all of MONAI (1.5-2.5 s of
start-up on a 2-core CPU), ``import torch`` another 2.5 s, more than a 3 mm brain-extraction
inference takes. It blends torch tensors (on any device) for the PyTorch runtime and numpy arrays
for ONNX Runtime, with the same code: only the few operations in :class:`_ArrayOps` differ.

Pure helpers in the manner of nnU-Net's ``compute_steps_for_sliding_window``: :func:`window_starts`
and :func:`importance_map` compute; :func:`sliding_window_inference` runs the predictor.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

BLENDINGS = ("gaussian", "constant")
# How a side shorter than the patch is filled: zeros (MONAI's and nnU-Net's default) or the border
# voxels repeated. After a z-score zero is mean tissue, so on a head cut short (a slab) zeros put
# a slab of grey matter against the cut; repeating the border continues what was cut.
PADDINGS = ("constant", "replicate")
SIGMA_SCALE = 0.125  # Gaussian sigma as a fraction of the patch side (nnU-Net, MONAI)
MIN_WEIGHT = 1e-3  # the weight at patch corners never drops below this (no division by ~0)


def window_starts(image_size: int, patch_size: int, overlap: float) -> list[int]:
    """Start indices of the sliding windows along one axis, exactly as MONAI enumerates them.

    The image is padded to at least ``patch_size``; windows step by ``int(patch * (1 - overlap))``
    and the last one is shifted back to end at the border.

    Example:
        >>> window_starts(100, 64, 0.25)
        [0, 36]
    """
    size = max(image_size, patch_size)
    if patch_size == size:
        return [0]
    step = max(1, int(patch_size * (1 - overlap)))
    starts = []
    for index in range(math.ceil(size / step)):
        start = index * step
        starts.append(min(start, size - patch_size))
        if start + patch_size >= size:
            break
    return starts


def count_windows(image_size: Sequence[int], patch_size: Sequence[int], overlap: float) -> int:
    return math.prod(len(window_starts(s, p, overlap)) for s, p in zip(image_size, patch_size))


def importance_map(patch_size: Sequence[int], blending: str = "gaussian",
                   sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """The weight of each voxel of a window's prediction (float32): a separable Gaussian centred
    on the patch (1 at the centre of odd sides), at least :data:`MIN_WEIGHT`; or ones.

    Example:
        >>> [round(w, 6) for w in importance_map((3,), sigma_scale=1 / 3).tolist()]  # sigma = 1 voxel
        [0.606531, 1.0, 0.606531]
    """
    if blending not in BLENDINGS:
        raise ValueError(f"blending must be one of {BLENDINGS}, not {blending!r}")
    if blending == "constant":
        return np.ones(tuple(patch_size), dtype=np.float32)
    weights = np.ones((), dtype=np.float32)
    for side in patch_size:
        x = np.arange(-(side - 1) / 2.0, (side - 1) / 2.0 + 1, dtype=np.float32)
        axis = np.exp(x ** 2 / np.float32(-2 * (side * sigma_scale) ** 2))
        weights = np.multiply.outer(weights, axis)
    return np.maximum(weights, max(float(weights.min()), MIN_WEIGHT)).astype(np.float32)


class _NumpyOps:
    """How windows of a numpy image are padded, batched and blended (ONNX Runtime)."""

    @staticmethod
    def pad(image: np.ndarray, pads: Sequence[tuple[int, int]], padding: str) -> np.ndarray:
        return np.pad(image, [(0, 0), (0, 0), *pads], mode="edge" if padding == "replicate" else "constant")

    @staticmethod
    def batch(patches: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(patches)

    @staticmethod
    def zeros(shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=np.float32)

    @staticmethod
    def to_stitch(array: np.ndarray) -> np.ndarray:
        return np.asarray(array, dtype=np.float32)

    @staticmethod
    def weights(patch_size: Sequence[int], blending: str) -> np.ndarray:
        return importance_map(patch_size, blending)


class _TorchOps:
    """The same for a torch tensor: windows go to ``device``, outputs are blended on ``stitch_device``."""

    def __init__(self, image: "torch.Tensor", device: "torch.device | str | None",
                 stitch_device: "torch.device | str | None"):
        import torch
        self.torch = torch
        self.device = torch.device(device) if device is not None else image.device
        self.stitch_device = torch.device(stitch_device) if stitch_device is not None else self.device

    def pad(self, image: "torch.Tensor", pads: Sequence[tuple[int, int]], padding: str) -> "torch.Tensor":
        # F.pad takes (before, after) pairs from the last axis backwards
        return self.torch.nn.functional.pad(image, [v for pair in reversed(pads) for v in pair], mode=padding)

    def batch(self, patches: "list[torch.Tensor]") -> "torch.Tensor":
        return self.torch.cat(patches).to(self.device)

    def zeros(self, shape: tuple[int, ...]) -> "torch.Tensor":
        return self.torch.zeros(shape, device=self.stitch_device)

    def to_stitch(self, array: "torch.Tensor") -> "torch.Tensor":
        return array.to(self.stitch_device, self.torch.float32)

    def weights(self, patch_size: Sequence[int], blending: str) -> "torch.Tensor":
        return self.torch.from_numpy(importance_map(patch_size, blending)).to(self.stitch_device)


def sliding_window_inference(image: "np.ndarray | torch.Tensor", patch_size: Sequence[int],
                             predictor: Callable[[Any], Any], overlap: float = 0.25, blending: str = "gaussian",
                             padding: str = "constant", batch_size: int = 1, device: "torch.device | str | None" = None,
                             stitch_device: "torch.device | str | None" = None) -> "np.ndarray | torch.Tensor":
    """Predict ``image`` ``(1, C, *spatial)`` window by window and blend the windows' outputs.

    Args:
        image: one image, a numpy array or a torch tensor (the result is of the same kind); sides
            shorter than the patch are padded (symmetrically, see ``padding``) and the padding is
            cropped from the result.
        patch_size: window size per spatial axis.
        predictor: maps ``(B, C, *patch_size)`` to ``(B, K, *patch_size)``.
        overlap: fraction of a window shared with its neighbour along each axis.
        blending: ``gaussian`` or ``constant`` weights (:func:`importance_map`).
        padding: ``constant`` (zeros) or ``replicate`` (the border voxels repeated), see :data:`PADDINGS`.
        batch_size: windows per predictor call.
        device: torch tensors only: where windows go to be predicted (default: the image's device).
        stitch_device: torch tensors only: where the blended output is accumulated (default:
            ``device``); CPU saves GPU memory on big volumes.

    Returns:
        ``(1, K, *spatial)`` float32 (on ``stitch_device``).
    """
    if image.ndim != len(patch_size) + 2 or image.shape[0] != 1:
        raise ValueError(f"image must be (1, C, *spatial) with {len(patch_size)} spatial axes, got {tuple(image.shape)}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")
    ops = _NumpyOps() if isinstance(image, np.ndarray) else _TorchOps(image, device, stitch_device)
    original = tuple(image.shape[2:])
    pads = [max(p - s, 0) for s, p in zip(original, patch_size)]
    if any(pads):
        image = ops.pad(image, [(d // 2, d - d // 2) for d in pads], padding)
    spatial = tuple(image.shape[2:])
    corners = list(itertools.product(*(window_starts(s, p, overlap) for s, p in zip(spatial, patch_size))))
    weights = ops.weights(patch_size, blending)
    output = None
    count = ops.zeros((1, 1, *spatial))
    for first in range(0, len(corners), batch_size):
        batch = corners[first:first + batch_size]
        windows = [tuple(slice(c, c + p) for c, p in zip(corner, patch_size)) for corner in batch]
        predicted = ops.to_stitch(predictor(ops.batch([image[(slice(None), slice(None), *w)] for w in windows])))
        if output is None:
            output = ops.zeros((1, predicted.shape[1], *spatial))
        for i, window in enumerate(windows):
            output[(slice(None), slice(None), *window)] += predicted[i] * weights
            count[(slice(None), slice(None), *window)] += weights
    assert output is not None
    output /= count
    crop = tuple(slice(d // 2, d // 2 + s) for d, s in zip(pads, original))
    return output[(slice(None), slice(None), *crop)]
