"""Which runtime runs the network: PyTorch (CPU, CUDA, MPS) or ONNX Runtime (CPU).

``auto`` takes the card's ``inference.cpu_runtime`` when the network runs on the CPU, the
bundle has a graph and onnxruntime is installed, and PyTorch otherwise. On a machine whose
torch is a CPU-only build, ``auto`` knows there is no GPU without importing torch (2.5 s).
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from .bundle import Bundle, ModelCard
from .errors import ResourceError
from .onnx_inference import OnnxEngine, onnxruntime_installed, open_session
from .progress import ProgressReporter

if TYPE_CHECKING:
    from .pipeline import SegmentationOptions

RUNTIMES = ("auto", "torch", "onnxruntime")
CPU_DEVICES = ("auto", "cpu")


class Engine(Protocol):
    device_type: str

    def predict(self, image: np.ndarray, reporter: ProgressReporter | None = None) -> np.ndarray: ...


def torch_is_cpu_only() -> bool:
    """True when the installed torch is a CPU-only build (its version says ``+cpu``): then it can
    see no GPU, and nobody has to import it to find out."""
    try:
        return importlib.metadata.version("torch").endswith("+cpu")
    except importlib.metadata.PackageNotFoundError:
        return True


def torch_sees_accelerator() -> bool:
    """Whether PyTorch's device ``auto`` would be a GPU; imports torch only for builds that may see one."""
    if torch_is_cpu_only():
        return False
    from .inference import select_device
    return select_device("auto").type != "cpu"


def choose_runtime(requested: str, card: ModelCard, device: str = "auto", precision: str = "auto") -> str:
    """``torch`` or ``onnxruntime`` for this card, device and precision (see the module docstring).

    Raises:
        ResourceError: ``onnxruntime`` was asked for where it cannot run.
    """
    if requested not in RUNTIMES:
        raise ResourceError(f"unknown runtime {requested!r}", "use " + ", ".join(RUNTIMES))
    device = device.lower()
    if requested == "onnxruntime":
        problems = [
            (card.onnx_graph_file is None, f"model {card.id} has no ONNX graph",
             "run it with --runtime torch, or add a graph (medsegai_training.onnx_export --into-bundle)"),
            (device not in CPU_DEVICES, f"ONNX Runtime runs on the CPU here, not on {device!r}",
             "use --runtime torch for the GPU"),
            (precision not in ("auto", "fp32"), f"ONNX Runtime runs float32, not {precision}",
             "use --precision fp32, or --runtime torch"),
            (not onnxruntime_installed(), "onnxruntime is not installed, or too old to read weights from memory",
             "pip install 'onnxruntime>=1.24' (CPU), or use --runtime torch"),
        ]
        for failed, problem, remedy in problems:
            if failed:
                raise ResourceError(problem, remedy)
        return "onnxruntime"
    if requested == "torch" or card.inference.cpu_runtime != "onnxruntime" or card.onnx_graph_file is None:
        return "torch"
    if device not in CPU_DEVICES or precision not in ("auto", "fp32") or not onnxruntime_installed():
        return "torch"
    return "onnxruntime" if device == "cpu" or not torch_sees_accelerator() else "torch"


class LoadedModels:
    """Networks and ONNX Runtime sessions loaded once and reused by every case of a batch: reading
    the weights and building the network or session costs 10-80 ms per case for the shipped models
    on the CPU (more on a GPU), as much as the whole clean-up of a chest CT.

    Example:
        >>> models = LoadedModels()
        >>> models.get(("demo",), lambda: object()) is models.get(("demo",), lambda: object())
        True
    """

    def __init__(self) -> None:
        self._loaded: dict[tuple, Any] = {}

    def get(self, key: tuple, load: Callable[[], Any]) -> Any:
        """The model stored under ``key``, loaded by ``load()`` the first time."""
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]

    def __len__(self) -> int:
        return len(self._loaded)


def model_key(bundle: Bundle, card: ModelCard, *where: object) -> tuple:
    """What makes two loaded models the same: the bundle, the card's network and weights (variants
    differ in them), and where it runs (``where``: runtime, device, threads)."""
    network = json.dumps([card.network.name, card.network.args], sort_keys=True, default=str)
    return (str(bundle.path), card.weights_file, card.onnx_graph_file, network) + tuple(str(w) for w in where)


def open_engine(bundle: Bundle, card: ModelCard, options: "SegmentationOptions", model_grid_bytes: int,
                warnings: list[str], models: LoadedModels | None = None) -> Engine:
    """The engine that runs ``card``'s network as ``options`` ask (runtime, device, threads, TTA,
    precision). ``model_grid_bytes``: the probabilities' size, to decide where a GPU stitches.
    ``models``: networks and sessions loaded by earlier cases (None: load afresh)."""
    models = models if models is not None else LoadedModels()
    runtime = choose_runtime(options.runtime, card, options.device, options.precision)
    if runtime == "onnxruntime":
        session = models.get(model_key(bundle, card, runtime, options.threads),
                             lambda: open_session(bundle, card, options.threads))
        return OnnxEngine(session, card.inference, options.tta)
    from .inference import torch_engine  # imported here: torch takes seconds to load
    return torch_engine(bundle, card, options, model_grid_bytes, warnings, models)
