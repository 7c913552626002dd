"""Sliding-window inference with Gaussian blending, flip TTA, progress and cancellation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .bundle.card import InferenceSettings
from .errors import ResourceError
from .progress import ProgressReporter
from .sliding_window import count_windows, sliding_window_inference


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; ``cuda``/``gpu`` fail clearly without a GPU."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name in ("cuda", "gpu") or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ResourceError(
                "a GPU was requested but PyTorch sees no CUDA device",
                "use --device cpu, or install a CUDA build of PyTorch matching your driver (see README)",
            )
        return torch.device("cuda" if name == "gpu" else name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise ResourceError("Apple MPS was requested but is not available", "use --device cpu")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ResourceError(f"unknown device {name!r}", "use auto, cpu, cuda, cuda:N or mps")


PRECISIONS = ("auto", "fp32", "bf16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision on a device; None: plain float32.

    ``auto`` is float16 mixed precision on CUDA and float32 elsewhere; ``bf16`` is bfloat16
    autocast on any device. On CPUs without AVX512-BF16/AMX, PyTorch runs bf16 3D convolutions on
    a slow reference path (bench/, section 6: 50-120x slower than float32 on a 2-core AVX2 EPYC).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda":
        return torch.float16
    return None


@dataclass
class InferenceEngine:
    """Runs a network over a whole volume.

    Args:
        network: maps ``(B, C, X, Y, Z)`` to ``(B, classes, X, Y, Z)`` logits.
        settings: patch size, overlap, blending and TTA flips from the card.
        device: where the network runs.
        stitch_device: where window outputs are accumulated (CPU saves GPU memory on big volumes).
        use_tta: apply the card's flip test-time augmentation.
        precision: ``auto``, ``fp32`` or ``bf16`` (see :func:`autocast_dtype`).
    """

    network: torch.nn.Module
    settings: InferenceSettings
    device: torch.device
    stitch_device: torch.device | None = None
    use_tta: bool = False
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.network = self.network.to(self.device).eval()
        self.autocast = autocast_dtype(self.precision, self.device)

    @property
    def flips(self) -> list[tuple[int, ...]]:
        return [()] + ([tuple(f) for f in self.settings.tta_flips] if self.use_tta else [])

    def total_windows(self, spatial_shape: Sequence[int]) -> int:
        return count_windows(spatial_shape, self.settings.patch_size, self.settings.overlap) * len(self.flips)

    def predict(self, image: np.ndarray, reporter: ProgressReporter | None = None) -> np.ndarray:
        """Class probabilities ``(classes, X, Y, Z)`` float32 for a ``(C, X, Y, Z)`` image."""
        reporter = reporter or ProgressReporter()
        total = self.total_windows(image.shape[1:])
        done = 0

        def predictor(window: torch.Tensor) -> torch.Tensor:
            nonlocal done
            reporter.cancel.raise_if_cancelled()
            with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                logits = self.network(window.to(self.device))
            done += window.shape[0]
            reporter.update(min(1.0, done / total), f"window {done}/{total}")
            return logits.float()

        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        probabilities = None
        with torch.inference_mode():
            for axes in self.flips:
                dims = [a + 2 for a in axes]
                xin = torch.flip(x, dims) if dims else x
                logits = sliding_window_inference(
                    xin, self.settings.patch_size, predictor, overlap=self.settings.overlap,
                    blending=self.settings.blending, batch_size=self.settings.sw_batch_size, device=self.device,
                    stitch_device=self.stitch_device or self.device,
                )
                prob = torch.softmax(torch.flip(logits, dims) if dims else logits, dim=1)[0].float()
                probabilities = prob if probabilities is None else probabilities.add_(prob)
            assert probabilities is not None
            if len(self.flips) > 1:
                probabilities /= len(self.flips)
            return probabilities.cpu().numpy()
