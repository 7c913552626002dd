"""Export a bundle's network to ONNX and check the ONNX model against PyTorch.

The model takes ``image`` ``(batch, channels, x, y, z)`` float32 and returns ``logits``
``(batch, classes, x, y, z)``; batch and spatial axes are dynamic, so one file serves every
window size the network accepts. The check runs the same random input through PyTorch and
ONNX Runtime and reports the largest absolute logit difference and the share of voxels whose
argmax (the label) agrees. Needs ``onnx`` and ``onnxruntime``. Two uses::

    python -m medsegai_training.onnx_export BUNDLE_DIR OUT.onnx [--shape X Y Z]
    python -m medsegai_training.onnx_export BUNDLE_DIR --into-bundle [--cpu-runtime onnxruntime]

The first writes a self-contained ``.onnx`` (weights inside) for other tools. The second adds
the graph to the bundle as ``network.onnx`` whose weights are external data pointing into the
bundle's own ``.safetensors`` file (see :mod:`MedSegAILib.onnx_inference`), so MedSegAI can run
the model with ONNX Runtime; ``--cpu-runtime onnxruntime`` also makes that the card's runtime
on CPUs (do it where bench/ measured it faster). Exit status 0 when the check passes
(``--atol``, ``--min-agreement``), 1 otherwise.

Uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no further package and
exports MONAI's DynUNet with dynamic spatial axes (the ``torch.export`` one needs ``onnxscript``).
It warns that it is deprecated, and that instance normalisation is exported with
``train=True``; that is right, instance norm always normalises with the input's own statistics.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from MedSegAILib.bundle import CARD_FILE, Bundle, write_bundle_members
from MedSegAILib.fileio import atomic_path
from MedSegAILib.onnx_inference import INPUT_NAME, OUTPUT_NAME, open_session
from MedSegAILib.process_hygiene import physical_cores

OPSET = 17
AXES = {0: "batch", 2: "x", 3: "y", 4: "z"}
GRAPH_FILE = "network.onnx"
_SAFETENSORS_DTYPE_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}


@dataclass(frozen=True)
class OnnxCheck:
    """ONNX Runtime vs PyTorch on one random input."""

    shape: tuple[int, ...]
    max_abs_diff: float
    argmax_agreement: float  # share of voxels with the same label, 0-1

    def passed(self, atol: float, min_agreement: float) -> bool:
        return self.max_abs_diff <= atol and self.argmax_agreement >= min_agreement


def input_shape(bundle: Bundle, spatial: Sequence[int] | None = None) -> tuple[int, ...]:
    """``(1, channels, x, y, z)``: the card's patch size unless ``spatial`` is given."""
    return (1, len(bundle.card.inputs), *(spatial or bundle.card.inference.patch_size))


def input_shape_of(card_document: dict) -> tuple[int, ...]:
    """:func:`input_shape` of a card not yet in a bundle."""
    return (1, len(card_document["inputs"]), *card_document["inference"]["patch_size"])


def onnx_bytes(network: torch.nn.Module, example_shape: Sequence[int], opset: int = OPSET) -> bytes:
    """``network`` (eval mode) as a self-contained ONNX model."""
    buffer = io.BytesIO()
    torch.onnx.export(network.eval(), (torch.zeros(tuple(example_shape)),), buffer, dynamo=False, opset_version=opset,
                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_axes={INPUT_NAME: AXES, OUTPUT_NAME: AXES})
    return buffer.getvalue()


def export_onnx(bundle: Bundle, out: str | Path, opset: int = OPSET) -> Path:
    """Write the bundle's network (weights loaded, eval mode) as ONNX to ``out`` (atomically)."""
    data = onnx_bytes(bundle.build_network(), input_shape(bundle), opset)
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(data)
    return Path(out)


def safetensors_ranges(weights: bytes) -> dict[tuple[str, tuple[int, ...], bytes], tuple[int, int]]:
    """``(dtype, shape, raw bytes)`` of each tensor of a ``.safetensors`` file -> its
    ``(offset, length)`` in the file. Format: 8-byte little-endian header length, a JSON header
    with each tensor's ``data_offsets`` relative to the data section, then the data."""
    (header_length,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8:8 + header_length])
    start = 8 + header_length
    ranges = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        first, last = entry["data_offsets"]
        key = (entry["dtype"], tuple(entry["shape"]), weights[start + first:start + last])
        ranges.setdefault(key, (start + first, last - first))
    return ranges


