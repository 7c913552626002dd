"""Evaluation reports: segment data set cases with bundles through the real pipeline
(``MedSegAILib.pipeline.segment``), score them per label (:mod:`.metrics`) and describe the result
as ``report.json`` and ``report.md`` with PNG figures (:mod:`.report_figures`).

With one bundle the report has per-case metrics and mean ± sd over the cases. With several --
the models of a k-fold cross-validation -- each bundle is scored on its own validation fold (read
from its card's ``training.cross_validation``) unless cases are named, and the report adds each
fold's summary and mean ± sd over the folds' means.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from MedSegAILib.bundle import Bundle
from MedSegAILib.image import read_volume, resample
from MedSegAILib.pipeline import SegmentationOptions, segment

from .dataset import Dataset, DatasetError
from .metrics import summarize, summarize_folds, volume_metrics
from .report_figures import plot_overlay

FIGURES = "figures"
METRIC_HEADINGS = {"dice": "Dice", "hd95": "HD95 (mm)", "hd": "HD (mm)", "assd": "ASSD (mm)",
                   "sensitivity": "Sensitivity", "specificity": "Specificity", "volume_error": "Volume error"}
DEFINITIONS = ("see medsegai_training.metrics: distances in mm on the input grid; null = undefined (HD95/ASSD when "
               "exactly one mask is empty; sensitivity and volume error when the reference is empty)")


def validation_fold(bundle: Bundle) -> list[str] | None:
    """The validation cases of the cross-validation fold ``bundle`` was trained for, if any."""
    cross_validation = (bundle.card.raw.get("training") or {}).get("cross_validation")
    return list(cross_validation["validation_cases"]) if cross_validation else None


def _mm(value) -> str:
    return "n/a" if value is None else f"{value:.2f} mm"


def evaluate_bundle(bundle: Bundle, dataset: Dataset, names: Sequence[str], out: Path, fold: int | None = None,
                    device: str = "cpu", threads: int | None = None, figures: bool = True,
                    log: Callable[[str], None] = print) -> list[dict]:
    """Segment and score ``names``; one report entry per case. With ``figures``, an overlay PNG per
    case goes to ``out/figures/``."""
    labels = {label.name: label.value for label in bundle.card.labels}
    entries = []
    for i, name in enumerate(names):
        case = dataset.case(name)
        if not case.complete:
            raise DatasetError(f"case {name} lacks files")
        volumes = [read_volume(p) for p in case.images]
        reference = read_volume(case.label)
        if not reference.grid.same_as(volumes[0].grid):
            reference = resample(reference, volumes[0].grid, "nearest")
        start = time.perf_counter()
        result = segment(volumes, bundle, SegmentationOptions(device=device, threads=threads, allow_empty=True))
        seconds = time.perf_counter() - start
        metrics = volume_metrics(result.labels.array, reference.array, labels, volumes[0].spacing[::-1])
        entry = {"case": name, "seconds": round(seconds, 2), "warnings": list(result.warnings),
                 "metrics": {k: v.as_dict() for k, v in metrics.items()}}
        if fold is not None:
            entry = {"fold": fold, **entry}
        if figures:
            suffix = "" if fold is None else f"_fold{fold}"
            path = plot_overlay(volumes[0].array, reference.array, result.labels.array, volumes[0].grid,
                                [(x.value, x.name, x.color) for x in bundle.card.labels],
                                out / FIGURES / f"overlay_{name}{suffix}.png",
                                name if fold is None else f"{name} (fold {fold})")
            entry["overlay"] = path.relative_to(out).as_posix()
        entries.append(entry)
        log(f"evaluating {i + 1}/{len(names)}: {name}{'' if fold is None else f' (fold {fold})'} ({seconds:.1f} s) "
            + ", ".join(f"{k} Dice {v.dice:.3f} HD95 {_mm(v.hd95)}" for k, v in metrics.items()))
    return entries


def _bundle_info(bundle: Bundle, path: Path) -> dict:
    return {"id": bundle.card.id, "version": bundle.card.version, "path": str(path)}


def make_report(bundles: Sequence[tuple[Bundle, Path]], evaluated: Sequence[list[dict]], dataset: Dataset,
                learning_curves: Sequence[str] = ()) -> dict:
    """``report.json``'s content from :func:`evaluate_bundle`'s entries, one list per bundle."""
    first = bundles[0][0]
    cases = [entry for entries in evaluated for entry in entries]
    report = {"bundle": _bundle_info(*bundles[0]), "dataset": dataset.name, "dataset_path": str(dataset.root),
              "labels": {label.name: label.value for label in first.card.labels},
              "summary": summarize([c["metrics"] for c in cases]), "cases": cases}
    if len(bundles) > 1:
        report["folds"] = [{"fold": i, "bundle": _bundle_info(bundle, path), "cases": [e["case"] for e in entries],
                            "summary": summarize([e["metrics"] for e in entries])}
                           for i, ((bundle, path), entries) in enumerate(zip(bundles, evaluated))]
        report["cross_validation"] = summarize_folds([f["summary"] for f in report["folds"]])
    report["figures"] = {"learning_curves": list(learning_curves)}
    report["definitions"] = DEFINITIONS
    return report


def _num(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _summary_table(summary: dict) -> list[str]:
    lines = ["| label | " + " | ".join(METRIC_HEADINGS.values()) + " |", "|---" * (len(METRIC_HEADINGS) + 1) + "|"]
    for label, metrics in summary.items():
        cells = []
        for key in METRIC_HEADINGS:
            m = metrics[key]
            cell = f"{m['mean']:.3f} ± {m['std']:.3f}" if m["n"] else "n/a"
            if m.get("undefined"):
                cell += f" ({m['undefined']} n/a)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(report: dict) -> str:
    folds = report.get("folds", [])
    lines = [f"# Evaluation of {report['bundle']['id']} {report['bundle']['version']}", "",
             f"Data set: {report['dataset']} ({len(report['cases'])} case(s)"
             + (f", {len(folds)} cross-validation folds" if folds else "") + "). Segmented with "
             "`MedSegAILib.pipeline.segment`; metrics on each input's own grid, distances in mm. "
             "n/a: undefined (one mask empty, or no reference voxels).", ""]
    if folds:
        lines += [f"## Cross-validation (mean ± sd over the {len(folds)} folds' means)", ""]
        lines += _summary_table(report["cross_validation"])
        labels = list(report["labels"])
        lines += ["", "## Per fold (mean Dice over the fold's cases)", "",
                  "| fold | bundle | cases | " + " | ".join(labels) + " |", "|---" * (len(labels) + 3) + "|"]
        for f in folds:
            dice = [_num(f["summary"][label]["dice"].get("mean")) for label in labels]
            lines.append(f"| {f['fold']} | {f['bundle']['path']} | {', '.join(f['cases'])} | "
                         + " | ".join(dice) + " |")
        lines.append("")
    lines += ["## Summary (mean ± sd over cases)", ""] + _summary_table(report["summary"])
    fold_column = "fold | " if folds else ""
    lines += ["", "## Per case", "", f"| case | {fold_column}label | " + " | ".join(METRIC_HEADINGS.values())
              + " | volume pred / ref (ml) |", "|---" * (len(METRIC_HEADINGS) + 3 + bool(folds)) + "|"]
    for case in report["cases"]:
        fold = f"{case['fold']} | " if folds else ""
        for label, m in case["metrics"].items():
            lines.append(f"| {case['case']} | {fold}{label} | " + " | ".join(_num(m[k]) for k in METRIC_HEADINGS)
                         + f" | {m['volume_pred_ml']:.2f} / {m['volume_ref_ml']:.2f} |")
    if report["figures"]["learning_curves"]:
        lines += ["", "## Learning curves", ""]
        lines += [f"![learning curves]({path})" for path in report["figures"]["learning_curves"]]
    overlays = [c for c in report["cases"] if "overlay" in c]
    if overlays:
        lines += ["", "## Overlays", "", "Axial, coronal and sagittal slices through the centre of the reference "
                  "foreground (radiological convention: patient's right on the left). Solid contours: reference; "
                  "dashed: prediction.", ""]
        lines += [f"![{c['case']}]({c['overlay']})" for c in overlays]
    warnings = [(c["case"], w) for c in report["cases"] for w in c["warnings"]]
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {case}: {w}" for case, w in warnings]
    return "\n".join(lines) + "\n"


def report_card_metrics(report: dict) -> list[dict]:
    """Card ``metrics`` entries (mean Dice and HD95 per label) from an evaluation ``report.json``."""
    names = list(dict.fromkeys(c["case"] for c in report["cases"]))
    how = "medsegai-train evaluate (MedSegAILib.pipeline.segment on the input grid)"
    if "folds" in report:
        how += f"; {len(report['folds'])}-fold cross-validation, mean over all folds' cases"
    out = []
    for label, metrics in report["summary"].items():
        for metric, unit in (("dice", ""), ("hd95", " mm")):
            m = metrics[metric]
            if m["n"]:
                out.append({"metric": metric.upper() if metric == "hd95" else "Dice", "label": label,
                            "value": round(m["mean"], 4), "unit": unit.strip() or None, "subjects": len(names),
                            "data": f"{report['dataset']}: {', '.join(names)}", "how": how})
    return [{k: v for k, v in m.items() if v is not None} for m in out]
