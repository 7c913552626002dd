"""The ONNX Runtime runtime: the network on the CPU without importing torch.

A bundle may carry its network as an ONNX graph whose weights are *external data* in the
bundle's ``.safetensors`` file: each initializer names that file and the byte range of its
tensor there (safetensors stores raw little-endian tensors, which is what ONNX external data
is). The graph is a few tens of kB, the weights exist once, and ONNX Runtime reads them from the
bytes :class:`~MedSegAILib.bundle.Bundle` has already verified against ``SHA256SUMS``; neither
file is unpickled. ``medsegai_training.onnx_export --into-bundle`` writes such a graph.

Why: on a 2-core CPU ``import torch`` takes 2-2.5 s and ``import onnxruntime`` 0.3 s, and the
process stays smaller (peak RSS 0.65-0.7x on small CTs). Per window PyTorch on MedSegAI's CPU
kernels is now the faster of the two (brain-extraction U-Net on 48^3: 0.070 s against 0.085 s;
CT demo on 96x96x16: 0.19 s against 0.26-0.30 s), so which one finishes a whole case first depends
on how many windows it has: the card names its runtime, ``inference.cpu_runtime``, and bench/
measures both.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bundle import Bundle, ModelCard
from .bundle.card import InferenceSettings
from .engine import WindowedEngine, WindowProgress
from .errors import BundleError, ResourceError
from .process_hygiene import physical_cores
from .sliding_window import sliding_window_inference

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def onnxruntime_installed() -> bool:
    """ONNX Runtime is importable and can take weights from memory: its Python
    ``add_external_initializers_from_files_in_memory`` is recent (onnxruntime PR #26012, 2025), so
    an older onnxruntime next to MedSegAI (Slicer's Python may have one) counts as not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime as ort

    return hasattr(ort.SessionOptions, "add_external_initializers_from_files_in_memory")


def open_session(bundle: Bundle, card: ModelCard, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session of the card's graph, its weights taken from the bundle's verified
    bytes. Threads do not spin while idle: Slicer's own threads and other programs share the cores."""
    import onnxruntime as ort

    if card.onnx_graph_file is None:
        raise ResourceError(f"model {card.id} has no ONNX graph", "run it with the PyTorch runtime (--runtime torch)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.set_denormal_as_zero", "1")  # as the PyTorch engine (inference.py)
    options.log_severity_level = 3  # errors only: warnings would interleave with the progress lines
    weights = bundle.members[card.weights_file]
    options.add_external_initializers_from_files_in_memory([card.weights_file], [weights], [len(weights)])
    try:
        return ort.InferenceSession(bundle.members[card.onnx_graph_file], options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise BundleError(f"bundle {bundle.path}: ONNX Runtime cannot load {card.onnx_graph_file}: "
                          f"{str(exc).strip().splitlines()[0]}",
                          "re-export the graph (medsegai_training.onnx_export --into-bundle), or use --runtime torch") from None


@dataclass
class OnnxEngine(WindowedEngine):
    """Runs an ONNX Runtime session (``image`` -> ``logits``) over a whole volume on the CPU.

    Example:
        >>> engine = OnnxEngine(open_session(bundle, bundle.card), bundle.card.inference)  # doctest: +SKIP
        >>> probabilities = engine.predict(prepared.image)  # doctest: +SKIP
    """

    session: Any
    settings: InferenceSettings
    use_tta: bool = False
    device_type: str = field(default="cpu", init=False)

    def _batch_of_one(self, image: np.ndarray) -> np.ndarray:
        return image[None]

    def _sliding_window(self, x: np.ndarray, progress: WindowProgress) -> np.ndarray:
        def logits(windows: np.ndarray) -> np.ndarray:
            return self.session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]

        return sliding_window_inference(np.ascontiguousarray(x), self.settings.patch_size, progress.wrap(logits),
                                        overlap=self.settings.overlap, blending=self.settings.blending,
                                        padding=self.settings.padding,
                                        batch_size=self.settings.sw_batch_size)

    def _flip(self, x: np.ndarray, dims: list[int]) -> np.ndarray:
        return np.flip(x, dims)

    def _softmax(self, logits: np.ndarray) -> np.ndarray:
        shifted = logits[0] - logits[0].max(axis=0, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted /= shifted.sum(axis=0, keepdims=True)
        return shifted

    def _to_numpy(self, probabilities: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(probabilities, dtype=np.float32)
