"""``medsegai-train``: check a data set, plan, train, export and evaluate, from the command line.

    medsegai-train check    DATASET [--json check.json]
    medsegai-train plan     DATASET -o plan.json [--memory-mb 4096] [--base-filters 32] ...
    medsegai-train train    DATASET --plan plan.json --out RUN_DIR [--iterations N] [--resume | --restart]
                            [--folds K --fold I | --val-cases A B ...] [--patience N] [--loss dice_focal] ...
    medsegai-train export   RUN_DIR --out BUNDLE [--overwrite] [--last]
    medsegai-train evaluate BUNDLE [BUNDLE ...] DATASET [--cases A B ...] [--runs RUN_DIR ...] -o REPORT_DIR

DATASET is an MSD / nnU-Net folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``, see
:mod:`.dataset`). The plan is a plain JSON file (:mod:`.planning`) to read and edit before
training. A run folder holds ``plan.json`` (the plan it was trained with), ``run.json``
(provenance), ``train_log.jsonl``, ``tensorboard/``, ``learning_curves.png`` and ``checkpoints/``
(with ``best.pt`` when validated). ``train`` runs under ``torchrun`` too (one process per GPU, or
several CPU processes); only rank 0 prints and writes. The commands are thin: the work is done by
:mod:`.dataset`, :mod:`.planning`, :mod:`.folds`, :mod:`.trainer`, :mod:`.export`, :mod:`.report`
and the core's ``MedSegAILib.pipeline.segment``. Exit status: 0 success, 1 data set problems
(``check``), 2 error.
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
from MedSegAILib.image import read_volume

from .augmentation import AugmentationConfig
from .dataset import DatasetError, check_dataset, load_dataset
from .distributed import DEVICES, is_main_process
from .losses import LOSSES
from .schedule import OPTIMIZERS

RUN_PLAN = "plan.json"
RUN_INFO = "run.json"


def log(text: str) -> None:
    """Print a line (on rank 0 only when started by torchrun)."""
    if is_main_process():
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
    from .resolution_ceiling import ceiling_notes, plan_ceiling

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
    if args.ceiling_cases > 0:
        names = report.usable_cases[:args.ceiling_cases]
        ceiling = plan_ceiling(plan, [read_volume(dataset.case(n).label) for n in names], names)
        plan["resolution_ceiling"] = ceiling
        plan["notes"] += ceiling_notes(ceiling["by_spacing"])
        for row in ceiling["by_spacing"]:
            log(f"resolution ceiling at {row['spacing']} mm (Dice of the reference after the round trip): "
                + ", ".join(f"{name} {d:.3f}" for name, d in row["dice"].items()))
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
    settings.setdefault("validation_padding", plan.get("inference", {}).get("padding", "constant"))
    config = TrainConfig(**settings)
    config = with_overrides(config, **overrides)
    if "log_every" not in plan["training"]:
        config = with_overrides(config, log_every=max(1, min(10, config.iterations // 10)))
    return config


def select_cases(args, plan: dict) -> tuple[list[str], list[str], dict | None]:
    """``(training cases, validation cases, cross-validation record or None)`` from the options:
    ``--folds K --fold I`` (k-fold split of the cases), ``--val-cases``, or no validation."""
    names = list(args.cases or plan["dataset"]["cases"])
    if args.fold is not None and not args.folds:
        raise ValueError("--fold needs --folds")
    if args.folds:
        from .folds import fold_cases

        fold = args.fold or 0
        train, validation = fold_cases(names, args.folds, fold, args.split_seed)
        return train, validation, {"folds": args.folds, "fold": fold, "seed": args.split_seed,
                                   "training_cases": train, "validation_cases": validation}
    validation = list(args.val_cases or [])
    unknown = sorted(set(validation) - set(names))
    if unknown:
        raise ValueError(f"validation cases not among the cases: {', '.join(unknown)}")
    return [n for n in names if n not in validation], validation, None


def _load_cases(dataset, names: list[str], preprocessing, verb: str) -> list:
    from .data import load_case

    cases = []
    start = time.perf_counter()
    for i, source in enumerate(dataset.sources(names) if names else []):
        case = load_case(source, preprocessing)
        cases.append(case)
        log(f"{verb} {i + 1}/{len(names)}: {case.name} -> model grid {list(case.prepared.image.shape[1:])} "
            f"at {case.model_spacing.round(3).tolist()} mm")
    if cases:
        log(f"{len(cases)} case(s) loaded in {time.perf_counter() - start:.1f} s")
    return cases


def cmd_train(args) -> int:
    from MedSegAILib.bundle import parse_card

    from .distributed import session
    from .planning import card_document, read_plan, write_plan
    from .progress import TrainingProgress
    from .trainer import Trainer, run_and_report

    plan = read_plan(args.plan)
    card = parse_card(card_document(plan), f"card of {args.plan}")  # validates the plan's model section
    dataset = load_dataset(args.dataset)
    train_names, validation_names, cross_validation = select_cases(args, plan)
    config = train_config(plan, iterations=args.iterations, threads=args.threads, seed=args.seed, loss=args.loss,
                          optimizer=args.optimizer, learning_rate=args.learning_rate, device=args.device,
                          validate_every=args.validate_every, early_stopping_patience=args.patience,
                          tensorboard=False if args.no_tensorboard else None)
    out = Path(args.out)
    if (out / RUN_PLAN).exists() and not (args.resume or args.restart):
        log(f"error: {out} holds a run; pass --resume to continue it or --restart to start over")
        return 2
    bar = TrainingProgress(sys.stderr) if args.progress == "bar" else None

    def say(text: str) -> None:
        if bar is not None:
            bar.clear()
        log(text)

    with session(config.device) as env:
        env.barrier()  # every process has looked at the run folder before rank 0 writes into it
        cases = _load_cases(dataset, train_names, card.preprocessing, "loading")
        validation = _load_cases(dataset, validation_names, card.preprocessing, "loading validation")
        if env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_plan(plan, out / RUN_PLAN)
        trainer = Trainer(plan["network"]["name"], plan["network"]["args"],
                          [(c.prepared.image, c.prepared.labels) for c in cases],
                          np.median([c.model_spacing for c in cases], axis=0), config, out, say,
                          validation_cases=[(c.prepared.image, c.prepared.labels) for c in validation],
                          label_names={label.value: label.name for label in card.labels}, progress=bar)
        result = run_and_report(trainer, say, resume=args.resume, restart=args.restart)
        if result is None:
            return 2
        if env.is_main:
            info = run_record(args, dataset, config, [c.name for c in cases], validation_names, result,
                              env.world_size)
            if cross_validation:
                info["cross_validation"] = cross_validation
            (out / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n")
            log(f"wrote {out / RUN_INFO}; export with: medsegai-train export {out} --out BUNDLE")
            _learning_curves(out, out / "learning_curves.png", out.name)
    return 0


def run_record(args, dataset, config, case_names: list[str], validation_names: list[str], result,
               processes: int) -> dict:
    """``run.json``: the training provenance that goes into the model card."""
    from .recipe import training_record

    data = [{"name": dataset.name, "path": str(dataset.root.resolve()), "subjects": len(case_names),
             "cases": case_names, "license": dataset.licence or "not stated in dataset.json"}]
    command = "medsegai-train " + " ".join(shlex.quote(a) for a in args.argv)
    info = training_record(data, command, config, result, config.threads)
    info["processes"] = processes
    if result.validation:
        info["validation"] = {"cases": validation_names, "best": result.best_validation,
                              "stopped_early": result.stopped_early,
                              "how": "Dice pooled over the validation cases on the model grid (sliding window, overlap "
                                     "0.25); export takes the weights of the best mean Dice (checkpoints/best.pt)"}
    return info


def _learning_curves(run: Path, png: Path, title: str) -> str | None:
    """Plot a run's ``train_log.jsonl`` to ``png``; None (with a note) without matplotlib."""
    from .report_figures import matplotlib_available, plot_learning_curves
    from .run_log import LOG_NAME, read_log

    if not matplotlib_available():
        log("note: no learning curves: matplotlib is not installed (pip install matplotlib)")
        return None
    plot_learning_curves(read_log(run / LOG_NAME), png, title)
    log(f"wrote {png}")
    return str(png)


