"""MedSegAI's per-segment measurements against what Slicer computes for the same segmentation:
Segment Statistics' labelmap statistics (vtkImageAccumulate, vtkITKLabelShapeStatistics) and
vtkMassProperties of Slicer's closed surfaces."""

from __future__ import annotations

import numpy as np
import pytest

import slicer_helpers as sh
from MedSegAILib.measurements import measure
from testing_support import volume_on

pytestmark = pytest.mark.slicer

NAMES = {1: "structure", 3: "box", 7: "corner"}


@pytest.mark.parametrize("geometry", ["lps_aniso", "flipped_si", "permuted_sagittal", "oblique"])
def test_measurements_equal_slicers(slicer_scene, geometry):
    volume = volume_on(geometry)
    labels, ijk_to_ras = sh.organs(volume), volume.ijk_to_ras
    rows = {row.label_value: row for row in measure(labels, ijk_to_ras, NAMES)}
    seg_node = sh.import_label_map(slicer_scene, labels, ijk_to_ras)
    ids = sh.segment_ids_by_label(seg_node)
    surfaces = sh.closed_surfaces(seg_node)  # Slicer's default parameters, as SurfaceParameters()
    assert sorted(ids) == sorted(rows) == sorted(NAMES)
    for label, row in rows.items():
        theirs = sh.labelmap_statistics(seg_node, ids[label])
        assert row.voxel_count == theirs.voxel_count == np.count_nonzero(labels == label)
        assert row.volume_mm3 == pytest.approx(theirs.volume_mm3, rel=1e-12)
        # both are the mean of the voxel centres in RAS; only rounding may differ
        np.testing.assert_allclose(row.centroid_ras, theirs.centroid_ras, rtol=0, atol=1e-6)
        area, surface_volume = sh.mass_properties(surfaces[label])
        assert row.surface_area_mm2 == pytest.approx(area, rel=1e-9)
        assert row.surface_volume_mm3 == pytest.approx(surface_volume, rel=1e-9)
        bounds = np.array(surfaces[label].GetBounds()).reshape(3, 2)
        np.testing.assert_allclose(row.bbox_ras_min, bounds[:, 0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(row.bbox_ras_max, bounds[:, 1], rtol=0, atol=1e-9)
