"""Auto-configuration from a data set fingerprint (nnU-Net style), written as a plain JSON plan.

Two steps:

* :func:`compute_fingerprint` reads the data: voxel spacing and size of every usable case (along
  the model axes x, y, z, i.e. after the lossless reorientation to RAS) and, per channel, the
  intensities of foreground voxels (label > 0; up to ``samples_per_case`` per case): 0.5 and 99.5
  percentiles, mean, standard deviation; and the share of background voxels (label 0) that are
  exactly 0 (``background_zero_fraction``: a masked or skull-stripped image).
* :func:`make_plan` is a pure function of the fingerprint and a few budgets:

  - **target spacing**: the median spacing. When the median spacing is anisotropic (largest /
    smallest > 3, e.g. thick-slice CT) the low-resolution axis takes the 10th percentile of that
    axis's spacings instead (but not finer than the other axes), as nnU-Net does, so that thin-slice
    cases are not thrown away.
  - **network**: ``unet`` (MONAI DynUNet). Stage 0 has stride 1; every further stage halves each
    axis that is still >= 8 voxels at that level and whose voxels are not more than twice the
    finest axis's (so thick slices are not downsampled until the in-plane resolution catches up);
    at most ``max_stages`` stages. Filters start at ``base_filters`` and double per stage up to
    ``max_filters``.
  - **patch size**: starts at the median image size at the target spacing and shrinks, always on
    the axis of largest physical extent, until :func:`estimate_training_bytes` for ``min_batch``
    patches fits ``memory_mb``; each side is then a multiple of the network's total stride.
  - **batch size**: the largest that fits the memory budget, capped at ``max_batch`` and so that
    one batch covers at most 5 % of all voxels of the data set (nnU-Net's rule), never below
    ``min_batch``.
  - **normalisation** per channel, by its modality: CT -> ``ct_window`` over the foreground
    0.5-99.5 percentiles; anything else -> ``percentile_zscore`` (0.5, 99.5), with ``nonzero``
    when at least half of that channel's background voxels are exactly 0. The first channel's is
    ``preprocessing.normalization`` (the card default); a channel whose normalisation differs (CT +
    PET, or T1 + a skull-stripped FLAIR) gets its own ``model.inputs[i].normalization``.

The plan is a plain JSON file meant to be read and edited before training (``medsegai-train plan``
writes it, ``train`` reads it). :func:`card_document` turns a plan into a MedSegAI model card.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from MedSegAILib.image import read_volume, resample
from MedSegAILib.terminology import MEDSEGAI_CONTEXT

from .dataset import Dataset, DatasetReport, check_dataset
from .export import ANATOMICAL_STRUCTURE, label_entry, with_provenance
from .snomed_lookup import lookup, unmatched_reason

PLAN_FORMAT = "medsegai-training-plan"
PLAN_VERSION = 1
ANISOTROPY_RATIO = 3.0
MIN_DOWNSAMPLE_SIZE = 8
# Float32 training memory per voxel and filter of a stage (conv, norm and activation outputs of the
# encoder and decoder convolutions kept for the backward pass, and their gradients). Calibrated on
# CPU (torch 2.x, DynUNet, one AdamW step, batch 2): the measured peak growth was 0.53 x the
# estimate with 28 for patches 64^3 (16-256 filters) and 96x96x48 (32-320 filters); 16 keeps a
# margin of about 10 %. GPU runs add the CUDA context and cuDNN workspaces on top.
FLOATS_PER_VOXEL_AND_FILTER = 16
BATCH_DATASET_FRACTION = 0.05
PLACEHOLDER_SCHEME = "99MEDSEGAI"
# Look-up matches below this confidence (a corrected typo) are offered in the plan, not applied:
# a wrong SNOMED CT code is worse than a placeholder the user is told to edit.
APPLY_CONFIDENCE = 0.9
# A background filled with exact zeros (skull stripping, masking, padding) covers most of the
# non-label volume; real signal is exactly 0 only in a few voxels (water in CT, noisy MR air).
ZERO_BACKGROUND_FRACTION = 0.5
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)]


@dataclass
class Fingerprint:
    dataset: str
    channel_names: list[str]
    labels: dict[str, int]
    cases: list[str]
    spacings: list[list[float]]  # per case, x, y, z mm
    sizes: list[list[int]]  # per case, x, y, z voxels
    intensities: list[dict] = field(default_factory=list)  # per channel: percentile_00_5, percentile_99_5, mean, std
    excluded: dict[str, str] = field(default_factory=dict)  # case -> why it was left out

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Fingerprint":
        return cls(**d)


def compute_fingerprint(dataset: Dataset, report: DatasetReport | None = None, samples_per_case: int = 10000,
                        seed: int = 0, progress=None) -> Fingerprint:
    """Spacings, sizes and foreground intensity statistics of the usable cases (see the check)."""
    report = report or check_dataset(dataset)
    rng = np.random.default_rng(seed)
    checks = {c.name: c for c in report.cases}
    usable = [n for n in report.usable_cases]
    excluded = {c.name: "; ".join(f"{p.kind}: {p.message}" for p in c.problems) for c in report.cases if not c.usable}
    samples: list[list[np.ndarray]] = [[] for _ in dataset.channel_names]
    background_zeros = np.zeros((len(dataset.channel_names), 2), np.int64)  # per channel: zeros, voxels
    for i, name in enumerate(usable):
        if progress is not None:
            progress(i, len(usable), name)
        case = dataset.case(name)
        labels = read_volume(case.label)
        foreground = labels.array > 0
        for c, path in enumerate(case.images):
            volume = read_volume(path)
            if not volume.grid.same_as(labels.grid):
                volume = resample(volume, labels.grid, "linear")
            background = volume.array[~foreground]
            background_zeros[c] += (np.count_nonzero(background == 0), background.size)
            values = volume.array[foreground]
            if values.size > samples_per_case:
                values = rng.choice(values, samples_per_case, replace=False)
            samples[c].append(values.astype(np.float64))
    intensities = []
    for c, parts in enumerate(samples):
        values = np.concatenate(parts) if parts else np.zeros(0)
        zeros, voxels = background_zeros[c]
        zero_fraction = {"background_zero_fraction": round(float(zeros / voxels), 4) if voxels else 0.0}
        if values.size == 0:
            intensities.append({"voxels": 0, **zero_fraction})
            continue
        lo, hi = np.percentile(values, [0.5, 99.5])
        intensities.append({"voxels": int(values.size), "percentile_00_5": float(lo), "percentile_99_5": float(hi),
                            "mean": float(values.mean()), "std": float(values.std()),
                            "median": float(np.median(values)), **zero_fraction})
    return Fingerprint(dataset.name, list(dataset.channel_names), dict(dataset.labels), usable,
                       [checks[n].spacing for n in usable], [checks[n].size for n in usable], intensities, excluded)


# ------------------------------------------------------------------------------------------ planning


def target_spacing(spacings: Sequence[Sequence[float]]) -> list[float]:
    """Median spacing; on anisotropic data the coarse axis takes its 10th percentile instead.

    Example:
        >>> target_spacing([[1, 1, 5]] * 6 + [[1, 1, 1.5]] * 4)
        [1.0, 1.0, 1.5]
    """
    s = np.asarray(spacings, dtype=float)
    target = np.median(s, axis=0)
    if target.max() / target.min() > ANISOTROPY_RATIO:
        axis = int(np.argmax(target))
        others = np.delete(target, axis)
        target[axis] = max(float(np.percentile(s[:, axis], 10)), float(others.max()))
    return [round(float(t), 6) for t in target]


def network_for_patch(patch: Sequence[int], spacing: Sequence[float], base_filters: int = 32,
                      max_filters: int = 320, max_stages: int = 5) -> tuple[list[int], list[list[int]]]:
    """``(filters, strides)`` of the U-Net for a patch (see the module docstring)."""
    size = [int(p) for p in patch]
    sp = [float(s) for s in spacing]
    strides = [[1, 1, 1]]
    while len(strides) < max_stages:
        finest = min(sp)
        step = [2 if size[a] >= MIN_DOWNSAMPLE_SIZE and sp[a] <= 2 * finest else 1 for a in range(3)]
        if 2 not in step:
            break
        strides.append(step)
        size = [n // s for n, s in zip(size, step)]
        sp = [x * s for x, s in zip(sp, step)]
    filters = [min(base_filters * 2 ** i, max_filters) for i in range(len(strides))]
    return filters, strides


def total_strides(strides: Sequence[Sequence[int]]) -> list[int]:
    return [int(np.prod([s[a] for s in strides])) for a in range(3)]


def estimate_training_bytes(patch: Sequence[int], batch: int, filters: Sequence[int], strides: Sequence[Sequence[int]],
                            in_channels: int = 1, out_channels: int = 2) -> int:
    """Rough peak memory of one float32 training step (activations, gradients, weights, AdamW state)."""
    voxels = float(np.prod(patch))
    floats, scale = 0.0, 1.0
    for f, s in zip(filters, strides):
        scale *= float(np.prod(s))
        floats += FLOATS_PER_VOXEL_AND_FILTER * f * voxels / scale
    floats += voxels * (2 * in_channels + 4 * out_channels)  # input, logits, softmax, one-hot, loss terms
    params, previous = 0, in_channels
    for f in filters:
        params += 27 * (previous * f + f * f) * 2  # encoder and decoder convolutions
        previous = f
    return int(4 * (batch * floats + 4 * params))  # weights, gradients and two AdamW moments


def _fit_patch(median_size: list[int], spacing: list[float], budget: float, min_batch: int, in_channels: int,
               out_channels: int, base_filters: int, max_filters: int, max_stages: int,
               max_patch: int) -> tuple[list[int], list[int], list[list[int]], bool]:
    patch = [max(1, min(int(n), max_patch)) for n in median_size]
    fits = False
    for _ in range(10000):
        filters, strides = network_for_patch(patch, spacing, base_filters, max_filters, max_stages)
        if estimate_training_bytes(patch, min_batch, filters, strides, in_channels, out_channels) <= budget:
            fits = True
            break
        shrinkable = [a for a in range(3) if patch[a] > 4]
        if not shrinkable:
            break
        axis = max(shrinkable, key=lambda a: patch[a] * spacing[a])
        patch[axis] = max(4, patch[axis] - max(1, patch[axis] // 10))
    filters, strides = network_for_patch(patch, spacing, base_filters, max_filters, max_stages)
    multiple = total_strides(strides)
    patch = [max(m, (p // m) * m) for p, m in zip(patch, multiple)]
    return patch, filters, strides, fits


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return (s or "model")[:64].ljust(2, "0")


def modality_of(channel_name: str) -> str:
    """The model card modality for an nnU-Net channel name (``CT``, ``T2``, ``ADC``, ``PET`` ...)."""
    n = channel_name.strip().upper()
    if "CBCT" in n:
        return "CBCT"
    if n == "CT" or n.startswith("CT") or "HOUNSFIELD" in n:
        return "CT"
    if n.startswith("PET") or n == "PT" or n.startswith("SUV"):
        return "PET"
    if n in ("US", "ULTRASOUND"):
        return "US"
    if re.search(r"MR|T1|T2|FLAIR|ADC|DWI|PD|SWI|NOISE|DIXON|GAD", n):
        return "MR"
    return "other"


def normalization_for(modality: str, intensity: dict) -> dict:
    """A channel's card normalisation from its modality and fingerprint intensities (see the module
    docstring). Fingerprints written before ``background_zero_fraction`` existed give no ``nonzero``."""
    if modality == "CT" and intensity.get("voxels"):
        lo, hi = round(intensity["percentile_00_5"], 1), round(intensity["percentile_99_5"], 1)
        if hi <= lo:
            hi = lo + 1.0
        return {"type": "ct_window", "window": [lo, hi]}
    spec = {"type": "percentile_zscore", "lower": 0.5, "upper": 99.5}
    if intensity.get("background_zero_fraction", 0.0) >= ZERO_BACKGROUND_FRACTION:
        spec["nonzero"] = True
    return spec


def input_entries(channel_names: Sequence[str], modalities: Sequence[str],
                  normalizations: Sequence[dict]) -> list[dict]:
    """The card's ``inputs``; a channel normalised unlike the first (the card default) carries its own."""
    entries = []
    for name, modality, normalization in zip(channel_names, modalities, normalizations):
        entry = {"name": name, "modality": modality}
        if normalization != normalizations[0]:
            entry["normalization"] = normalization
        entries.append(entry)
    return entries


