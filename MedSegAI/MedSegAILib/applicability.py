"""Is this input something the model was made for? Plain-language findings before running."""

from __future__ import annotations

import numpy as np

from .bundle.card import ModelCard
from .errors import ApplicabilityError
from .image import Volume


def looks_like_ct(volume: Volume) -> bool:
    """CT holds calibrated Hounsfield units: air near -1000 HU around or inside the body."""
    sample = volume.array[::4, ::4, ::4]
    return float(sample.min()) <= -500.0


def applicability_findings(card: ModelCard, inputs: list[Volume]) -> list[str]:
    """Mismatches between the inputs and the card, each a sentence a radiologist understands."""
    findings = []
    for spec, volume in zip(card.inputs, inputs):
        if spec.modality == "CT" and not looks_like_ct(volume):
            findings.append(f"input '{spec.name}' does not look like CT (no values near -1000 HU); "
                            f"the model {card.id} expects CT in Hounsfield units")
        if spec.modality == "MR" and looks_like_ct(volume) and float(volume.array.min()) <= -900:
            findings.append(f"input '{spec.name}' looks like CT (values near -1000 HU); the model {card.id} expects MR")
    spacing = inputs[0].spacing
    if card.applicability.spacing_mm is not None:
        lo, hi = card.applicability.spacing_mm
        if spacing.min() < lo or spacing.max() > hi:
            findings.append(f"voxel spacing {np.round(spacing, 2).tolist()} mm is outside the range {lo}-{hi} mm "
                            f"the model {card.id} was validated for")
    if card.applicability.min_field_of_view_mm is not None:
        fov = spacing * np.asarray(inputs[0].grid.size_ijk)
        needed = np.asarray(card.applicability.min_field_of_view_mm)
        if np.any(fov < needed):
            findings.append(f"field of view {np.round(fov).astype(int).tolist()} mm is smaller than the "
                            f"{needed.astype(int).tolist()} mm the model needs; structures may be cut off")
    return findings


def check_applicability(card: ModelCard, inputs: list[Volume], enforce: bool = True) -> list[str]:
    """Return the findings as warnings, or raise when the card says to refuse such inputs."""
    findings = applicability_findings(card, inputs)
    if findings and enforce and card.applicability.on_mismatch == "refuse":
        raise ApplicabilityError("; ".join(findings),
                                 "use a model made for this kind of image, or pass --force if you know better")
    return findings
