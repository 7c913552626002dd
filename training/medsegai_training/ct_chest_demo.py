"""Recipe of the shipped demo model ``medsegai-ct-chest-demo``: lungs, ribs and spine on chest CT.

Smoke scale, on purpose: the only chest CT with labels available from a package registry is
slicerio's ``CTChest4`` (3D Slicer's CTChest sample downsampled to 128 x 128 x 34 voxels of
3.05 x 3.05 x 10 mm) with its 7-segment ``Segmentation.seg.nrrd``. One subject cannot give a
model that generalises, nor a held-out evaluation; the bundle exists so that the demo and the
format are exercised end to end with a real network on a real CT. The card says so.

Run from the repository root (about 10-15 minutes on 2 CPU cores)::

    PYTHONPATH=training .venv/bin/python -m medsegai_training.ct_chest_demo \\
        --out MedSegAI/Resources/Models/medsegai-ct-chest-demo-0.2.2 --overwrite

``--resume`` continues from the newest checkpoint in ``--work-dir`` (default
``.cache/training/ct-chest-demo``, ignored by git).

``--hold-out caudal`` (or ``cranial``) trains on the other half of the slices only and scores the
model on the held-out half: the one estimate of accuracy on voxels the network never saw that a
single subject allows (same scanner and patient, so still optimistic). The shipped bundle is
trained on every slice.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from MedSegAILib.bundle import parse_card
from MedSegAILib.geometry import crop_grid
from MedSegAILib.image import Volume
from MedSegAILib.process_hygiene import physical_cores

from .data import CaseSource, LabelMapping, LoadedCase, case_from_volumes, load_case, read_label_map
from .evaluation import evaluate_case
from .export import (DICOM_MASTER_CONTEXT, GENERAL_ANATOMY_CONTEXT, export_bundle,
                     label_entry, sha256_file, with_provenance)
from .onnx_export import GRAPH_FILE
from .recipe import (add_run_arguments, card_metrics, compact_train_config, log_line, refuses_to_overwrite,
                     score_segmentation, training_record, write_summary)
from .trainer import Trainer, run_and_report, with_overrides

BUNDLE_ID = "medsegai-ct-chest-demo"
# 0.2.0: lungs only inside the body (inside_body_hu); 0.2.1: ONNX Runtime on CPUs; 0.2.2: the same
# weights, windows past a scan cut short repeat its border (card ``padding``)
BUNDLE_VERSION = "0.2.2"
SLICERIO_VERSION = "1.4.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORK_DIR = REPO_ROOT / ".cache" / "training" / "ct-chest-demo"
DEFAULT_ITERATIONS = 400


@dataclass(frozen=True)
class LabelRecipe:
    """A model label: where its voxels come from in the source ``.seg.nrrd`` (segments found by
    their SNOMED CT type and type modifier, not by position) and what the card says about it."""

    value: int
    name: str
    sources: tuple[tuple[str, str | None], ...]  # (type code value, type modifier code value)
    type_code: tuple[str, str, str]
    modifier: tuple[str, str, str] | None
    context: str
    color: tuple[int, int, int]
    postprocessing: dict


# Lung and the air around the patient are both near -1000 HU: before the largest component is kept,
# lung voxels in air that reaches the edge of their axial slice go (MedSegAILib.body; -500 HU parts air
# from tissue). Added in 0.2.0 after both networks, trained on the cranial half, called the air around the
# caudal half "lung" and the largest-component rule kept that air (training/results/README.md).
LUNG_CLEAN_UP = {"inside_body_hu": -500.0, "largest_components": 1, "fill_holes": True}

# Codes and colours: 3D Slicer's General Anatomy terminology list
# (SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.term.json, recommendedDisplayRGBValue).
# That list has no whole "vertebral column" / "spinal column" type (only cervical, thoracic and
# lumbar spine), so the merged label uses SCT 421060004 "Spine" from the DICOM master list, which
# carries no recommended colour: it takes the General Anatomy thoracic-spine colour.
LABELS = (
    LabelRecipe(1, "right lung", (("39607008", "24028007"),), ("SCT", "39607008", "Lung"),
                ("SCT", "24028007", "Right"), GENERAL_ANATOMY_CONTEXT, (197, 165, 145),
                LUNG_CLEAN_UP),
    LabelRecipe(2, "left lung", (("39607008", "7771000"),), ("SCT", "39607008", "Lung"),
                ("SCT", "7771000", "Left"), GENERAL_ANATOMY_CONTEXT, (197, 165, 145),
                LUNG_CLEAN_UP),
    LabelRecipe(3, "ribs", (("113197003", None),), ("SCT", "113197003", "Rib"), None, GENERAL_ANATOMY_CONTEXT,
                (253, 232, 158), {"min_island_ml": 0.5}),
    LabelRecipe(4, "vertebral column", (("122494005", None), ("122495006", None), ("122496007", None)),
                ("SCT", "421060004", "Spine"), None, DICOM_MASTER_CONTEXT, (226, 202, 134), {"min_island_ml": 1.0}),
)

NETWORK = {
    "name": "unet",
    "args": {"in_channels": 1, "out_channels": len(LABELS) + 1, "filters": [16, 32, 64, 128],
             # no downsampling along z at the first level: slices are 10 mm apart
             "strides": [[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]]},
}
# the comparison network, trained with the same budget (--network deeplabv3plus)
NETWORK_TITLES = {"unet": "3D U-Net (MONAI DynUNet, 4 levels, 16-128 filters)",
                  "deeplabv3plus": "3D DeepLabv3+ (MedSegAI, output stride 8, 16-128 channels)"}
NETWORKS = {"unet": NETWORK,
            "deeplabv3plus": {"name": "deeplabv3plus", "args": {"in_channels": 1, "out_channels": len(LABELS) + 1,
                                                                "channels": [16, 32, 64, 128]}}}
PATCH_SIZE = (96, 96, 16)
PREPROCESSING = {
    "orientation": "RAS",
    "target_spacing": [3.046875, 3.046875, 10.0],  # CTChest4's own spacing: it is not resampled
    "interpolation": "linear",
    "normalization": {"type": "ct_window", "window": [-1000, 1000]},
}
TRAIN_CONFIG = compact_train_config(DEFAULT_ITERATIONS, PATCH_SIZE, foreground_fraction=0.67)

DESCRIPTION = (
    "Smoke-scale demonstration model: segments the right lung, left lung, ribs and vertebral column on chest CT. "
    "A compact {network} trained on ONE downsampled chest CT "
    "(3D Slicer's CTChest sample as shipped in slicerio 1.4.0: 128 x 128 x 34 voxels of 3.05 x 3.05 x 10 mm). "
    "It exists to demonstrate MedSegAI end to end with a real network on a real CT; it is not a usable "
    "segmentation model.")
INTENDED_USE = (
    "Demonstration and software testing only: the README demo, the Slicer module and CLI walk-through, and tests "
    "of the bundle format and pipeline. NOT for clinical use, diagnosis, treatment planning or research "
    "measurements.")
LIMITATIONS = (
    "Trained on a single subject, downsampled to 3 x 3 x 10 mm voxels, whose reference labels are of undocumented "
    "(apparently semi-automatic) origin; the merged vertebral column label contains cervical, thoracic and lumbar "
    "vertebrae of that reference. The Dice values in this card are measured on the training subject itself (a fit "
    "check showing the pipeline works, not an accuracy estimate). Trained on the cranial half of its slices and scored "
    "on the caudal half, the same recipe reaches Dice 0.55 / 0.81 (right / left lung), 0.44 (ribs) and 0.78 (spine). "
    "Expect poor results on any other scan, especially thin-slice, contrast-enhanced, paediatric or pathological ones; "
    "gas in the stomach or bowel can be called lung. Lung voxels in air outside the body are dropped, so where the "
    "field of view cuts through a lung, those slices lose it. Inputs are "
    "resampled to 3.05 x 3.05 x 10 mm and results are coarse. No test-time flips (left and right lungs are distinct "
    "labels).")


def slicerio_data_dir() -> Path:
    import slicerio

    return Path(slicerio.__file__).resolve().parent / "data"


def slicerio_version() -> str:
    from importlib.metadata import version

    return version("slicerio")


# SHA-256 of slicerio 1.4.0's data/CTChest4.nrrd
CTCHEST4_SHA256 = "439ee098e50ee8e3254bd80ed8bcf7f8d006da4cab35be7a65b61ccb30dd6a3d"


def card_document(training: dict | None = None, metrics: list | None = None, timings: dict | None = None,
                  network: str = "unet") -> dict:
    """The full model card; provenance, metrics and timings are added once they are measured."""
    card = {
        "format_version": 1,
        "id": BUNDLE_ID,
        "version": BUNDLE_VERSION,
        "title": "CT chest demo: lungs, ribs, spine (smoke-scale, one training subject)",
        "description": DESCRIPTION.format(network=NETWORK_TITLES[network]),
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
        "authors": ["MedSegAI contributors"],
        "modality": "CT",
        "inputs": [{"name": "CT", "modality": "CT", "name_pattern": "ct|chest|thorax",
                    "description": "chest CT in Hounsfield units"}],
        "labels": [label_entry(x.value, x.name, x.color, x.type_code, x.modifier, context=x.context,
                               postprocessing=x.postprocessing) for x in LABELS],
        "network": NETWORKS[network],
        "preprocessing": PREPROCESSING,
        # ONNX Runtime on CPUs: the medsegai CLI (how Slicer runs models) then never loads torch. Chosen when
        # it was 0.35-0.5 s ahead end to end; since MedSegAI's channels-last CPU kernels PyTorch is ahead
        # by a little (median of 8 alternating CLI runs, 2026-12-03: 4.83 against 5.24 s on CTChest4, 5.30
        # against 5.57 s on a 256x256x120 CT) with 1.4x the peak memory (516 / 574 against 334 / 408 MiB).
        # Kept: 0.3-0.4 s is within these shared cores' round-to-round noise; the memory is not
        # padding: zeros are 0 HU after the window, soft tissue laid against the cut; on slabs of 8 and
        # 12 slices of this scan, repeating the border kept the lungs at 0.97-0.99 and the ribs at 0.81
        # (zeros: lungs 0.80-0.97, ribs 0.31-0.56; bench/padding_cut_volumes.py)
        "inference": {"patch_size": list(PATCH_SIZE), "overlap": 0.25, "blending": "gaussian", "padding": "replicate",
                      "sw_batch_size": 1, "cpu_runtime": "onnxruntime"},
        "applicability": {"spacing_mm": [2.5, 10.5], "on_mismatch": "warn"},
        "license": {
            "name": "Apache-2.0",
            "notes": ("Weights and code: Apache-2.0 (MedSegAI). Training data: CTChest4.nrrd and Segmentation.seg.nrrd "
                      "from slicerio 1.4.0 (PyPI), MIT licence, Copyright (c) 2021 Andras Lasso; the data derive from "
                      "3D Slicer's CTChest sample data set. The model is a demo, not for clinical use."),
        },
        "files": {"weights": "weights.safetensors", "onnx_graph": GRAPH_FILE},
        # the training CT itself, from the installed slicerio package: a one-click sample in Slicer
        "sample_data": [{"name": "Chest CT (slicerio CTChest4)", "package": "slicerio", "path": "data/CTChest4.nrrd",
                         "sha256": CTCHEST4_SHA256}],
    }
    return with_provenance(card, training, metrics, timings)


def label_mapping(seg_path: Path) -> tuple[LabelMapping, list[dict]]:
    """Find each model label's source segments in the ``.seg.nrrd`` by terminology."""
    label_map = read_label_map(seg_path)
    mapping, described = {}, []
    for recipe in LABELS:
        sources = []
        for type_value, modifier_value in recipe.sources:
            for value in label_map.values_of(type_value, modifier_value):
                mapping[value] = recipe.value
                segment = next(s for s in label_map.segments if s.value == value)
                sources.append({"value": value, "name": segment.name,
                                "type": list(segment.type_code() or ()),
                                "modifier": list(segment.modifier_code() or ())})
        described.append({"model_value": recipe.value, "model_name": recipe.name, "source_segments": sources})
    unused = [f"{s.value} {s.name}" for s in label_map.segments if s.value not in mapping]
    if unused:
        described.append({"model_value": 0, "model_name": "background", "source_segments": unused})
    return LabelMapping(mapping), described


