"""Export a bundle's network to ONNX and check the ONNX model against PyTorch.

The model takes ``image`` ``(batch, channels, x, y, z)`` float32 and returns ``logits``
``(batch, classes, x, y, z)``; batch and spatial axes are dynamic, so one file serves every
window size the network accepts. The check runs the same random input through PyTorch and
ONNX Runtime and reports the largest absolute logit difference and the share of voxels whose
argmax (the label) agrees. Needs ``onnx`` and ``onnxruntime``::

    python -m medsegai_training.onnx_export BUNDLE_DIR OUT.onnx [--shape X Y Z]

Exit status 0 when the check passes (``--atol``, ``--min-agreement``), 1 otherwise.

Uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no further package and
exports MONAI's DynUNet with dynamic spatial axes (the ``torch.export`` one needs ``onnxscript``).
It warns that it is deprecated, and that instance normalisation is exported with
``train=True``; that is right, instance norm always normalises with the input's own statistics.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from MedSegAILib.bundle import Bundle
from MedSegAILib.fileio import atomic_path
from MedSegAILib.process_hygiene import physical_cores

OPSET = 17
AXES = {0: "batch", 2: "x", 3: "y", 4: "z"}


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


def export_onnx(bundle: Bundle, out: str | Path, opset: int = OPSET) -> Path:
    """Write the bundle's network (weights loaded, eval mode) as ONNX to ``out`` (atomically)."""
    network = bundle.build_network().eval()
    example = torch.zeros(input_shape(bundle))
    with atomic_path(out) as tmp:
        torch.onnx.export(network, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": AXES, "logits": AXES})
    return Path(out)


def check_onnx(bundle: Bundle, onnx_path: str | Path, spatial: Sequence[int] | None = None, seed: int = 0,
               threads: int | None = None) -> OnnxCheck:
    """Run one random input (standard normal, ``seed``) through PyTorch and ONNX Runtime."""
    import onnxruntime as ort

    shape = input_shape(bundle, spatial)
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = bundle.build_network().eval()(x).numpy()
    actual = session.run(["logits"], {"image": x.numpy()})[0]
    if actual.shape != expected.shape:
        raise ValueError(f"ONNX output shape {actual.shape} differs from PyTorch's {expected.shape}")
    return OnnxCheck(shape, float(np.abs(actual - expected).max()),
                     float((actual.argmax(1) == expected.argmax(1)).mean()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medsegai_training.onnx_export", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, help="model bundle folder or zip")
    p.add_argument("out", type=Path, help="ONNX file to write")
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                   help="spatial size of the check input (default: the card's patch size)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--atol", type=float, default=1e-3, help="largest allowed absolute logit difference")
    p.add_argument("--min-agreement", type=float, default=0.999, help="smallest allowed argmax agreement (0-1)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bundle = Bundle.open(args.bundle)
    export_onnx(bundle, args.out, args.opset)
    check = check_onnx(bundle, args.out, args.shape)
    passed = check.passed(args.atol, args.min_agreement)
    print(json.dumps({"onnx": str(args.out), **asdict(check), "passed": passed}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