# ----------------------------------------------------------------------------------------------- export


def cmd_export(args) -> int:
    from MedSegAILib.networks import build_network

    from .checkpoint import best_checkpoint_path, latest_checkpoint, load_checkpoint
    from .export import bundle_size_bytes, export_bundle
    from .planning import card_document, read_plan
    from .report import report_card_metrics

    run = Path(args.run_dir)
    plan = read_plan(run / RUN_PLAN)
    best = best_checkpoint_path(run / "checkpoints")
    checkpoint = best if best.exists() and not args.last else latest_checkpoint(run / "checkpoints")
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
    if checkpoint == best:
        training["checkpoint"]["selected_by"] = "best mean validation Dice"
        log(f"exporting the best validation checkpoint: iteration {saved['iteration']}, mean Dice "
            f"{saved['validation']['mean_dice']:.4f} (--last exports the newest checkpoint instead)")
    metrics = None
    if args.metrics:
        report = json.loads(Path(args.metrics).read_text())
        metrics = report_card_metrics(report)
    bundle = export_bundle(args.out, card_document(plan, training, metrics), network.eval(), overwrite=args.overwrite)
    log(f"exported {bundle.card.summary()}")
    log(f"wrote {bundle.path} ({bundle_size_bytes(bundle.path) / 1024:.0f} KiB, checksums verified)")
    return 0


