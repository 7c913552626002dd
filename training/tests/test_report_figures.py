"""Report figures: learning curves and radiological overlays as PNG files."""

from __future__ import annotations

import numpy as np
import pytest

from medsegai_training.report_figures import plot_learning_curves, plot_overlay
from training_support import tiny_case

pytest.importorskip("matplotlib")


def test_learning_curves_with_and_without_validation(tmp_path):
    losses = [{"iteration": i, "loss": 1.0 / i, "lr": 1e-3, "seconds": i} for i in range(2, 12, 2)]
    validations = [{"iteration": i, "val_dice": {"liver": 0.1 * i, "spleen": 0.05 * i}, "val_mean_dice": 0.075 * i,
                    "seconds": i} for i in (4, 8)]
    for name, records in (("loss.png", losses), ("both.png", losses + validations)):
        png = plot_learning_curves(records, tmp_path / name, "run")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "both.png").stat().st_size > (tmp_path / "loss.png").stat().st_size


def test_overlay_is_radiological(tmp_path):
    """The synthetic CT is stored LPS; its bright blob (label 1, red) lies on the patient's right, so
    in the axial panel (the left third of the figure) it is drawn left of the dark blob (label 2, blue)."""
    from matplotlib.image import imread

    case = tiny_case()
    labels = case.reference.array
    png = plot_overlay(case.volumes[0].array, labels, labels, case.volumes[0].grid,
                       [(1, "bright", (255, 0, 0)), (2, "dark", (0, 0, 255))], tmp_path / "overlay.png", "synthetic")
    pixels = imread(png)[..., :3]
    axial = pixels[:, : pixels.shape[1] // 3]
    red = np.nonzero((axial[..., 0] > 0.9) & (axial[..., 1] < 0.2) & (axial[..., 2] < 0.2))
    blue = np.nonzero((axial[..., 2] > 0.9) & (axial[..., 0] < 0.2) & (axial[..., 1] < 0.2))
    assert red[1].size > 50 and blue[1].size > 50
    assert red[1].mean() < blue[1].mean()
