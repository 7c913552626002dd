"""Sample volumes named by model cards: files inside installed Python packages, verified by SHA-256,
so a new user can try a model offline with one click."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .bundle.card import ModelCard
from .errors import InputImageError


@dataclass(frozen=True)
class SampleFile:
    name: str
    path: Path
    sha256: str


def locate(package: str, relative_path: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative_path
    return path if path.is_file() else None


def sample_files(card: ModelCard) -> list[SampleFile]:
    """The card's sample volumes that are installed; each is checked against its SHA-256.

    Raises:
        InputImageError: an installed sample file does not match its checksum.
    """
    found = []
    for sample in card.raw.get("sample_data", []):
        path = locate(sample["package"], sample["path"])
        if path is None:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sample["sha256"]:
            raise InputImageError(f"sample {sample['name']} at {path} does not match its SHA-256",
                                  f"reinstall the package {sample['package']}")
        found.append(SampleFile(sample["name"], path, digest))
    return found
