"""The helpers of the mid-sagittal plane robustness report."""

import numpy as np
import pytest

from medsegai_training.midline_robustness import add_ball, true_plane_i, turned


def test_a_plane_turned_about_the_grid_centre_passes_where_rotation_puts_it():
    labels = np.zeros((21, 21, 21), np.uint8)
    labels[:, :, 10] = 1  # the plane i = 10 through the centre
    same, identity = turned(labels, 0, 0)
    np.testing.assert_array_equal(same, labels)
    assert true_plane_i(identity, 10.0, 3.0, 7.0) == pytest.approx(10.0)
    rotated, transform = turned(labels, 90, 0)  # about k: the plane i = 10 becomes j = 10
    assert rotated[:, 10, :].all() and rotated.sum() == labels.sum()
    _, tilted = turned(labels, 0, 30)  # about j: i of the plane changes with k, by tan(30 degrees) per slice
    shift = true_plane_i(tilted, 10.0, 0.0, 14.0) - true_plane_i(tilted, 10.0, 0.0, 10.0)
    assert abs(shift) == pytest.approx(4 * np.tan(np.deg2rad(30)), abs=1e-6)


def test_a_ball_of_the_asked_volume():
    labels = np.zeros((40, 40, 40), np.uint8)
    add_ball(labels, np.eye(4), (20.0, 20.0, 20.0), 8.6, 11)
    assert set(np.unique(labels)) == {0, 11} and np.count_nonzero(labels) / 1000 == pytest.approx(8.6, rel=0.03)
