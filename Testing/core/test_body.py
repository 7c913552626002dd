"""Labels that can only lie inside the body lose what a network put in the air around the patient."""

import numpy as np
import pytest
from scipy import ndimage

from MedSegAILib.body import air_reaching_edge, axial_axis, keep_inside_body
from MedSegAILib.bundle import parse_card
from MedSegAILib.errors import BundleError
from MedSegAILib.image import Volume
from MedSegAILib.pipeline import SegmentationOptions, segment

from testing_support import GEOMETRIES, label_entry, make_card, ras_of_voxels, volume_on

LUNG = ["SCT", "39607008", "Lung"]
SHAPE = (34, 44, 50)
# array axis of each test geometry that runs along S (permuted_sagittal stores S along j)
AXIAL_AXIS = {"ras_iso": 0, "lps_aniso": 0, "flipped_si": 0, "permuted_sagittal": 1, "oblique": 0}


def chest_phantom(geometry: str) -> tuple[Volume, np.ndarray]:
    """A body (a soft-tissue cylinder along S) in air, holding two lungs and a trachea that runs up
    and out of the top of the scan, as the trachea of a chest CT does. Returns the volume and its
    air inside the body, which is what a lung model should keep of a network that calls all air lung."""
    vol = volume_on(geometry, SHAPE)
    d = ras_of_voxels(vol) - ras_of_voxels(vol).reshape(-1, 3).mean(axis=0)
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    body = x ** 2 + y ** 2 < 14.0 ** 2
    lungs = (((x - 6.5) ** 2 + y ** 2 < 4.5 ** 2) | ((x + 6.5) ** 2 + y ** 2 < 4.5 ** 2)) & (np.abs(z) < 8.0)
    trachea = (x ** 2 + y ** 2 < 2.0 ** 2) & (z > 0.0)
    inside_air = body & (lungs | trachea)
    vol.array[:] = np.where(body & ~inside_air, 40, np.where(inside_air, -850, -1000))
    return vol, inside_air


def lung_card(inside_body_hu: float | None) -> dict:
    postprocessing = {} if inside_body_hu is None else {"inside_body_hu": inside_body_hu}
    network = {"name": "intensity_window", "args": {"in_channels": 1, "out_channels": 2, "windows": [[-1100, -500]]}}
    return make_card(labels=[label_entry(1, "lung", LUNG, postprocessing=postprocessing)], network=network)


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_axial_axis_is_the_array_axis_along_s(geometry):
    assert axial_axis(volume_on(geometry).ijk_to_ras) == AXIAL_AXIS[geometry]


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_only_the_air_inside_the_body_stays_lung(bundle_factory, geometry):
    vol, inside_air = chest_phantom(geometry)
    assert np.count_nonzero(inside_air) > 200 and np.count_nonzero(vol.array == -1000) > 5 * inside_air.sum()
    kept = segment([vol], bundle_factory(**lung_card(-500.0))).labels.array
    np.testing.assert_array_equal(kept == 1, inside_air)
    # the rule works per axial slice: in 3D the trachea's cut at the top would join the lungs to the outside
    everything = segment([vol], bundle_factory(**lung_card(None))).labels.array
    np.testing.assert_array_equal(everything == 1, vol.array < -500)


def test_the_body_is_found_on_whole_slices_when_an_roi_cuts_through_it(bundle_factory):
    vol, inside_air = chest_phantom("oblique")
    ras = ras_of_voxels(vol)
    centre = ras.reshape(-1, 3).mean(axis=0)
    # a box that holds the right lung (x > 0) and cuts through it and the body on the left
    corner_min, corner_max = centre + [3.0, -20.0, -20.0], centre + [30.0, 20.0, 20.0]
    options = SegmentationOptions(roi_ras=(corner_min, corner_max))
    kept = segment([vol], bundle_factory(**lung_card(-500.0)), options).labels.array
    in_box = np.all((ras >= corner_min) & (ras <= corner_max), axis=-1)
    np.testing.assert_array_equal(kept == 1, inside_air & in_box)


def test_other_labels_and_slices_without_the_label_are_left_alone():
    ct = np.full((3, 7, 7), -1000, np.int16)
    labels = np.zeros(ct.shape, np.uint8)
    labels[0] = 2  # a label without the rule, in the air
    labels[1, 0, 0] = 1  # the label with the rule, in outside air
    keep_inside_body(labels, ct, 0, {1: -500.0})
    assert (labels[0] == 2).all() and labels[1, 0, 0] == 0


def test_air_does_not_leak_through_a_diagonal_gap_in_the_body_wall():
    air = np.ones((7, 7), bool)
    air[1:6, 1:6] = False  # the body wall ...
    air[2:5, 2:5] = True  # ... around a lung
    air[1, 1] = True  # the wall's corner is missing: the lung touches outside air at a corner only
    outside = air_reaching_edge(air)
    assert not outside[2:5, 2:5].any() and outside[0].all() and outside[1, 1]


def test_the_rule_needs_a_ct_card():
    card = lung_card(-500.0)
    card["modality"] = "MR"
    card["inputs"] = [{"name": "T1", "modality": "MR"}]
    with pytest.raises(BundleError, match="inside_body_hu.*needs CT") as error:
        parse_card(card, "test card")
    assert "drop inside_body_hu" in error.value.hint


def reference_air_reaching_edge(air_slice: np.ndarray) -> np.ndarray:
    """One 2D slice the plain way: 4-connected components, kept where they touch the border."""
    components, _ = ndimage.label(air_slice)
    touching = np.unique(np.concatenate([components[0], components[-1], components[:, 0], components[:, -1]]))
    return np.isin(components, touching[touching > 0])


@pytest.mark.parametrize("seed", range(6))
def test_a_stack_of_slices_is_labelled_as_each_slice_alone(seed):
    rng = np.random.default_rng(seed)
    air = rng.random((5, 23, 31)) < 0.55  # about at the percolation threshold: long, winding components
    if seed % 2:  # solid only in a corner region: the in-plane box is smaller than the slice
        air[:, :, :] = True
        air[:, 4:15, 9:26] = rng.random((5, 11, 17)) < 0.45
    if seed == 2:  # a slice with no solid at all
        air[3] = True
    expected = np.stack([reference_air_reaching_edge(s) for s in air])
    np.testing.assert_array_equal(air_reaching_edge(air), expected)


def test_air_does_not_reach_the_edge_through_the_next_slice():
    air = np.zeros((2, 7, 7), bool)
    air[0, 2:5, 2:5] = True  # enclosed in slice 0 ...
    air[1, 3, :4] = True  # ... while slice 1 has a channel from the border to right below it
    outside = air_reaching_edge(air)
    assert not outside[0].any() and outside[1, 3, :4].all()
