"""Segmentation metrics per label, in millimetres on the image's own voxel grid.

For label value ``v`` with prediction mask P and reference mask R:

* **dice** = 2|P & R| / (|P| + |R|); 1.0 when both are empty.
* **hd95** (mm): the larger of the two directed 95th-percentile surface distances (P's surface to
  R's, R's to P's), as MONAI computes it. **hd** is the same with the maximum.
* **assd** (mm): average symmetric surface distance, the mean of all surface distances in both
  directions (the distances from P's surface to R's and from R's to P's, pooled).
* **sensitivity** = TP / (TP + FN); **specificity** = TN / (TN + FP) over the whole volume.
* **volume_error** = (|P| - |R|) / |R|, relative (signed); ``volume_pred_ml`` and ``volume_ref_ml``.

Surfaces are the mask voxels with a 6-neighbour outside the mask (the volume border counts as
outside); distances are between voxel centres, from Euclidean distance transforms
(``scipy.ndimage.distance_transform_edt``) with the voxel spacing.

Empty masks, defined values:

=====================  =======  ===========  ==========  ===========  ===========
case                   dice     hd95 / assd  sens.       spec.        volume err.
=====================  =======  ===========  ==========  ===========  ===========
both empty             1.0      0.0          None        as defined   None
reference empty only   0.0      None (inf)   None        as defined   None
prediction empty only  0.0      None (inf)   0.0         as defined   -1.0
=====================  =======  ===========  ==========  ===========  ===========

``None`` means undefined (infinite for surface distances); it is written as JSON ``null`` and
left out of means (the count of undefined values is reported with them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

METRIC_NAMES = ("dice", "hd95", "hd", "assd", "sensitivity", "specificity", "volume_error")


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one 6-neighbour outside it (or on the volume border)."""
    if not mask.any():
        return np.zeros_like(mask, dtype=bool)
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1),
                                    border_value=0)
    return mask & ~eroded


def directed_surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) from every surface voxel of ``a`` to the nearest surface voxel of ``b``.

    ``spacing`` is per array axis (for a ``(k, j, i)`` array: ``(sk, sj, si)``).
    """
    sa, sb = surface(a), surface(b)
    if not sa.any() or not sb.any():
        return np.zeros(0)
    distance_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    return distance_to_b[sa]


@dataclass
class LabelMetrics:
    dice: float
    hd95: float | None
    hd: float | None
    assd: float | None
    sensitivity: float | None
    specificity: float | None
    volume_error: float | None
    volume_pred_ml: float
    volume_ref_ml: float

    def as_dict(self) -> dict:
        return asdict(self)


def label_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]) -> LabelMetrics:
    """All metrics of one binary mask pair (``spacing`` per array axis, in mm)."""
    p = np.asarray(prediction, dtype=bool)
    r = np.asarray(reference, dtype=bool)
    if p.shape != r.shape:
        raise ValueError(f"prediction {p.shape} and reference {r.shape} differ in shape")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n_p, n_r = int(p.sum()), int(r.sum())
    tp = int((p & r).sum())
    fp, fn = n_p - tp, n_r - tp
    tn = p.size - tp - fp - fn
    dice = 1.0 if n_p + n_r == 0 else 2.0 * tp / (n_p + n_r)
    if n_p == 0 and n_r == 0:
        hd95 = hd = assd = 0.0
    elif n_p == 0 or n_r == 0:
        hd95 = hd = assd = None
    else:
        d_pr = directed_surface_distances(p, r, spacing)
        d_rp = directed_surface_distances(r, p, spacing)
        hd95 = float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
        hd = float(max(d_pr.max(), d_rp.max()))
        assd = float(np.concatenate([d_pr, d_rp]).mean())
    return LabelMetrics(
        dice=float(dice), hd95=hd95, hd=hd, assd=assd,
        sensitivity=tp / n_r if n_r else None,
        specificity=tn / (tn + fp) if tn + fp else None,
        volume_error=(n_p - n_r) / n_r if n_r else None,
        volume_pred_ml=n_p * voxel_ml, volume_ref_ml=n_r * voxel_ml)


def volume_metrics(prediction: np.ndarray, reference: np.ndarray, labels: Mapping[str, int],
                   spacing_kji: Sequence[float]) -> dict[str, LabelMetrics]:
    """Metrics of every label (name -> value) of two label maps on the same grid."""
    return {name: label_metrics(prediction == value, reference == value, spacing_kji) for name, value in labels.items()}


def summarize(per_case: Sequence[Mapping[str, LabelMetrics | dict]]) -> dict[str, dict[str, dict]]:
    """label -> metric -> {mean, std, median, min, max, n, undefined} over cases (None left out)."""
    out: dict[str, dict[str, dict]] = {}
    for case in per_case:
        for label, m in case.items():
            values = m if isinstance(m, dict) else m.as_dict()
            for metric in METRIC_NAMES:
                out.setdefault(label, {}).setdefault(metric, []).append(values[metric])  # type: ignore[arg-type]
    summary: dict[str, dict[str, dict]] = {}
    for label, metrics in out.items():
        summary[label] = {}
        for metric, values in metrics.items():
            defined = np.array([v for v in values if v is not None], dtype=float)  # type: ignore[union-attr]
            entry = {"n": int(defined.size), "undefined": len(values) - int(defined.size)}
            if defined.size:
                entry.update(mean=float(defined.mean()), std=float(defined.std()), median=float(np.median(defined)),
                             min=float(defined.min()), max=float(defined.max()))
            summary[label][metric] = entry
    return summary


def summarize_folds(fold_summaries: Sequence[Mapping[str, Mapping[str, dict]]]) -> dict[str, dict[str, dict]]:
    """label -> metric -> {mean, std, n} of the per-fold means (k-fold cross-validation: each
    fold's :func:`summarize` counts once; folds where a metric is undefined are left out).

    Example:
        >>> folds = [summarize([{"a": {**dict.fromkeys(METRIC_NAMES), "dice": d}}]) for d in (0.6, 0.8)]
        >>> {k: round(v, 3) for k, v in summarize_folds(folds)["a"]["dice"].items()}
        {'mean': 0.7, 'std': 0.1, 'n': 2}
    """
    out: dict[str, dict[str, dict]] = {}
    for label in fold_summaries[0] if fold_summaries else {}:
        out[label] = {}
        for metric in METRIC_NAMES:
            means = np.array([f[label][metric]["mean"] for f in fold_summaries if f[label][metric]["n"]], dtype=float)
            out[label][metric] = ({"mean": float(means.mean()), "std": float(means.std()), "n": int(means.size)}
                                  if means.size else {"n": 0})
    return out
