"""``medsegai-train``: check a data set, plan, train, export and evaluate, from the command line.

    medsegai-train check    DATASET [--json check.json]
    medsegai-train plan     DATASET -o plan.json [--memory-mb 4096] [--base-filters 32] ...
    medsegai-train train    DATASET --plan plan.json --out RUN_DIR [--iterations N] [--resume | --restart]
    medsegai-train export   RUN_DIR --out BUNDLE [--overwrite]
    medsegai-train evaluate BUNDLE DATASET [--cases A B ...] -o REPORT_DIR

DATASET is an MSD / nnU-Net folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``, see
:mod:`.dataset`). The plan is a plain JSON file (:mod:`.planning`) to read and edit before
training. A run folder holds ``plan.json`` (the plan it was trained with), ``run.json``
(provenance), ``train_log.jsonl`` and ``checkpoints/``. The commands are thin: the work is done by
:mod:`.dataset`, :mod:`.planning`, :mod:`.trainer`, :mod:`.export`, :mod:`.metrics` and the core's
``MedSegAILib.pipeline.segment``. Exit status: 0 success, 1 data set problems (``check``), 2 error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import numpy as np

from MedSegAILib.errors import MedSegAIError

from .augmentation import AugmentationConfig
from .dataset import DatasetError, check_dataset, load_dataset

RUN_PLAN = "plan.json"
RUN_INFO = "run.json"


def log(text: str) -> None:
    print(text, flush=True)


def _progress(verb: str):
    def report(i: int, n: int, name: str) -> None:
        log(f"{verb} {i + 1}/{n}: {name}")
    return report


# ------------------------------------------------------------------------------------------- check/plan


def cmd_check(args) -> int:
    report = check_dataset(load_dataset(args.dataset), progress=_progress("checking") if args.verbose else None)
    log(report.text())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0 if report.ok else 1


def cmd_plan(args) -> int:
    from .planning import compute_fingerprint, make_plan, write_plan

    dataset = load_dataset(args.dataset)
    report = check_dataset(dataset, progress=_progress("checking"))
    log(report.text())
    if not report.usable_cases:
        log("error: no usable case")
        return 2
    fingerprint = compute_fingerprint(dataset, report, progress=_progress("fingerprint"))
    plan = make_plan(fingerprint, memory_mb=args.memory_mb, base_filters=args.base_filters,
                     max_filters=args.max_filters, max_stages=args.max_stages, max_batch=args.max_batch,
                     iterations=args.iterations, model_id=args.model_id)
    plan["dataset"]["check"] = {"problems": [vars(p) for p in report.problems]}
    write_plan(plan, args.output)
    t, n = plan["training"], plan["network"]["args"]
    log(f"plan: target spacing {plan['preprocessing']['target_spacing']} mm, patch {t['patch_size']}, "
        f"batch {t['batch_size']}, filters {n['filters']}, strides {n['strides']}, "
        f"normalisation {plan['preprocessing']['normalization']}, about {plan['memory']['estimated_training_mb']} MB")
    for note in plan["notes"]:
        log(f"note: {note}")
    log(f"wrote {args.output} (edit it before training if needed)")
    return 0


# ------------------------------------------------------------------------------------------------ train


def train_config(plan: dict, **overrides):
    """The :class:`~medsegai_training.trainer.TrainConfig` of a plan's ``training`` section."""
    from .trainer import TrainConfig, with_overrides

    settings = dict(plan["training"])
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown training settings in the plan: {', '.join(unknown)}")
    if "augmentation" in settings:
        aug = dict(settings["augmentation"])
        for key in ("scale_range", "intensity_scale_range"):
            if key in aug:
                aug[key] = tuple(aug[key])
        settings["augmentation"] = AugmentationConfig(**aug)
    settings["patch_size"] = tuple(int(p) for p in settings["patch_size"])
    config = TrainConfig(**settings)
    config = with_overrides(config, **overrides)
    if "log_every" not in plan["training"]:
        config = with_overrides(config, log_every=max(1, min(10, config.iterations // 10)))
    return config


def cmd_train(args) -> int:
    from MedSegAILib.bundle import parse_card

    from .data import load_case
    from .export import hardware_summary, software_versions
    from .planning import card_document, read_plan, write_plan
    from .trainer import Trainer, run_and_report

    plan = read_plan(args.plan)
    card = parse_card(card_document(plan), f"card of {args.plan}")  # validates the plan's model section
    dataset = load_dataset(args.dataset)
    names = args.cases or plan["dataset"]["cases"]
    config = train_config(plan, iterations=args.iterations, threads=args.threads, seed=args.seed)
    out = Path(args.out)
    run_plan = out / RUN_PLAN
    if run_plan.exists() and not (args.resume or args.restart):
        log(f"error: {out} holds a run; pass --resume to continue it or --restart to start over")
        return 2
    cases = []
    start = time.perf_counter()
    for i, source in enumerate(dataset.sources(names)):
        case = load_case(source, card.preprocessing)
        cases.append(case)
        log(f"loading {i + 1}/{len(names)}: {case.name} -> model grid {list(case.prepared.image.shape[1:])} "
            f"at {case.model_spacing.round(3).tolist()} mm")
    log(f"{len(cases)} case(s) loaded in {time.perf_counter() - start:.1f} s")
    spacing = np.median([c.model_spacing for c in cases], axis=0)
    out.mkdir(parents=True, exist_ok=True)
    write_plan(plan, run_plan)
    trainer = Trainer(plan["network"]["name"], plan["network"]["args"],
                      [(c.prepared.image, c.prepared.labels) for c in cases], spacing, config, out, log)
    result = run_and_report(trainer, log, resume=args.resume, restart=args.restart)
    if result is None:
        return 2
    info = {
        "data": [{"name": dataset.name, "path": str(dataset.root.resolve()), "subjects": len(cases),
                  "cases": [c.name for c in cases], "license": dataset.licence or "not stated in dataset.json"}],
        "command": "medsegai-train " + " ".join(shlex.quote(a) for a in args.argv),
        "seed": config.seed,
        "iterations": result.iterations,
        "sessions": result.sessions,
        "settings": config.describe(),
        "loss": "Dice + cross-entropy (MONAI DiceCELoss, batch Dice, background excluded from Dice)",
        "final_loss_mean_last_20": round(result.final_loss(), 5),
        "wall_time_s": round(result.train_seconds, 1),
        "hardware": hardware_summary(config.threads),
        "software": software_versions(),
    }
    (out / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n")
    log(f"wrote {out / RUN_INFO}; export with: medsegai-train export {out} --out BUNDLE")
    return 0


# ----------------------------------------------------------------------------------------------- export


def cmd_export(args) -> int:
    from MedSegAILib.networks import build_network

    from .checkpoint import latest_checkpoint, load_checkpoint
    from .export import bundle_size_bytes, export_bundle
    from .planning import card_document, read_plan

    run = Path(args.run_dir)
    plan = read_plan(run / RUN_PLAN)
    checkpoint = latest_checkpoint(run / "checkpoints")
    if checkpoint is None or not (run / RUN_INFO).exists():
        log(f"error: {run} holds no finished training run (checkpoints/ and {RUN_INFO})")
        return 2
    saved = load_checkpoint(checkpoint)
    if saved["network"] != plan["network"]:
        log(f"error: the checkpoint's network {saved['network']} is not the plan's {plan['network']}")
        return 2
    network = build_network(plan["network"]["name"], plan["network"]["args"])
    network.load_state_dict(saved["model"])
    training = json.loads((run / RUN_INFO).read_text())
    training["checkpoint"] = {"file": checkpoint.name, "iteration": int(saved["iteration"])}
    metrics = None
    if args.metrics:
        report = json.loads(Path(args.metrics).read_text())
        metrics = report_card_metrics(report)
    bundle = export_bundle(args.out, card_document(plan, training, metrics), network.eval(), overwrite=args.overwrite)
    log(f"exported {bundle.card.summary()}")
    log(f"wrote {bundle.path} ({bundle_size_bytes(bundle.path) / 1024:.0f} KiB, checksums verified)")
    return 0


def report_card_metrics(report: dict) -> list[dict]:
    """Card ``metrics`` entries (mean Dice and HD95 per label) from an evaluation ``report.json``."""
    out = []
    for label, metrics in report["summary"].items():
        for metric, unit in (("dice", ""), ("hd95", " mm")):
            m = metrics[metric]
            if m["n"]:
                out.append({"metric": metric.upper() if metric == "hd95" else "Dice", "label": label,
                            "value": round(m["mean"], 4), "unit": unit.strip() or None, "subjects": len(report["cases"]),
                            "data": f"{report['dataset']}: {', '.join(c['case'] for c in report['cases'])}",
                            "how": "medsegai-train evaluate (MedSegAILib.pipeline.segment on the input grid)"})
    return [{k: v for k, v in m.items() if v is not None} for m in out]


# --------------------------------------------------------------------------------------------- evaluate


def cmd_evaluate(args) -> int:
    from MedSegAILib.bundle import Bundle
    from MedSegAILib.image import read_volume, resample
    from MedSegAILib.pipeline import SegmentationOptions, segment

    from .metrics import summarize, volume_metrics

    bundle = Bundle.open(args.bundle)
    dataset = load_dataset(args.dataset)
    labels = {label.name: label.value for label in bundle.card.labels}
    names = args.cases or [c.name for c in dataset.cases if c.complete]
    cases, per_case = [], []
    for i, name in enumerate(names):
        case = dataset.case(name)
        if not case.complete:
            log(f"error: case {name} lacks files")
            return 2
        volumes = [read_volume(p) for p in case.images]
        reference = read_volume(case.label)
        if not reference.grid.same_as(volumes[0].grid):
            reference = resample(reference, volumes[0].grid, "nearest")
        start = time.perf_counter()
        result = segment(volumes, bundle, SegmentationOptions(device=args.device, threads=args.threads,
                                                              allow_empty=True))
        seconds = time.perf_counter() - start
        spacing_kji = volumes[0].spacing[::-1]
        metrics = volume_metrics(result.labels.array, reference.array, labels, spacing_kji)
        per_case.append(metrics)
        cases.append({"case": name, "seconds": round(seconds, 2), "warnings": list(result.warnings),
                      "metrics": {k: v.as_dict() for k, v in metrics.items()}})
        log(f"evaluating {i + 1}/{len(names)}: {name} ({seconds:.1f} s) "
            + ", ".join(f"{k} Dice {v.dice:.3f} HD95 {_mm(v.hd95)}" for k, v in metrics.items()))
    report = {"bundle": {"id": bundle.card.id, "version": bundle.card.version, "path": str(Path(args.bundle))},
              "dataset": dataset.name, "dataset_path": str(dataset.root), "labels": labels,
              "summary": summarize(per_case), "cases": cases,
              "definitions": "see medsegai_training.metrics: distances in mm on the input grid; null = undefined "
                             "(HD95/ASSD when exactly one mask is empty; sensitivity and volume error when the "
                             "reference is empty)"}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown_report(report))
    log(f"wrote {out / 'report.md'} and {out / 'report.json'}")
    return 0


def _mm(value) -> str:
    return "n/a" if value is None else f"{value:.2f} mm"


def _num(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_report(report: dict) -> str:
    names = {"dice": "Dice", "hd95": "HD95 (mm)", "hd": "HD (mm)", "assd": "ASSD (mm)", "sensitivity": "Sensitivity",
             "specificity": "Specificity", "volume_error": "Volume error"}
    lines = [f"# Evaluation of {report['bundle']['id']} {report['bundle']['version']}", "",
             f"Data set: {report['dataset']} ({len(report['cases'])} case(s)). Segmented with "
             "`MedSegAILib.pipeline.segment`; metrics on each input's own grid, distances in mm. "
             "n/a: undefined (one mask empty, or no reference voxels).", "", "## Summary (mean ± sd over cases)", "",
             "| label | " + " | ".join(names.values()) + " |", "|---" * (len(names) + 1) + "|"]
    for label, metrics in report["summary"].items():
        cells = []
        for key in names:
            m = metrics[key]
            cell = f"{m['mean']:.3f} ± {m['std']:.3f}" if m["n"] else "n/a"
            if m["undefined"]:
                cell += f" ({m['undefined']} n/a)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Per case", "", "| case | label | " + " | ".join(names.values()) + " | volume pred / ref (ml) |",
              "|---" * (len(names) + 3) + "|"]
    for case in report["cases"]:
        for label, m in case["metrics"].items():
            lines.append(f"| {case['case']} | {label} | " + " | ".join(_num(m[k]) for k in names)
                         + f" | {m['volume_pred_ml']:.2f} / {m['volume_ref_ml']:.2f} |")
    warnings = [(c["case"], w) for c in report["cases"] for w in c["warnings"]]
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {case}: {w}" for case, w in warnings]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medsegai-train", description="Train MedSegAI models on MSD / nnU-Net style "
                                                                   "data sets and export them as bundles.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="check a data set (geometry, labels, missing files, statistics)")
    c.add_argument("dataset", type=Path)
    c.add_argument("--json", type=Path, help="also write the report as JSON")
    c.add_argument("-v", "--verbose", action="store_true", help="print each case as it is checked")
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("plan", help="fingerprint a data set and write a training plan (JSON)")
    c.add_argument("dataset", type=Path)
    c.add_argument("-o", "--output", type=Path, required=True, help="plan file to write")
    c.add_argument("--memory-mb", type=float, default=4096, help="training memory budget (default 4096)")
    c.add_argument("--base-filters", type=int, default=32)
    c.add_argument("--max-filters", type=int, default=320)
    c.add_argument("--max-stages", type=int, default=5)
    c.add_argument("--max-batch", type=int, default=16)
    c.add_argument("--iterations", type=int, default=1000)
    c.add_argument("--model-id", help="bundle id (default: from the data set name)")
    c.set_defaults(func=cmd_plan)

    c = sub.add_parser("train", help="train a plan on a data set")
    c.add_argument("dataset", type=Path)
    c.add_argument("--plan", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs)")
    c.add_argument("--iterations", type=int, help="override the plan's iterations")
    c.add_argument("--seed", type=int, help="override the plan's seed")
    c.add_argument("--cases", nargs="+", help="train on these cases (default: the plan's)")
    c.add_argument("--threads", type=int, help="torch CPU threads (default: physical cores)")
    group = c.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    group.add_argument("--restart", action="store_true", help="discard checkpoints and start over")
    c.set_defaults(func=cmd_train)

    c = sub.add_parser("export", help="export a run's newest checkpoint as a bundle")
    c.add_argument("run_dir", type=Path)
    c.add_argument("--out", type=Path, required=True, help="bundle folder (or .zip)")
    c.add_argument("--metrics", type=Path, help="an evaluation report.json whose means go into the card")
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(func=cmd_export)

    c = sub.add_parser("evaluate", help="segment data set cases with a bundle and report metrics")
    c.add_argument("bundle", type=Path)
    c.add_argument("dataset", type=Path)
    c.add_argument("--cases", nargs="+", help="case names (default: all complete cases)")
    c.add_argument("-o", "--output", type=Path, required=True, help="report folder (report.md, report.json)")
    c.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    c.add_argument("--threads", type=int)
    c.set_defaults(func=cmd_evaluate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args))
    except (DatasetError, MedSegAIError, ValueError, FileExistsError) as exc:
        log(f"error: {exc}")  # the core's errors print their hint too
        return 2


if __name__ == "__main__":
    sys.exit(main())