def with_external_weights(model_bytes: bytes, weights: bytes, weights_file: str) -> tuple[bytes, int]:
    """The ONNX model with every initializer that is a tensor of ``weights`` (byte for byte)
    replaced by an external-data reference to its range in ``weights_file``; and how many were
    left inside (constants the exporter made, such as shapes).

    Tensors are matched by value, not by name: the exporter names a tensor shared under several
    names (MONAI's DynUNet registers its blocks twice) by any one of them.
    """
    import onnx
    from onnx import numpy_helper

    ranges = safetensors_ranges(weights)
    model = onnx.load_from_string(model_bytes)
    inside = 0
    for initializer in model.graph.initializer:
        array = numpy_helper.to_array(initializer)
        found = ranges.get((_SAFETENSORS_DTYPE_NAMES.get(array.dtype, "?"), tuple(array.shape), array.tobytes()))
        if found is None:
            inside += 1
            continue
        offset, length = found
        initializer.ClearField("raw_data")
        for repeated in ("float_data", "int64_data", "int32_data", "double_data"):
            initializer.ClearField(repeated)
        initializer.data_location = onnx.TensorProto.EXTERNAL
        del initializer.external_data[:]
        for key, value in (("location", weights_file), ("offset", str(offset)), ("length", str(length))):
            entry = initializer.external_data.add()
            entry.key, entry.value = key, value
    return model.SerializeToString(), inside


def check_onnx(bundle: Bundle, session: Any | str | Path, spatial: Sequence[int] | None = None, seed: int = 0,
               threads: int | None = None) -> OnnxCheck:
    """Run one random input (standard normal, ``seed``) through PyTorch and an ONNX Runtime
    session (or the ``.onnx`` file at that path)."""
    if isinstance(session, (str, Path)):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or physical_cores()
        session = ort.InferenceSession(str(session), options, providers=["CPUExecutionProvider"])
    shape = input_shape(bundle, spatial)
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))
    with torch.inference_mode():
        expected = bundle.build_network().eval()(x).numpy()
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    if actual.shape != expected.shape:
        raise ValueError(f"ONNX output shape {actual.shape} differs from PyTorch's {expected.shape}")
    return OnnxCheck(shape, float(np.abs(actual - expected).max()),
                     float((actual.argmax(1) == expected.argmax(1)).mean()))


def bundle_graph_members(bundle: Bundle, cpu_runtime: str | None = None, opset: int = OPSET) -> dict[str, bytes]:
    """The bundle's files with :data:`GRAPH_FILE` added (weights external, in the bundle's own
    weights file, whose bytes stay as they are) and the card naming it (and ``cpu_runtime``)."""
    card = bundle.card
    graph, inside = with_external_weights(onnx_bytes(bundle.build_network(card), input_shape(bundle), opset),
                                          bundle.members[card.weights_file], card.weights_file)
    document = json.loads(bundle.members[CARD_FILE])
    document["files"]["onnx_graph"] = GRAPH_FILE
    if cpu_runtime is not None:
        document["inference"]["cpu_runtime"] = cpu_runtime
    members = {name: data for name, data in bundle.members.items()}
    members[CARD_FILE] = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    members[GRAPH_FILE] = graph
    return members


def add_graph_to_bundle(path: str | Path, cpu_runtime: str | None = None, opset: int = OPSET) -> Bundle:
    """Add :data:`GRAPH_FILE` to the bundle folder at ``path`` in place: the new bundle is written
    and verified next to it, then swapped in, so a failure leaves the old one whole."""
    from .export import replace_bundle

    path = Path(path)
    members = bundle_graph_members(Bundle.open(path), cpu_runtime, opset)
    return replace_bundle(path, lambda destination: write_bundle_members(destination, members), overwrite=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medsegai_training.onnx_export", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, help="model bundle folder or zip")
    p.add_argument("out", type=Path, nargs="?", help="self-contained ONNX file to write")
    p.add_argument("--into-bundle", action="store_true",
                   help=f"add the graph to the bundle folder as {GRAPH_FILE} (weights stay in the bundle's weights file)")
    p.add_argument("--cpu-runtime", choices=("torch", "onnxruntime"),
                   help="with --into-bundle: the runtime the card names for CPUs (measure first: bench/)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                   help="spatial size of the check input (default: the card's patch size)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--atol", type=float, default=1e-3, help="largest allowed absolute logit difference")
    p.add_argument("--min-agreement", type=float, default=0.999, help="smallest allowed argmax agreement (0-1)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.into_bundle == (args.out is not None):
        parser.error("give either OUT (a self-contained .onnx file) or --into-bundle")
    if args.cpu_runtime and not args.into_bundle:
        parser.error("--cpu-runtime goes with --into-bundle")
    if args.into_bundle:
        bundle = add_graph_to_bundle(args.bundle, args.cpu_runtime, args.opset)
        written, session = bundle.path / GRAPH_FILE, open_session(bundle, bundle.card)
    else:
        bundle = Bundle.open(args.bundle)
        written = session = export_onnx(bundle, args.out, args.opset)
    check = check_onnx(bundle, session, args.shape)
    passed = check.passed(args.atol, args.min_agreement)
    print(json.dumps({"onnx": str(written), **asdict(check), "passed": passed}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
