"""MedSegAI's closed surfaces against Slicer's own closed-surface conversion
(vtkBinaryLabelmapToClosedSurfaceConversionRule in slicer-core)."""

from __future__ import annotations

import numpy as np
import pytest

import slicer_helpers as sh
from MedSegAILib.surfaces import SurfaceParameters, label_surface, surface_area_volume, surface_points
from testing_support import volume_on

pytestmark = pytest.mark.slicer

SHAPE = (20, 30, 40)
CENTRE_IJK = (20, 15, 10)


def sphere(geometry: str):
    """Sphere r = 8 mm around voxel (20, 15, 10). On "lps_aniso" the grid is
    IJK->RAS diag(-0.8, -0.9, 2.5) with origin (100, 50, -30)."""
    volume = volume_on(geometry, SHAPE)
    return sh.ball(volume, 8.0, CENTRE_IJK).astype(np.uint8), volume.ijk_to_ras


def on_border():
    """A box touching the i = 0 and k = 0 faces (Slicer pads the image before contouring)."""
    volume = volume_on("oblique", SHAPE)
    labels = np.zeros(SHAPE, np.uint8)
    labels[0:4, 5:12, 0:6] = 2
    return labels, volume.ijk_to_ras


def multi_label():
    """A sphere split into labels 1 and 4 (a shared face), plus the border box as label 2."""
    labels, ijk_to_ras = on_border()
    ball = sh.ball(volume_on("oblique", SHAPE), 8.0, CENTRE_IJK)
    labels[ball] = 1
    labels[ball & (np.arange(SHAPE[2]) >= 24)] = 4
    return labels, ijk_to_ras


CASES = {
    "sphere_lps_aniso": lambda: sphere("lps_aniso"),
    "sphere_oblique": lambda: sphere("oblique"),
    "sphere_flipped_si": lambda: sphere("flipped_si"),
    "on_border": on_border,
    "multi_label": multi_label,
}
PARAMETERS = {
    "default": SurfaceParameters(),
    "no_smoothing": SurfaceParameters(smoothing_factor=0.0),
    "decimation_0.3": SurfaceParameters(decimation_factor=0.3),
}


@pytest.mark.parametrize("params", PARAMETERS.values(), ids=PARAMETERS.keys())
@pytest.mark.parametrize("case", CASES)
def test_surface_equals_slicers_closed_surface(slicer_scene, case, params):
    labels, ijk_to_ras = CASES[case]()
    seg_node = sh.import_label_map(slicer_scene, labels, ijk_to_ras)
    theirs = sh.closed_surfaces(seg_node, params.smoothing_factor, params.decimation_factor)
    assert sorted(theirs) == sorted(int(v) for v in np.unique(labels) if v)
    for label, their_poly in theirs.items():
        our_poly = label_surface(labels, ijk_to_ras, label, params)
        assert our_poly.GetNumberOfPolys() > 0
        assert (our_poly.GetNumberOfPoints(), our_poly.GetNumberOfPolys()) == \
               (their_poly.GetNumberOfPoints(), their_poly.GetNumberOfPolys()), f"label {label}"
        np.testing.assert_allclose(surface_area_volume(our_poly), sh.mass_properties(their_poly), rtol=1e-6,
                                   err_msg=f"label {label}: (area mm², volume mm³)")
        # the same pipeline gives the same points in the same order
        np.testing.assert_allclose(surface_points(our_poly), surface_points(their_poly), rtol=0, atol=1e-9)


def test_sphere_reference_numbers(slicer_scene):
    """Numbers measured once with slicer-core 5.13 (Slicer >= 5.8 smoothing: 20 + 40 f iterations)."""
    labels, ijk_to_ras = sphere("lps_aniso")
    assert labels.sum() == 1187
    (theirs,) = sh.closed_surfaces(sh.import_label_map(slicer_scene, labels, ijk_to_ras)).values()
    ours = label_surface(labels, ijk_to_ras, 1)
    for poly in (ours, theirs):
        assert (poly.GetNumberOfPoints(), poly.GetNumberOfPolys()) == (942, 1880)
        area, volume = surface_area_volume(poly)
        assert volume == pytest.approx(2063.5636, abs=1e-4)
        assert area == pytest.approx(789.3449, abs=1e-4)


def test_surface_point_data_is_slicers(slicer_scene):
    """Slicer's closed surfaces carry only the "Normals" point array: the conversion rule removes
    the label image's scalars ("ImageScalars") that flying edges copies onto the points."""
    labels, ijk_to_ras = sphere("oblique")
    (theirs,) = sh.closed_surfaces(sh.import_label_map(slicer_scene, labels, ijk_to_ras)).values()
    ours = label_surface(labels, ijk_to_ras, 1)
    assert sh.point_array_names(theirs) == ["Normals"]
    assert sh.point_array_names(ours) == sh.point_array_names(theirs)
