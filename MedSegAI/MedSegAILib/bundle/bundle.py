"""Model bundles: a model card, safe weights and a SHA-256 for every file.

Layout (a folder, or the same files in a ``.zip``, optionally under one top-level folder)::

    model.json            the model card (see ``model_card.schema.json``)
    weights.safetensors   tensors only: loading them cannot execute code
    SHA256SUMS            ``<sha256>  <file>`` lines for every other file (``sha256sum -c`` format)

:meth:`Bundle.open` verifies every checksum before anything is used; an extra, missing or
changed file is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from ..errors import BundleError, BundleIntegrityError
from ..fileio import make_shareable, write_bytes_atomic
from .card import ModelCard, load_card_text

if TYPE_CHECKING:  # torch loads in seconds; listing and verifying bundles does not need it
    import torch

CARD_FILE = "model.json"
CHECKSUM_FILE = "SHA256SUMS"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_members(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
        tops = {name.split("/", 1)[0] for name in members}
        if CARD_FILE not in members and len(tops) == 1 and all("/" in n for n in members):
            top = tops.pop() + "/"
            members = {n[len(top):]: data for n, data in members.items()}
        return members
    if path.exists():
        raise BundleError(f"{path} is neither a bundle folder nor a zip file", "give a bundle folder or a .zip")
    raise BundleError(f"model bundle not found: {path}", "check the path, or run 'medsegai models list'")


def _parse_checksums(text: str, source: str) -> dict[str, str]:
    sums = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise BundleIntegrityError(f"{source}: line {n} of {CHECKSUM_FILE} is malformed", "re-download the bundle")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def verify_members(members: dict[str, bytes], source: str) -> None:
    """Check that every file is listed in SHA256SUMS with a matching digest, and nothing else."""
    if CHECKSUM_FILE not in members:
        raise BundleIntegrityError(f"{source} has no {CHECKSUM_FILE}", "only bundles with checksums are loaded; re-export it")
    sums = _parse_checksums(members[CHECKSUM_FILE].decode("utf-8", "replace"), source)
    present = set(members) - {CHECKSUM_FILE}
    for name in sorted(set(sums) - present):
        raise BundleIntegrityError(f"{source}: file {name} listed in {CHECKSUM_FILE} is missing", "re-download the bundle")
    for name in sorted(present - set(sums)):
        raise BundleIntegrityError(
            f"{source}: file {name} is not listed in {CHECKSUM_FILE} (added after export?)", "remove it or re-export the bundle")
    for name in sorted(present):
        if sha256_hex(members[name]) != sums[name]:
            raise BundleIntegrityError(
                f"{source}: {name} does not match its SHA-256 (corrupted or modified)",
                "re-download or re-import the original bundle; do not edit bundle files by hand",
            )


@dataclass
class Bundle:
    """A verified model bundle held in memory (bundles are small: weights stay under 20 MB)."""

    path: Path
    card: ModelCard
    members: dict[str, bytes]

    @classmethod
    def open(cls, path: str | Path) -> "Bundle":
        return cls.from_members(Path(path), _read_members(Path(path)))

    @classmethod
    def from_members(cls, path: Path, members: dict[str, bytes]) -> "Bundle":
        """The bundle of these files, verified (checksums, card, every file the card names)."""
        source = f"bundle {path}"
        if CARD_FILE not in members:
            raise BundleError(f"{source} has no {CARD_FILE}", "a bundle holds model.json, the weights and SHA256SUMS")
        verify_members(members, source)
        card = load_card_text(members[CARD_FILE].decode("utf-8"), f"{source}/{CARD_FILE}")
        named = {card.weights_file} | {v["weights"] for v in card.variants.values() if "weights" in v}
        named |= {f for f in [card.onnx_graph_file, *(v.get("onnx_graph") for v in card.variants.values())] if f}
        for name in sorted(named - set(members)):
            raise BundleError(f"{source}: file {name} named in the card is missing", "re-export the bundle")
        return cls(path, card, members)

    def state_dict(self, weights_file: str | None = None) -> dict[str, torch.Tensor]:
        """The network weights, read with safetensors (no pickle, no code execution)."""
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        name = weights_file or self.card.weights_file
        try:
            return load_safetensors(self.members[name])
        except (SafetensorError, ValueError) as exc:
            raise BundleError(f"bundle {self.path}: cannot read weights {name}: {exc}", "re-export the bundle") from None

    def build_network(self, card: ModelCard | None = None) -> torch.nn.Module:
        """Construct the card's network and load its weights strictly; returns it in eval mode."""
        from ..networks import build_network

        card = card or self.card
        net = build_network(card.network.name, card.network.args)
        problem = ""
        try:
            result = net.load_state_dict(self.state_dict(card.weights_file), strict=False)
            stored_aliases = _alias_names(net.state_dict())
            missing = [k for k in result.missing_keys if k not in stored_aliases]
            if missing or result.unexpected_keys:
                problem = f"missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}"
        except RuntimeError as exc:
            problem = str(exc).strip().splitlines()[0]
        if problem:
            raise BundleError(
                f"bundle {self.path}: weights do not fit network {card.network.name}: {problem}",
                "the card's network arguments and the weights come from different exports; re-export the bundle",
            )
        return net.eval()


