"""The resolution ceiling: the Dice that reference labels keep after the model grid's round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegAILib.image import Volume
from medsegai_training.cli import main as train_cli
from medsegai_training.resolution_ceiling import ceiling_notes, label_ceilings, main, round_trip
from msd_support import to_image, write_dataset


def ball_volume(radius_mm: float = 20.0, size: int = 64, flip_x: bool = False) -> Volume:
    """A ball label (value 1) with a thin slab (value 2, 2 mm thick) beside it, 1 mm voxels."""
    k, j, i = np.mgrid[0:size, 0:size, 0:size].astype(float)
    labels = np.zeros((size,) * 3, np.uint8)
    labels[(i - 28.3) ** 2 + (j - 31.7) ** 2 + (k - 30.2) ** 2 <= radius_mm ** 2] = 1
    labels[50:52, 5:60, 5:60] = 2
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    if flip_x:  # the same physical labels stored with i running right to left
        labels = labels[:, :, ::-1].copy()
        affine[0, 0], affine[0, 3] = -1.0, size - 1.0
    return Volume(labels, affine)


def test_native_spacing_keeps_every_voxel():
    volume = ball_volume()
    assert np.array_equal(round_trip(volume, [1.0, 1.0, 1.0], 1), volume.array == 1)
    assert label_ceilings(volume, [1.0, 1.0, 1.0], [1, 2, 7]) == {1: 1.0, 2: 1.0, 7: 1.0}  # 7: absent


def test_coarser_grids_cost_more_and_thin_structures_most():
    volume = ball_volume()
    at3, at6 = label_ceilings(volume, [3.0] * 3, [1, 2]), label_ceilings(volume, [6.0] * 3, [1, 2])
    assert 0.93 < at3[1] < 1.0 and at6[1] < at3[1]
    assert at3[2] < at3[1] - 0.1  # a 2 mm slab on a 3 mm grid loses far more than the ball
    assert at6[2] < at3[2]


def test_the_stored_orientation_does_not_change_the_ceiling():
    plain, flipped = ball_volume(), ball_volume(flip_x=True)
    assert label_ceilings(plain, [3.0, 2.0, 2.5], [1, 2]) == pytest.approx(
        label_ceilings(flipped, [3.0, 2.0, 2.5], [1, 2]), abs=1e-3)


def test_ceiling_notes_name_only_the_low_labels():
    rows = [{"spacing": [3.0, 3.0, 3.0], "dice": {"ball": 0.98, "slab": 0.41}}]
    notes = ceiling_notes(rows)
    assert len(notes) == 1 and "slab 0.410" in notes[0] and "ball" not in notes[0]
    assert ceiling_notes([{"spacing": [1, 1, 1], "dice": {"ball": 0.99}}]) == []


def test_plan_reports_the_ceiling_of_its_spacing(tmp_path, capsys):
    ds = write_dataset(tmp_path / "ds", cases=3, size=(24, 24, 24))
    plan_path = tmp_path / "plan.json"
    assert train_cli(["plan", str(ds), "-o", str(plan_path), "--memory-mb", "256", "--base-filters", "4",
                      "--max-stages", "3", "--ceiling-cases", "1"]) == 0
    plan = json.loads(plan_path.read_text())
    ceiling = plan["resolution_ceiling"]
    assert ceiling["cases"] == ["case_000"]
    spacings = [row["spacing"] for row in ceiling["by_spacing"]]
    assert spacings[0] == plan["preprocessing"]["target_spacing"] and len(spacings) == 3
    dice = [row["dice"]["sphere"] for row in ceiling["by_spacing"]]
    assert dice[0] == 1.0 and dice[2] < dice[0]  # the planned spacing is the data's own
    assert "resolution ceiling at" in capsys.readouterr().out

    assert train_cli(["plan", str(ds), "-o", str(plan_path), "--memory-mb", "256", "--base-filters", "4",
                      "--max-stages", "3", "--ceiling-cases", "0"]) == 0
    assert "resolution_ceiling" not in json.loads(plan_path.read_text())


def test_command_line(tmp_path, capsys):
    path = tmp_path / "labels.nrrd"
    volume = ball_volume()
    sitk.WriteImage(to_image(volume.array, (1.0, 1.0, 1.0)), str(path))
    assert main([str(path), "--spacing", "3", "--spacing", "1", "1", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path} at [3.0, 3.0, 3.0] mm: 1: 0.9") and out[1].endswith("1: 1.0000, 2: 1.0000")
    assert main([str(path), "--spacing", "3", "2"]) == 2
    assert "one or three positive numbers" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.nrrd"), "--spacing", "3"]) == 2
    assert "input not found" in capsys.readouterr().err
