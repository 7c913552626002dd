"""The model catalog: bundles shipped with MedSegAI plus the user's own models folder."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from ..errors import BundleError
from .bundle import CARD_FILE, Bundle
from .card import ModelCard, load_card_text

SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"


def default_user_models_dir() -> Path:
    """Per-user models folder (``~/.medsegai/models``); never inside the installation, which
    updates replace."""
    return Path.home() / ".medsegai" / "models"


def _semver_key(version: str) -> tuple:
    core, _, pre = version.partition("-")
    nums = tuple(int(x) for x in core.split("."))
    # a release sorts after its pre-releases
    return nums + ((1,) if not pre else (0, pre))


@dataclass(frozen=True)
class CatalogEntry:
    path: Path
    card: ModelCard
    source: str  # "shipped" or "user"

    def open(self) -> Bundle:
        return Bundle.open(self.path)


@dataclass(frozen=True)
class CatalogProblem:
    path: Path
    message: str


class Catalog:
    """Lists the bundles (folders or zips) in a list of directories.

    Listing reads only the cards; checksums are verified when a bundle is opened for use.

    Example:
        >>> catalog = Catalog.default()
        >>> bundle = catalog.get("medsegai-ct-chest")   # latest version  # doctest: +SKIP
    """

    def __init__(self, directories: list[tuple[Path, str]]) -> None:
        self.directories = [(Path(d), s) for d, s in directories]

    @classmethod
    def default(cls, user_dir: Path | None = None, extra_dirs: list[Path] | None = None) -> "Catalog":
        dirs = [(SHIPPED_MODELS_DIR, "shipped"), (user_dir or default_user_models_dir(), "user")]
        dirs += [(Path(d), "user") for d in extra_dirs or []]
        return cls(dirs)

    def scan(self) -> tuple[list[CatalogEntry], list[CatalogProblem]]:
        entries, problems = [], []
        for directory, source in self.directories:
            if not directory.is_dir():
                continue
            for path in sorted(directory.iterdir()):
                if path.name.startswith("."):
                    continue
                if not ((path.is_dir() and (path / CARD_FILE).is_file()) or path.suffix == ".zip"):
                    continue
                try:
                    card = Bundle.open(path).card if path.suffix == ".zip" else load_card_text(
                        (path / CARD_FILE).read_text(encoding="utf-8"), str(path / CARD_FILE))
                    entries.append(CatalogEntry(path, card, source))
                except BundleError as exc:
                    problems.append(CatalogProblem(path, exc.message))
        entries.sort(key=lambda e: (e.card.id, _semver_key(e.card.version)))
        return entries, problems

    def entries(self) -> list[CatalogEntry]:
        return self.scan()[0]

    def find(self, model_id: str, version: str | None = None) -> CatalogEntry:
        matches = [e for e in self.entries() if e.card.id == model_id and (version is None or e.card.version == version)]
        if not matches:
            known = sorted({e.card.id for e in self.entries()})
            close = difflib.get_close_matches(model_id.lower(), known, n=3, cutoff=0.6)
            hint = ("did you mean: " + ", ".join(close)) if close else (
                "installed models: " + (", ".join(known) or "none") + "; import one with 'medsegai models import'")
            what = f"{model_id} {version}" if version else model_id
            raise BundleError(f"unknown model {what!r}", hint)
        return matches[-1]

    def get(self, model_id_or_path: str, version: str | None = None) -> Bundle:
        """Open (and verify) a bundle by id, or by path when given one."""
        path = Path(model_id_or_path)
        if path.exists() and (path.is_dir() or path.suffix == ".zip"):
            return Bundle.open(path)
        return self.find(model_id_or_path, version).open()