HALVES = ("cranial", "caudal")


def slab(volume: Volume, ks: slice) -> Volume:
    """Slices ``ks`` of ``volume``, in place in space (the origin moves to the first slice)."""
    grid = crop_grid(volume.grid, (0, 0, ks.start), (volume.array.shape[2], volume.array.shape[1], ks.stop))
    return Volume(np.ascontiguousarray(volume.array[ks]), grid.ijk_to_ras)


def split_halves(case: LoadedCase, held_out: str, preprocessing) -> tuple[LoadedCase, LoadedCase]:
    """(training case, held-out case): the slices of the other half and of the ``held_out``
    (``cranial`` or ``caudal``) half of ``case``, each prepared as a case of its own."""
    volume = case.volumes[0]
    n = volume.array.shape[0]
    lower, upper = slice(0, n // 2), slice(n // 2, n)
    towards_head = volume.ijk_to_ras[2, 2] > 0  # k runs from feet to head
    halves = dict(zip(HALVES, (upper, lower) if towards_head else (lower, upper)))
    identity = LabelMapping({x.value: x.value for x in LABELS})
    train_half = next(h for h in HALVES if h != held_out)
    return tuple(case_from_volumes(f"{case.name} {half} half", [slab(volume, halves[half])],
                                   slab(case.reference, halves[half]), identity, preprocessing)
                 for half in (train_half, held_out))


def rebuild_command(out: Path, iterations: int, seed: int, network: str = "unet", hold_out: str | None = None) -> str:
    try:
        shown = out.resolve().relative_to(REPO_ROOT)
    except ValueError:
        shown = out
    return ("PYTHONPATH=training .venv/bin/python -m medsegai_training.ct_chest_demo "
            f"--out {shlex.quote(str(shown))} --iterations {iterations} --seed {seed} --overwrite"
            + ("" if network == "unet" else f" --network {network}") + (f" --hold-out {hold_out}" if hold_out else ""))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medsegai_training.ct_chest_demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="bundle folder (or .zip) to write")
    p.add_argument("--network", choices=sorted(NETWORKS), default="unet", help="default unet (the shipped one)")
    add_run_arguments(p, DEFAULT_ITERATIONS, TRAIN_CONFIG.seed)
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="checkpoints and logs (never in the repo)")
    p.add_argument("--checkpoint-every", type=int, help=f"default {TRAIN_CONFIG.checkpoint_every}")
    p.add_argument("--data-dir", type=Path, help="folder with CTChest4.nrrd and Segmentation.seg.nrrd "
                                                 "(default: slicerio's bundled data)")
    p.add_argument("--hold-out", choices=HALVES, help="train on the other half of the slices only and score the "
                                                      "model on this half (the shipped bundle trains on all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    log = log_line
    if refuses_to_overwrite(args.out, args.overwrite):
        return 2
    data_dir = args.data_dir or slicerio_data_dir()
    ct_path, seg_path = data_dir / "CTChest4.nrrd", data_dir / "Segmentation.seg.nrrd"
    installed = slicerio_version()
    if args.data_dir is None and installed != SLICERIO_VERSION:
        log(f"warning: slicerio {installed} is installed; the recipe was written for {SLICERIO_VERSION}")

    card = parse_card(card_document(network=args.network), "demo card")
    mapping, mapping_description = label_mapping(seg_path)
    log(f"label mapping (source value -> model value): {dict(mapping.source_to_model)}")
    case = load_case(CaseSource("CTChest4", (ct_path,), seg_path, mapping), card.preprocessing)
    log(f"case {case.name}: input {case.volumes[0].array.shape[::-1]} (i, j, k), model grid "
        f"{case.prepared.image.shape[1:]} (x, y, z) at {case.model_spacing.round(3).tolist()} mm")

    train_case, test_case = split_halves(case, args.hold_out, card.preprocessing) if args.hold_out else (case, None)
    if test_case is not None:
        log(f"training on {train_case.name} ({train_case.volumes[0].array.shape[0]} slices), holding out "
            f"{test_case.name} ({test_case.volumes[0].array.shape[0]} slices)")

    config = with_overrides(TRAIN_CONFIG, iterations=args.iterations, seed=args.seed, threads=args.threads,
                            checkpoint_every=args.checkpoint_every)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    network = NETWORKS[args.network]
    trainer = Trainer(network["name"], network["args"], [(train_case.prepared.image, train_case.prepared.labels)],
                      train_case.model_spacing, config, args.work_dir, log)
    result = run_and_report(trainer, log, resume=args.resume, restart=args.restart)
    if result is None:
        return 2

    # scored through the real pipeline, on a bundle identical to the final one but for the card's metrics
    candidate = export_bundle(args.work_dir / "candidate-bundle", card_document(network=args.network), result.network,
                              overwrite=True)
    if test_case is not None:
        test = score_segmentation(candidate, test_case.name, test_case.volumes, {"reference": test_case.reference},
                                  args.threads)
        for name, values in test.scores["reference"].items():
            log(f"held-out Dice {name}: {values['dice']:.4f}, HD95 {values['hd95']} mm")
        metrics = card_metrics(test, "reference", f"CTChest4, {test_case.name} (held out: never trained on)",
                               "the other half of the training subject's slices: same patient and scanner, so an "
                               "optimistic estimate", metrics=("dice", "hd95", "assd"))
        seconds, dice_scores = test.seconds, {k: v["dice"] for k, v in test.scores["reference"].items()}
    else:
        evaluation = evaluate_case(candidate, case, args.threads)
        for name, value in evaluation.dice.items():
            log(f"fit-check Dice {name}: {value:.4f}")
        log(f"segment() took {evaluation.seconds:.1f} s {evaluation.stage_seconds}")
        metrics = [{
            "metric": "Dice", "label": name, "value": round(value, 4),
            "data": "CTChest4 - the TRAINING subject (fit check)", "subjects": 1,
            "note": "measured on the subject the model was trained on: shows the pipeline works, says nothing about "
                    "accuracy on other scans",
            "how": "MedSegAILib.pipeline.segment on CTChest4.nrrd (CPU, post-processing on) vs the reference label map "
                   "on the input grid",
        } for name, value in evaluation.dice.items()]
        seconds, dice_scores = evaluation.seconds, evaluation.dice

    data = [{
        "name": "CTChest4 with Segmentation.seg.nrrd (3D Slicer CTChest sample, downsampled)",
        "source": f"slicerio {installed} from PyPI: slicerio/data/CTChest4.nrrd, slicerio/data/Segmentation.seg.nrrd",
        "license": "MIT (slicerio, Copyright (c) 2021 Andras Lasso)",
        "subjects": 1,
        "sha256": {"CTChest4.nrrd": sha256_file(ct_path), "Segmentation.seg.nrrd": sha256_file(seg_path)},
        "label_mapping": mapping_description,
    }]
    command = rebuild_command(args.out, config.iterations, config.seed, args.network, args.hold_out)
    note = args.note or (f"fold model: trained on {train_case.name} only, scored on the held-out {args.hold_out} "
                         "half; not the shipped model" if args.hold_out else None)
    training = training_record(data, command, config, result, args.threads, note)
    timings = {f"cpu_{args.threads or physical_cores()}core_s": round(seconds, 1)}
    final = export_bundle(args.out, card_document(training, metrics, timings, args.network), result.network,
                          overwrite=args.overwrite)

    if test_case is not None:
        summary = write_summary(args.work_dir, f"chest CT {BUNDLE_VERSION}, held-out half ({config.iterations} it)",
                                args.network, final.path, result, command, t_start, held_out=test,
                                train_heads=[train_case.name])
    else:
        summary = write_summary(
            args.work_dir, f"chest CT {BUNDLE_VERSION} (fit check)", args.network, final.path, result, command, t_start,
            last_loss=round(result.losses[-1], 5) if result.losses else None,
            dice={k: round(v, 4) for k, v in dice_scores.items()}, segment_seconds=round(seconds, 2))
    log(summary.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