def unique_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop names that alias another tensor (e.g. MONAI's DynUNet registers each block twice).

    safetensors stores each tensor once; on load the alias is filled through the shared module.
    The first name in sorted order is kept.
    """
    return {k: v for k, v in sorted(state_dict.items()) if k not in _alias_names(state_dict)}


def _alias_names(state_dict: dict[str, torch.Tensor]) -> set[str]:
    """Names whose tensor shares storage with a name that sorts earlier."""
    seen: dict[tuple, str] = {}
    aliases = set()
    for name, tensor in sorted(state_dict.items()):
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and key in seen:
            aliases.add(name)
        else:
            seen[key] = name
    return aliases


def weights_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    """A state dict as the bytes of a ``.safetensors`` file, each aliased tensor once."""
    from safetensors.torch import save as save_safetensors

    return save_safetensors({k: v.detach().contiguous().cpu() for k, v in unique_tensors(state_dict).items()})


def write_bundle(destination: str | Path, card_document: dict, state_dicts: dict[str, dict[str, torch.Tensor]],
                 extra_files: dict[str, bytes] | None = None) -> Path:
    """Write a bundle folder (or a ``.zip`` when ``destination`` ends with .zip) and verify it.

    ``state_dicts`` maps weights file names (``card['files']['weights']`` and any variant's) to
    state dicts. The card is validated first, so an invalid bundle is never written.
    """
    members = {CARD_FILE: (json.dumps(card_document, indent=2) + "\n").encode("utf-8")}
    members.update({name: weights_bytes(sd) for name, sd in state_dicts.items()})
    members.update(extra_files or {})
    return write_bundle_members(destination, members)


def write_bundle_members(destination: str | Path, members: dict[str, bytes]) -> Path:
    """Write the files of a bundle (card, weights, graphs; ``SHA256SUMS`` is added) as a folder or
    ``.zip``, all at once, and verify it. The bundle is verified in memory first."""
    destination = Path(destination)
    members = {n: data for n, data in members.items() if n != CHECKSUM_FILE}
    members[CHECKSUM_FILE] = "".join(f"{sha256_hex(members[n])}  {n}\n" for n in sorted(members)).encode()
    Bundle.from_members(destination, members)  # nothing is written for a bundle that would not open
    if destination.suffix == ".zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(members):
                zf.writestr(name, members[name])
        write_bytes_atomic(destination, buffer.getvalue())
    else:
        if destination.exists():
            raise BundleError(f"{destination} already exists", "choose a new folder or remove the old bundle first")
        staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=destination.parent if destination.parent.exists() else None))
        for name, data in members.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        destination.parent.mkdir(parents=True, exist_ok=True)
        make_shareable(staging)
        shutil.move(str(staging), str(destination))
    Bundle.open(destination)
    return destination


def import_bundle(source: str | Path, models_dir: str | Path, replace_existing: bool = False) -> Path:
    """Verify a bundle (zip or folder) and install it as ``<models_dir>/<id>-<version>/``.

    Works offline. Refuses an installed id+version unless ``replace_existing``.
    """
    bundle = Bundle.open(source)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / f"{bundle.card.id}-{bundle.card.version}"
    if target.exists() and not replace_existing:
        raise BundleError(
            f"model {bundle.card.id} {bundle.card.version} is already installed at {target}",
            "use --replace to overwrite it, or bump the bundle's version",
        )
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=models_dir))
    try:
        for name, data in bundle.members.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        Bundle.open(staging)
        make_shareable(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target
