"""U-Net vs DeepLabv3+: one table from the summaries the recipes leave in their work folders.

Each recipe run writes ``summary.json`` (network, training time, bundle size, scores on data it
never trained on, CPU time per volume). This module reads them and writes one Markdown table and
one JSON file, a row per task and network, best mean Dice in bold per task::

    .venv/bin/python -m medsegai_training.comparison .cache/training --out training/results/comparison.md

Work folders are caches, and a fresh machine has none of them; the table is the record. So the rows
already in ``--out``'s JSON are kept: a summary replaces the row of the same task, network and
evaluation and adds the others (``--replace`` starts from the summaries alone).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from MedSegAILib.fileio import write_text_atomic


@dataclass(frozen=True)
class Row:
    task: str
    network: str
    evaluated_on: str
    labels: int
    mean_dice: float
    min_dice: float
    mean_hd95_mm: float | None
    cpu_seconds_per_volume: float
    train_seconds: float
    iterations: int
    bundle_mb: float


def rows_of(summary: dict) -> list[Row]:
    """The table rows of one recipe summary (one row per reference the model was scored against)."""
    common = dict(task=summary["task"], network=summary["network"], train_seconds=summary["train_seconds"],
                  iterations=summary["iterations"], bundle_mb=round(summary["bundle_bytes"] / 2**20, 2))
    if "held_out" not in summary:  # fit-check-only recipes (the chest CT demo) report Dice per label
        dice = list(summary["dice"].values())
        return [Row(evaluated_on="training subject (fit check only)", labels=len(dice), mean_dice=float(np.mean(dice)),
                    min_dice=float(np.min(dice)), mean_hd95_mm=None,
                    cpu_seconds_per_volume=summary["segment_seconds"], **common)]
    rows = []
    # one held-out case (older summaries) or a list of them (the brain-extraction folds)
    held_out = summary["held_out"] if isinstance(summary["held_out"], list) else [summary["held_out"]]
    trained = summary.get("train_heads")
    for case in held_out:
        for reference, per_label in case["scores"].items():
            dice = [v["dice"] for v in per_label.values()]
            hd95 = [v["hd95"] for v in per_label.values() if v["hd95"] is not None]
            where = f"{case['case']} vs {reference}" + (f" (trained on {' + '.join(trained)})" if trained else "")
            rows.append(Row(evaluated_on=where, labels=len(dice),
                            mean_dice=round(float(np.mean(dice)), 4), min_dice=round(float(np.min(dice)), 4),
                            mean_hd95_mm=round(float(np.mean(hd95)), 2) if hd95 else None,
                            cpu_seconds_per_volume=case["seconds"], **common))
    return rows


def markdown(rows: list[Row]) -> str:
    best = {}
    for row in rows:
        key = (row.task, row.evaluated_on.split(" vs ")[-1])
        best[key] = max(best.get(key, -1.0), row.mean_dice)
    lines = ["| task | network | evaluated on | labels | mean Dice | min Dice | mean HD95 (mm) | CPU s / volume "
             "| training s | iterations | weights MB |", "|" + "---|" * 11]
    for r in sorted(rows, key=lambda r: (r.task, r.evaluated_on, r.network)):
        dice = f"{r.mean_dice:.4f}"
        if r.mean_dice == best[(r.task, r.evaluated_on.split(' vs ')[-1])]:
            dice = f"**{dice}**"
        hd95 = "-" if r.mean_hd95_mm is None else f"{r.mean_hd95_mm:.2f}"
        lines.append(f"| {r.task} | {r.network} | {r.evaluated_on} | {r.labels} | {dice} | {r.min_dice:.4f} | {hd95} "
                     f"| {r.cpu_seconds_per_volume:.1f} | {r.train_seconds:.0f} | {r.iterations} | {r.bundle_mb:.1f} |")
    return "\n".join(lines) + "\n"


def collect(root: Path) -> list[Row]:
    return [row for path in sorted(root.rglob("summary.json")) for row in rows_of(json.loads(path.read_text()))]


def row_key(row: Row) -> tuple[str, str, str]:
    return row.task, row.network, row.evaluated_on


def merged(kept: Sequence[Row], new: Sequence[Row]) -> list[Row]:
    """``kept`` (an earlier table) updated by ``new``: a new row replaces the kept row with its key
    (task, network, evaluation), the rest are added."""
    rows = {row_key(r): r for r in kept}
    rows.update((row_key(r), r) for r in new)
    return list(rows.values())


def read_rows(path: Path) -> list[Row]:
    """The rows of a table's JSON file (none if there is no file yet)."""
    return [Row(**r) for r in json.loads(path.read_text())] if path.exists() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder searched for recipe summary.json files")
    parser.add_argument("--out", type=Path, help="Markdown file to write (a .json is written beside it)")
    parser.add_argument("--replace", action="store_true",
                        help="drop the rows already in --out's .json instead of updating them")
    args = parser.parse_args(argv)
    rows = collect(args.root)
    if not rows:
        print(f"error: no summary.json under {args.root}; run the recipes first", file=sys.stderr)
        return 2
    if args.out and not args.replace:
        rows = merged(read_rows(args.out.with_suffix(".json")), rows)
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        # the JSON is the record the next run updates: never left half-written
        write_text_atomic(args.out.with_suffix(".json"), json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        write_text_atomic(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