def default_label_entry(name: str, value: int) -> dict:
    """A card label with a placeholder code (private scheme ``99MEDSEGAI``): edit it in the plan."""
    return {"value": int(value), "name": name, "color": list(PALETTE[(value - 1) % len(PALETTE)]),
            "terminology": {"context": MEDSEGAI_CONTEXT, "category": list(ANATOMICAL_STRUCTURE),
                            "type": [PLACEHOLDER_SCHEME, slug(name), name]}}


def plan_label(name: str, value: int) -> tuple[dict, str]:
    """The card label of a data set label, and how its terminology was chosen.

    Names the SNOMED CT look-up (:mod:`.snomed_lookup`) knows get their codes and the list's
    colour (the palette's where the list recommends none); others keep the placeholder.

    Example:
        >>> entry, how = plan_label("kidney_left", 1)
        >>> entry["terminology"]["type"], entry["terminology"]["modifier"], entry["color"]
        (['SCT', '64033007', 'Kidney'], ['SCT', '7771000', 'Left'], [185, 102, 83])
        >>> plan_label("hip_left", 2)[1]
        'placeholder 99MEDSEGAI (ambiguous: hip bone, hip joint or hip region): edit it'
    """
    match = lookup(name)
    if match is None or match.confidence < APPLY_CONFIDENCE:
        why = unmatched_reason(name) or f"did you mean {match.describe()}? {match.explanation}"
        return default_label_entry(name, value), f"placeholder {PLACEHOLDER_SCHEME} ({why}): edit it"
    color = match.color or PALETTE[(value - 1) % len(PALETTE)]
    entry = label_entry(value, name, color, match.type, match.modifier, match.category, match.context)
    return entry, f"{match.describe()}: {match.explanation}"


