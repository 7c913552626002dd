"""The one segmentation function every face of MedSegAI runs: input volumes + bundle -> label map
on the first input's exact grid."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import psutil

from .applicability import check_applicability
from .body import axial_axis, keep_inside_body
from .bundle import Bundle, Label, ModelCard
from .errors import EmptyResultError, InputImageError, ResourceError
from .geometry import ras_box_to_ijk_slices, voxel_centres_in_ras_box
from .image import Volume
from .label_regions import centroid_ras, label_boxes
from .lateralization import keep_mirrored_components, split_at_midline
from .postprocessing import postprocess
from .preprocessing import prepare_case
from .preprocessing.pipeline import from_network_layout
from .preprocessing.spatial import SpatialPlan
from .progress import ProgressReporter
from .runtime import LoadedModels, open_engine


@dataclass
class SegmentationOptions:
    """How to run a model. Defaults suit a clinical workstation.

    Attributes:
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        runtime: ``auto`` (the card's faster CPU runtime on a CPU, else PyTorch), ``torch`` or
            ``onnxruntime`` (see :mod:`~MedSegAILib.runtime`).
        threads: CPU threads for the network (None: physical cores).
        variant: a card variant such as ``"fast"``.
        roi_ras: ``(min_corner, max_corner)`` of an RAS box; only voxels inside are segmented.
        labels: names of the labels to keep (None: all).
        tta: flip test-time augmentation when the card defines flips (slower, a little smoother).
        precision: ``auto`` (float16 mixed precision on CUDA, float32 elsewhere), ``fp32`` or
            ``bf16`` (bfloat16 autocast; see :func:`~MedSegAILib.inference.autocast_dtype`).
        force: run even when the card says to refuse such inputs.
        allow_empty: an empty result is returned instead of raising :class:`EmptyResultError`.
        memory_limit_bytes: refuse jobs estimated to need more host memory than this (shared
            servers); the free memory of the machine is always a limit too.
    """

    device: str = "auto"
    runtime: str = "auto"
    threads: int | None = None
    variant: str | None = None
    roi_ras: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    labels: list[str] | None = None
    tta: bool = False
    precision: str = "auto"
    force: bool = False
    allow_empty: bool = False
    memory_limit_bytes: int | None = None


@dataclass
class SegmentationResult:
    labels: Volume  # on the first input's grid, uint8/uint16
    card: ModelCard
    found: list[Label]
    missing: list[Label]
    warnings: list[str] = field(default_factory=list)
    device: str = "cpu"
    seconds: dict[str, float] = field(default_factory=dict)
    # bounding box of each found label in labels.array, so that outputs need not search again
    boxes: dict[int, tuple[slice, ...]] = field(default_factory=dict)


# Host bytes per voxel of the scan's own grid beyond the input itself: label map, slab-wise
# resampling back, post-processing labels, surfaces. Measured with bench/run_benchmark.py
# (about 20 before slab-wise resampling; kept as the conservative figure).
BYTES_PER_SOURCE_VOXEL = 20


def estimate_peak_bytes(model_shape_xyz, num_classes: int, in_channels: int, flips: int,
                        source_voxels: int = 0) -> int:
    """Rough peak host memory of a run: on the model grid the input, MONAI's stitching buffers
    (class sums and the weight map), softmax output and the TTA accumulator, all float32; on the
    scan's grid what the post-processing and outputs need."""
    voxels = math.prod(model_shape_xyz)
    floats = voxels * (in_channels * 2 + num_classes * (3 + (1 if flips > 1 else 0)) + 1)
    return int(floats * 4 + source_voxels * BYTES_PER_SOURCE_VOXEL)


def segment(inputs: list[Volume], bundle: Bundle, options: SegmentationOptions | None = None,
            reporter: ProgressReporter | None = None, models: LoadedModels | None = None) -> SegmentationResult:
    """Segment ``inputs`` (one volume per card input, first one defines the output grid).

    ``models``: networks loaded by earlier calls, for batches (None: load the network afresh).

    Raises:
        InputImageError, ApplicabilityError, ResourceError, EmptyResultError, Cancelled.
    """
    options = options or SegmentationOptions()
    reporter = reporter or ProgressReporter()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    card = bundle.card.variant(options.variant) if options.variant else bundle.card
    if len(inputs) != len(card.inputs):
        names = ", ".join(i.name for i in card.inputs)
        raise InputImageError(f"model {card.id} takes {len(card.inputs)} input(s) ({names}), got {len(inputs)}",
                              "give one volume per model input, in that order")
    keep = [card.label_by_name(n) for n in options.labels] if options.labels else list(card.labels)

    reporter.stage("preprocess", "checking the input")
    warnings = check_applicability(card, inputs, enforce=not options.force)
    source = inputs[0]
    work_inputs = list(inputs)
    roi = None
    if options.roi_ras is not None:
        start, stop = ras_box_to_ijk_slices(source.grid, *options.roi_ras)
        if np.any(stop - start < 2):
            raise InputImageError("the ROI does not overlap the input volume (or is under 2 voxels thick)",
                                  "give the ROI corners in RAS millimetres, inside the volume")
        roi = (start, stop)
        work_inputs[0] = source.crop(start, stop)

    plan = SpatialPlan.for_grid(work_inputs[0].grid, card.preprocessing.target_spacing)
    flips = 1 + (len(card.inference.tta_flips) if options.tta else 0)
    needed = estimate_peak_bytes(plan.model_grid.size_ijk, card.num_classes, len(card.inputs), flips,
                                 source.array.size)
    available = int(0.9 * psutil.virtual_memory().available)
    if options.memory_limit_bytes is not None:
        available = min(available, options.memory_limit_bytes)
    if needed > available:
        raise ResourceError(
            f"this volume needs about {needed / 2**30:.1f} GiB of memory, "
            f"{available / 2**30:.1f} GiB are free",
            "segment a region (--roi), use the fast variant (--fast) if the model has one, or close other programs",
        )
    on_model_grid = estimate_peak_bytes(plan.model_grid.size_ijk, card.num_classes, len(card.inputs), flips)
    engine = open_engine(bundle, card, options, on_model_grid, warnings, models)

    prepared = prepare_case(work_inputs, card.preprocessing)
    seconds["preprocess"] = time.perf_counter() - t0

    reporter.stage("inference", f"running {card.id} on {engine.device_type}")
    t1 = time.perf_counter()
    probabilities = engine.predict(prepared.image, reporter)
    seconds["inference"] = time.perf_counter() - t1

    reporter.stage("postprocess", "restoring the input geometry")
    t2 = time.perf_counter()
    labels = plan.labels_to_source(from_network_layout(probabilities), np.array(card.channel_values))
    del probabilities
    if card.lateral_pairs:  # before labels are dropped: the midline comes from every paired structure
        midline_x = split_at_midline(labels, work_inputs[0].ijk_to_ras, card.lateral_pairs)
        if card.lateral_mirrored_component and midline_x is not None:
            # the prior's reference: the centroid of the whole input's nonzero voxels, whatever the ROI
            reference = centroid_ras(source.array != 0, source.ijk_to_ras) if card.lateral_position_prior else None
            keep_mirrored_components(labels, work_inputs[0].ijk_to_ras, card.lateral_pairs, midline_x,
                                     card.lateral_position_prior, reference)
    dropped = [label.value for label in card.labels if label not in keep]
    if dropped:
        labels[np.isin(labels, dropped)] = 0
    if roi is not None:  # the crop is the box's bounding box in voxels; oblique grids stick out of it
        labels[~voxel_centres_in_ras_box(work_inputs[0].grid, *options.roi_ras)] = 0
        # back on the whole scan before the clean-up: the body's outline needs whole slices, and
        # components and holes are the same with or without the empty margin
        full = np.zeros(source.array.shape, dtype=labels.dtype)
        start, stop = roi
        full[start[2]:stop[2], start[1]:stop[1], start[0]:stop[0]] = labels
        labels = full
    # one pass for the boxes of both clean-ups: each only removes voxels or fills inside a label's box
    kept_boxes = label_boxes(labels, [label.value for label in keep])
    inside_body = {label.value: label.postprocessing.inside_body_hu for label in keep
                   if label.postprocessing.inside_body_hu is not None}
    if inside_body:
        keep_inside_body(labels, source.array, axial_axis(source.ijk_to_ras), inside_body, kept_boxes)
    postprocess(labels, {label.value: label.postprocessing for label in keep}, tuple(source.spacing[::-1]), kept_boxes)
    boxes = label_boxes(labels, [label.value for label in keep])  # one pass; np.unique sorts or hashes every voxel
    found = [label for label in keep if boxes[label.value] is not None]
    missing = [label for label in keep if boxes[label.value] is None]
    seconds["postprocess"] = time.perf_counter() - t2
    if not found and not options.allow_empty:
        raise EmptyResultError(
            f"model {card.id} found none of its structures ({', '.join(x.name for x in keep)}) in this image",
            "check that the image shows the anatomy the model is made for (and the ROI, if any); "
            "--allow-empty writes the empty result anyway",
        )
    if missing:
        warnings.append("not found: " + ", ".join(x.name for x in missing))
    return SegmentationResult(source.with_array(labels), card, found, missing, warnings, engine.device_type, seconds,
                              {label.value: boxes[label.value] for label in found})
