"""From a trained network to a model bundle with a complete card.

Helpers build the card's label entries and provenance; :func:`export_bundle` writes the bundle
with ``MedSegAILib.bundle.write_bundle`` (which validates the card and verifies the checksums).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Callable

import torch
from MedSegAILib.bundle import CARD_FILE, Bundle, weights_bytes, write_bundle_members
from MedSegAILib.process_hygiene import physical_cores

ANATOMICAL_STRUCTURE = ["SCT", "123037004", "Anatomical Structure"]
GENERAL_ANATOMY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM_MASTER_CONTEXT = "Segmentation category and type - DICOM master list"


def label_entry(value: int, name: str, color, type_code, modifier=None, category=ANATOMICAL_STRUCTURE,
                context: str = GENERAL_ANATOMY_CONTEXT, postprocessing: dict | None = None) -> dict:
    """One ``labels`` entry of a card."""
    terminology = {"context": context, "category": list(category), "type": list(type_code)}
    if modifier:
        terminology["modifier"] = list(modifier)
    entry = {"value": int(value), "name": name, "color": [int(c) for c in color], "terminology": terminology}
    if postprocessing:
        entry["postprocessing"] = dict(postprocessing)
    return entry


def with_provenance(card: dict, training: dict | None = None, metrics: list | None = None,
                    timings: dict | None = None) -> dict:
    """``card`` with the optional provenance sections that are given (training record, metrics,
    timings)."""
    for key, value in (("training", training), ("metrics", metrics), ("timings", timings)):
        if value is not None:
            card[key] = value
    return card


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_summary(threads: int | None = None) -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_model()}, {physical_cores()} physical / {os.cpu_count()} logical cores, "
            f"torch threads: {threads or physical_cores()}, {gpu}; {platform.system()} {platform.machine()}")


def software_versions() -> dict:
    import MedSegAILib
    import monai
    import numpy
    import SimpleITK

    from . import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__,
            "numpy": numpy.__version__, "SimpleITK": SimpleITK.Version_VersionString(),
            "medsegai": MedSegAILib.__version__, "medsegai_training": __version__}


def export_bundle(destination: str | Path, card_document: dict, network: torch.nn.Module,
                  overwrite: bool = False) -> Bundle:
    """Write ``network``'s weights and ``card_document`` as a bundle folder (or ``.zip``) and open it.

    With ``overwrite`` an existing bundle at ``destination`` is replaced only once the new one has
    been written and verified. When the card names an ONNX graph (``files.onnx_graph``), the
    network is exported there, its weights those of the weights file (:mod:`.onnx_export`).
    """
    weights_file = card_document["files"]["weights"]
    graph_file = card_document["files"].get("onnx_graph")
    weights = weights_bytes(network.state_dict())
    members = {CARD_FILE: (json.dumps(card_document, indent=2) + "\n").encode("utf-8"), weights_file: weights}
    if graph_file:
        from .onnx_export import input_shape_of, onnx_bytes, with_external_weights

        members[graph_file], _ = with_external_weights(onnx_bytes(network, input_shape_of(card_document)), weights,
                                                       weights_file)
    return replace_bundle(Path(destination), lambda target: write_bundle_members(target, members), overwrite)


def replace_bundle(destination: Path, write: Callable[[Path], object], overwrite: bool = False) -> Bundle:
    """Run ``write`` to create the bundle at ``destination``; an existing bundle there is replaced
    (with ``overwrite``) only after the new one has been written and verified next to it."""
    if not destination.exists():
        write(destination)
        return Bundle.open(destination)
    if not overwrite:
        raise FileExistsError(f"{destination} exists; pass overwrite to replace it")
    fresh = destination.with_name(f".{destination.name}.new")
    old = destination.with_name(f".{destination.name}.old")
    for stale in (fresh, old):
        _remove(stale)
    write(fresh)
    Bundle.open(fresh)
    destination.rename(old)
    fresh.rename(destination)
    _remove(old)
    return Bundle.open(destination)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def bundle_size_bytes(path: str | Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
