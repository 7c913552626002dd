"""Shared test helpers: cards of models whose output is known exactly, and volumes with tricky geometry.

Imported by the tests directly (``from testing_support import ...``); fixtures live in conftest.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from MedSegAILib.geometry import compose_ijk_to_ras
from MedSegAILib.image import Volume
from MedSegAILib.networks import register_network

REPO = Path(__file__).resolve().parents[1]

ANATOMY = ["SCT", "123037004", "Anatomical Structure"]


class ForwardDifferenceX(torch.nn.Module):
    """Test network sensitive to orientation: label 1 where the next voxel towards patient Right
    (+x of the network's RAS-aligned input) is brighter by more than 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("dummy", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = torch.zeros_like(x[:, :1])
        diff[:, :, :-1] = x[:, :1, 1:] - x[:, :1, :-1]
        return torch.cat([torch.zeros_like(diff), (diff - 0.5) * 10], dim=1)


register_network("test_forward_difference_x")(lambda in_channels=1, out_channels=2: ForwardDifferenceX())


def label_entry(value: int, name: str, type_code: list[str], color=(200, 100, 50), modifier=None, **extra) -> dict:
    term = {"category": ANATOMY, "type": type_code}
    if modifier:
        term["modifier"] = modifier
    return {"value": value, "name": name, "color": list(color), "terminology": term, **extra}


BASE_CARD = {
    "format_version": 1,
    "id": "test-window",
    "version": "1.0.0",
    "title": "Intensity-window test model",
    "description": "Labels voxels by intensity windows; output known exactly. For tests only.",
    "modality": "CT",
    "inputs": [{"name": "CT", "modality": "CT"}],
    "labels": [label_entry(1, "Liver", ["SCT", "10200004", "Liver"], (221, 130, 101))],
    "network": {"name": "intensity_window", "args": {"in_channels": 1, "out_channels": 2, "windows": [[50, 150]]}},
    "preprocessing": {"target_spacing": None, "normalization": {"type": "none"}},
    "inference": {"patch_size": [32, 32, 32], "overlap": 0.25},
    "license": {"name": "Apache-2.0", "commercial_use": True},
    "files": {"weights": "weights.safetensors"},
}


def make_card(**overrides) -> dict:
    card = copy.deepcopy(BASE_CARD)
    card.update(copy.deepcopy(overrides))
    return card


def rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [x for x in range(3) if x != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


# (name, spacing i/j/k, RAS direction columns, origin)
GEOMETRIES = {
    "ras_iso": ((1.0, 1.0, 1.0), np.eye(3), (0.0, 0.0, 0.0)),
    "lps_aniso": ((0.8, 0.9, 2.5), np.diag([-1.0, -1.0, 1.0]), (100.0, 50.0, -30.0)),
    "flipped_si": ((1.2, 1.0, 3.0), np.diag([1.0, -1.0, -1.0]), (-40.0, 80.0, 60.0)),
    "permuted_sagittal": ((1.0, 0.7, 1.5), np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float), (12.5, -7.0, 33.0)),
    "oblique": ((0.9, 1.1, 2.0), rotation(2, 20) @ rotation(0, 12) @ np.diag([-1.0, 1.0, 1.0]), (-25.0, 14.0, -8.0)),
}


def volume_on(geometry: str, shape_kji=(24, 30, 36)) -> Volume:
    spacing, direction, origin = GEOMETRIES[geometry]
    return Volume(np.zeros(shape_kji, np.int16), compose_ijk_to_ras(spacing, direction, origin))


def ras_of_voxels(volume: Volume) -> np.ndarray:
    """RAS coordinates of every voxel centre, shape (k, j, i, 3)."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in volume.array.shape], indexing="ij")
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(float)
    return (ijk1 @ volume.ijk_to_ras.T)[..., :3]


def asymmetric_structure(volume: Volume) -> np.ndarray:
    """A physical L-shaped structure (no mirror symmetry) at the volume centre, voxelised."""
    return asymmetric_structure_at(volume, ras_of_voxels(volume).reshape(-1, 3).mean(axis=0))


def asymmetric_structure_at(volume: Volume, centre) -> np.ndarray:
    """The L-shaped structure centred at RAS ``centre``, voxelised on ``volume``'s grid."""
    d = ras_of_voxels(volume) - np.asarray(centre)
    bar = (np.abs(d[..., 0]) < 7) & (np.abs(d[..., 1]) < 4) & (np.abs(d[..., 2]) < 6)
    foot = (d[..., 0] > 0) & (d[..., 0] < 12) & (np.abs(d[..., 1]) < 4) & (d[..., 2] > 2) & (d[..., 2] < 6)
    return bar | foot