# --------------------------------------------------------------------------------------------- evaluate


def cmd_evaluate(args) -> int:
    from MedSegAILib.bundle import Bundle

    from .report import evaluate_bundle, make_report, markdown_report, validation_fold
    from .report_figures import matplotlib_available

    dataset = load_dataset(args.dataset)
    bundles = [(Bundle.open(path), Path(path)) for path in args.bundles]
    if len({tuple((x.value, x.name) for x in b.card.labels) for b, _ in bundles}) > 1:
        log("error: the bundles segment different labels")
        return 2
    figures = not args.no_figures and matplotlib_available()
    if not args.no_figures and not figures:
        log("note: no figures: matplotlib is not installed (pip install matplotlib)")
    out = Path(args.output)
    several = len(bundles) > 1
    evaluated = []
    for i, (bundle, _) in enumerate(bundles):
        names = args.cases or validation_fold(bundle) or [c.name for c in dataset.cases if c.complete]
        evaluated.append(evaluate_bundle(bundle, dataset, names, out, i if several else None, args.device,
                                         args.threads, figures, log))
    curves = []
    for run in args.runs if figures and args.runs else []:
        png = _learning_curves(run, out / "figures" / f"learning_curves_{run.name}.png", run.name)
        curves.append(Path(png).relative_to(out).as_posix())
    report = make_report(bundles, evaluated, dataset, curves)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown_report(report))
    log(f"wrote {out / 'report.md'} and {out / 'report.json'}")
    return 0


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
    c.add_argument("--ceiling-cases", type=int, default=2, metavar="N",
                   help="cases whose labels measure the resolution ceiling of the planned spacing (default 2; 0: off)")
    c.set_defaults(func=cmd_plan)

    c = sub.add_parser("train", help="train a plan on a data set (also under torchrun)")
    c.add_argument("dataset", type=Path)
    c.add_argument("--plan", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs)")
    c.add_argument("--iterations", type=int, help="override the plan's iterations")
    c.add_argument("--seed", type=int, help="override the plan's seed")
    c.add_argument("--cases", nargs="+", help="train (and validate) on these cases (default: the plan's)")
    validation = c.add_mutually_exclusive_group()
    validation.add_argument("--folds", type=int, help="k-fold cross-validation: split the cases into K folds ...")
    validation.add_argument("--val-cases", nargs="+", help="validate on these cases (and do not train on them)")
    c.add_argument("--fold", type=int, help="... and train on the others, validating on fold I (default 0)")
    c.add_argument("--split-seed", type=int, default=0, help="seed of the k-fold split (default 0)")
    c.add_argument("--validate-every", type=int, help="iterations between validations (default: the plan's, or 50)")
    c.add_argument("--patience", type=int, help="early stopping after N validations without improvement (0: off)")
    c.add_argument("--loss", choices=list(LOSSES), help="dice_ce (default) or dice_focal")
    c.add_argument("--optimizer", choices=OPTIMIZERS, help="adamw (default) or sgd (Nesterov momentum 0.99)")
    c.add_argument("--learning-rate", type=float, help="override the plan's learning rate (SGD: about 1e-2)")
    c.add_argument("--device", choices=DEVICES, help="auto (default: CUDA when available), cpu or cuda")
    c.add_argument("--threads", type=int, help="torch CPU threads per process (default: physical cores)")
    c.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    c.add_argument("--progress", choices=["bar", "none"], default="bar",
                   help="bar (default: iteration, loss, s/it and ETA on stderr) or none")
    group = c.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    group.add_argument("--restart", action="store_true", help="discard checkpoints and start over")
    c.set_defaults(func=cmd_train)

    c = sub.add_parser("export", help="export a run's best validation (or newest) checkpoint as a bundle")
    c.add_argument("run_dir", type=Path)
    c.add_argument("--out", type=Path, required=True, help="bundle folder (or .zip)")
    c.add_argument("--metrics", type=Path, help="an evaluation report.json whose means go into the card")
    c.add_argument("--last", action="store_true", help="export the newest checkpoint even if best.pt exists")
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(func=cmd_export)

    c = sub.add_parser("evaluate", help="segment data set cases with one bundle, or the bundles of k folds, and "
                                        "report metrics")
    c.add_argument("bundles", type=Path, nargs="+", metavar="BUNDLE",
                   help="bundle(s); several: cross-validation folds, each scored on its own validation fold")
    c.add_argument("dataset", type=Path)
    c.add_argument("--cases", nargs="+", help="case names (default: the bundle's validation fold, else all cases)")
    c.add_argument("--runs", nargs="+", type=Path, help="run folders whose learning curves go into the report")
    c.add_argument("-o", "--output", type=Path, required=True, help="report folder (report.md, report.json, figures/)")
    c.add_argument("--no-figures", action="store_true", help="no overlay or learning-curve PNGs")
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