def labels_note(labels: list[dict]) -> str:
    """The plan's note on label terminology: which labels still need codes, or that all have one."""
    todo = [x["name"] for x in labels if x["terminology"]["type"][0] == PLACEHOLDER_SCHEME]
    if not todo:
        return ("every label got SNOMED CT codes from the look-up table: check them (label_terminology says "
                "how each name was matched)")
    return (f"{len(todo)} of {len(labels)} labels have no SNOMED CT code yet: {', '.join(map(repr, todo))} "
            f"(label_terminology says why). Edit their model.labels[].terminology in the plan (category, type and "
            f"modifier as [scheme, code, meaning], e.g. from 3D Slicer's terminology lists) and their color before "
            f"training: the placeholder scheme {PLACEHOLDER_SCHEME} means nothing to other software")


def make_plan(fingerprint: Fingerprint | dict, memory_mb: float = 4096, base_filters: int = 32,
              max_filters: int = 320, max_stages: int = 5, min_batch: int = 2, max_batch: int = 16,
              max_patch: int = 256, iterations: int = 1000, model_id: str | None = None) -> dict:
    """The training plan (a JSON-ready dict) for a fingerprint. Pure: reads nothing, writes nothing."""
    fp = Fingerprint.from_dict(fingerprint) if isinstance(fingerprint, dict) else fingerprint
    if not fp.cases:
        raise ValueError("the fingerprint has no usable cases")
    spacings = np.asarray(fp.spacings, float)
    sizes = np.asarray(fp.sizes, float)
    spacing = target_spacing(spacings)
    sizes_at_target = np.round(sizes * spacings / np.asarray(spacing)).astype(int)
    median_size = [int(v) for v in np.median(sizes_at_target, axis=0)]
    labels = {n: v for n, v in fp.labels.items() if v != 0}
    in_channels, out_channels = len(fp.channel_names), len(labels) + 1
    budget = float(memory_mb) * 2 ** 20
    notes = []

    patch, filters, strides, fits = _fit_patch(median_size, spacing, budget, min_batch, in_channels, out_channels,
                                               base_filters, max_filters, max_stages, max_patch)
    if not fits:
        notes.append(f"even a minimal patch does not fit {memory_mb} MB with batch {min_batch}: raise the budget")

    def cost(b: int) -> int:
        return estimate_training_bytes(patch, b, filters, strides, in_channels, out_channels)

    dataset_voxels = float(sizes_at_target.prod(axis=1).sum())
    patch_voxels = float(np.prod(patch))
    batch = min_batch
    while batch < max_batch and cost(batch + 1) <= budget and \
            (batch + 1) * patch_voxels <= BATCH_DATASET_FRACTION * dataset_voxels:
        batch += 1

    modalities = [modality_of(c) for c in fp.channel_names]
    normalizations = [normalization_for(m, fp.intensities[c] if c < len(fp.intensities) else {})
                      for c, m in enumerate(modalities)]
    if len(set(modalities)) > 1:
        notes.append(f"channels of different modalities ({', '.join(fp.channel_names)}): each is normalised by its "
                     "modality (model.inputs[].normalization where it differs from preprocessing.normalization)")
    spread = spacings.max(axis=0) / spacings.min(axis=0)
    if np.any(spread > 2):
        notes.append(f"spacing varies up to {spread.max():.1f}x between cases along an axis")
    planned = [plan_label(n, v) for n, v in sorted(labels.items(), key=lambda x: x[1])]
    notes.append(labels_note([entry for entry, _ in planned]))
    model_id = model_id or slug(fp.dataset)
    return {
        "format": PLAN_FORMAT,
        "format_version": PLAN_VERSION,
        "dataset": {"name": fp.dataset, "channel_names": list(fp.channel_names), "labels": dict(fp.labels),
                    "cases": list(fp.cases), "excluded": dict(fp.excluded)},
        "fingerprint": {
            "spacing_mm": {"median": np.median(spacings, axis=0).round(4).tolist(),
                           "min": spacings.min(axis=0).round(4).tolist(),
                           "max": spacings.max(axis=0).round(4).tolist()},
            "size_voxels": {"median": np.median(sizes, axis=0).tolist(), "min": sizes.min(axis=0).tolist(),
                            "max": sizes.max(axis=0).tolist()},
            "median_size_at_target_spacing": median_size,
            "intensities": list(fp.intensities),
        },
        "model": {
            "id": model_id, "version": "0.1.0", "title": f"{fp.dataset} ({', '.join(labels)})",
            "modality": modalities[0],
            "inputs": input_entries(fp.channel_names, modalities, normalizations),
            "labels": [entry for entry, _ in planned],
            "license": {"name": "proprietary", "notes": "set the licence of the weights and of the training data"},
        },
        "label_terminology": {entry["name"]: how for entry, how in planned},
        "preprocessing": {"orientation": "RAS", "target_spacing": spacing, "interpolation": "linear",
                          "normalization": normalizations[0]},
        "network": {"name": "unet", "args": {"in_channels": in_channels, "out_channels": out_channels,
                                             "filters": filters, "strides": strides}},
        "training": {"patch_size": patch, "batch_size": batch, "iterations": int(iterations),
                     "learning_rate": 2e-3, "weight_decay": 1e-4, "warmup_iterations": min(50, max(1, iterations // 10)),
                     "foreground_fraction": 0.33, "seed": 0, "checkpoint_every": 50},
        # padding that repeats the border: a cut volume then continues as itself, not as a block of mean
        # tissue (zeros after a z-score) or 0 HU; at least as good in 40 of 40 cut brains, lungs on an
        # 8-slice CT slab 0.80 -> 0.97 (bench/results/padding_cut_volumes.md)
        "inference": {"patch_size": patch, "overlap": 0.25, "blending": "gaussian", "sw_batch_size": 1,
                      "padding": "replicate"},
        "memory": {"budget_mb": float(memory_mb), "estimated_training_mb": round(cost(batch) / 2 ** 20, 1),
                   "estimate": "float32 estimate calibrated on CPU (planning.estimate_training_bytes); GPU overheads come on top"},
        "notes": notes,
    }


def write_plan(plan: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    return path


def read_plan(path: str | Path) -> dict:
    plan = json.loads(Path(path).read_text(encoding="utf-8"))
    if plan.get("format") != PLAN_FORMAT:
        raise ValueError(f"{path} is not a MedSegAI training plan (format {plan.get('format')!r})")
    if plan.get("format_version") != PLAN_VERSION:
        raise ValueError(f"{path}: plan format version {plan.get('format_version')} is not {PLAN_VERSION}")
    return plan


def card_document(plan: dict, training: dict | None = None, metrics: list | None = None,
                  timings: dict | None = None) -> dict:
    """The model card of a plan (validated later by ``parse_card`` / ``write_bundle``)."""
    m = plan["model"]
    card = {
        "format_version": 1, "id": m["id"], "version": m["version"], "title": m["title"],
        "description": m.get("description", f"Trained by medsegai-train on the {plan['dataset']['name']} data set "
                                            f"({len(plan['dataset']['cases'])} cases)."),
        "modality": m["modality"], "inputs": m["inputs"], "labels": m["labels"],
        "network": plan["network"], "preprocessing": plan["preprocessing"], "inference": plan["inference"],
        "license": m["license"], "files": {"weights": "weights.safetensors"},
    }
    for key in ("intended_use", "limitations", "authors", "applicability"):
        if key in m:
            card[key] = m[key]
    return with_provenance(card, training, metrics, timings)


def estimated_memory_mb(plan: dict) -> float:
    t, n = plan["training"], plan["network"]["args"]
    return estimate_training_bytes(t["patch_size"], t["batch_size"], n["filters"], n["strides"], n["in_channels"],
                                   n["out_channels"]) / 2 ** 20


__all__ = ["Fingerprint", "compute_fingerprint", "make_plan", "target_spacing", "network_for_patch",
           "estimate_training_bytes", "write_plan", "read_plan", "card_document", "modality_of"]
