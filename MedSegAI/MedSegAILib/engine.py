"""What every inference runtime does the same way: windows, flip test-time augmentation,
softmax, progress and cancellation. The runtimes (:mod:`.inference` for PyTorch,
:mod:`.onnx_inference` for ONNX Runtime) supply the array operations; this module imports
neither torch nor onnxruntime."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .bundle.card import InferenceSettings
from .progress import ProgressReporter
from .sliding_window import count_windows


class WindowProgress:
    """Counts predicted windows for the progress bar; checks for Cancel before each call."""

    def __init__(self, reporter: ProgressReporter, total: int):
        self.reporter, self.total, self.done = reporter, total, 0

    def wrap(self, predict: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def predictor(windows: Any) -> Any:
            self.reporter.cancel.raise_if_cancelled()
            out = predict(windows)
            self.done += windows.shape[0]
            self.reporter.update(min(1.0, self.done / self.total), f"window {self.done}/{self.total}")
            return out
        return predictor


class WindowedEngine:
    """Class probabilities of a whole volume from a network run window by window.

    Subclasses hold ``settings`` (:class:`InferenceSettings`) and ``use_tta``, name their
    ``device_type``, and implement the array operations below (template method).
    """

    settings: InferenceSettings
    use_tta: bool
    device_type: str

    @property
    def flips(self) -> list[tuple[int, ...]]:
        """Spatial axes flipped in each pass: ``()`` first, then the card's flips with TTA."""
        return [()] + ([tuple(f) for f in self.settings.tta_flips] if self.use_tta else [])

    def total_windows(self, spatial_shape: Sequence[int]) -> int:
        return count_windows(spatial_shape, self.settings.patch_size, self.settings.overlap) * len(self.flips)

    def predict(self, image: np.ndarray, reporter: ProgressReporter | None = None) -> np.ndarray:
        """Class probabilities ``(classes, X, Y, Z)`` float32 for a ``(C, X, Y, Z)`` image."""
        progress = WindowProgress(reporter or ProgressReporter(), self.total_windows(image.shape[1:]))
        with self._running():
            x = self._batch_of_one(np.ascontiguousarray(image, dtype=np.float32))
            probabilities = None
            for axes in self.flips:
                dims = [a + 2 for a in axes]
                logits = self._sliding_window(self._flip(x, dims) if dims else x, progress)
                prob = self._softmax(self._flip(logits, dims) if dims else logits)
                probabilities = prob if probabilities is None else probabilities + prob
            assert probabilities is not None
            if len(self.flips) > 1:
                probabilities /= len(self.flips)
            return self._to_numpy(probabilities)

    @contextmanager
    def _running(self) -> Iterator[None]:
        """Runtime state for the duration of :meth:`predict` (threads, no autograd)."""
        yield

    def _batch_of_one(self, image: np.ndarray) -> Any:
        """``(1, C, X, Y, Z)`` in the runtime's array type."""
        raise NotImplementedError

    def _sliding_window(self, x: Any, progress: WindowProgress) -> Any:
        """Blended logits ``(1, K, X, Y, Z)`` of ``x``."""
        raise NotImplementedError

    def _flip(self, x: Any, dims: list[int]) -> Any:
        raise NotImplementedError

    def _softmax(self, logits: Any) -> Any:
        """Softmax over classes of ``(1, K, ...)`` logits, as ``(K, ...)`` float32."""
        raise NotImplementedError

    def _to_numpy(self, probabilities: Any) -> np.ndarray:
        raise NotImplementedError
