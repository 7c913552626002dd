"""Per-input intensity normalisation: a mixed-modality card normalises each channel its own way.

``inputs[i].normalization`` overrides ``preprocessing.normalization`` (the default) for input i;
``prepare_case`` -- the one preprocessing path of training and inference -- applies it per channel.
Expected values are computed here from the formulas, not with the library's functions.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from MedSegAILib.bundle import parse_card
from MedSegAILib.bundle.card import Normalization, Preprocessing
from MedSegAILib.errors import BundleError
from MedSegAILib.geometry import compose_ijk_to_ras
from MedSegAILib.image import Volume
from MedSegAILib.preprocessing import prepare_case
from MedSegAILib.preprocessing.pipeline import to_network_layout

from testing_support import REPO, make_card

CT_WINDOW = [-100.0, 200.0]
SHAPE_KJI = (6, 7, 8)


def two_input_card(second: dict | None = None, default: dict | None = None) -> dict:
    """A CT + PET card: CT window by default, the PET input with its own normalisation."""
    pet = {"name": "PET", "modality": "PET"}
    if second is not None:
        pet["normalization"] = second
    return make_card(inputs=[{"name": "CT", "modality": "CT"}, pet],
                     preprocessing={"target_spacing": None,
                                    "normalization": default or {"type": "ct_window", "window": CT_WINDOW}})


def ras_volume(array: np.ndarray) -> Volume:
    """A volume on an identity RAS grid: reorientation and resampling leave it as it is."""
    return Volume(array, compose_ijk_to_ras((1.0, 1.0, 1.0), np.eye(3), (0.0, 0.0, 0.0)))


def ct_and_pet() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ct = rng.uniform(-1000.0, 1000.0, SHAPE_KJI).astype(np.float32)
    pet = rng.gamma(2.0, 3.0, SHAPE_KJI).astype(np.float32)
    pet[:, :, :3] = 0.0  # zero background, as outside the body in many PET reconstructions
    return ct, pet


def expected_window(x: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((x - low) / (high - low), 0.0, 1.0)


def expected_zscore(x: np.ndarray, lower: float, upper: float, nonzero: bool) -> np.ndarray:
    mask = x != 0 if nonzero else np.ones(x.shape, bool)
    lo, hi = np.percentile(x[mask], [lower, upper])
    clipped = np.clip(x, lo, hi)
    out = (clipped - clipped[mask].mean()) / clipped[mask].std()
    return np.where(mask, out, 0.0)


def expected(x: np.ndarray, spec: Normalization) -> np.ndarray:
    if spec.type == "ct_window":
        return expected_window(x, *spec.window)
    if spec.type == "percentile_zscore":
        return expected_zscore(x, spec.lower, spec.upper, spec.nonzero)
    return x


def test_each_channel_gets_its_inputs_normalisation():
    card = parse_card(two_input_card({"type": "percentile_zscore", "lower": 1.0, "upper": 99.0, "nonzero": True}))
    spec = card.preprocessing
    assert spec.normalization_for(0) == Normalization("ct_window", tuple(CT_WINDOW))
    assert spec.normalization_for(1) == Normalization("percentile_zscore", None, 1.0, 99.0, True)
    ct, pet = ct_and_pet()
    image = prepare_case([ras_volume(ct), ras_volume(pet)], spec).image
    assert image.shape == (2, *SHAPE_KJI[::-1]) and image.dtype == np.float32
    np.testing.assert_allclose(image[0], to_network_layout(expected_window(ct, *CT_WINDOW)), atol=1e-6)
    np.testing.assert_allclose(image[1], to_network_layout(expected_zscore(pet, 1.0, 99.0, True)), atol=1e-5)
    assert np.all(image[1][to_network_layout(pet) == 0] == 0)  # the zero background stays 0


def test_inputs_of_one_modality_can_differ_in_options():
    """T1 + a skull-stripped FLAIR: both z-scored, only FLAIR over its non-zero voxels."""
    card = parse_card(make_card(
        modality="MR", inputs=[{"name": "T1", "modality": "MR"},
                               {"name": "FLAIR", "modality": "MR",
                                "normalization": {"type": "percentile_zscore", "nonzero": True}}],
        preprocessing={"target_spacing": None, "normalization": {"type": "percentile_zscore"}}))
    _, flair = ct_and_pet()
    t1 = flair + 50.0  # no zeros: the same data with and without the non-zero mask differ
    image = prepare_case([ras_volume(t1), ras_volume(flair)], card.preprocessing).image
    np.testing.assert_allclose(image[0], to_network_layout(expected_zscore(t1, 0.5, 99.5, False)), atol=1e-5)
    np.testing.assert_allclose(image[1], to_network_layout(expected_zscore(flair, 0.5, 99.5, True)), atol=1e-5)


def test_a_card_without_overrides_normalises_every_channel_with_the_default():
    card = parse_card(two_input_card())
    assert card.preprocessing.input_normalizations == (card.preprocessing.normalization,) * 2
    ct, pet = ct_and_pet()
    image = prepare_case([ras_volume(ct), ras_volume(pet)], card.preprocessing).image
    for channel, raw in enumerate((ct, pet)):
        np.testing.assert_allclose(image[channel], to_network_layout(expected_window(raw, *CT_WINDOW)), atol=1e-6)


def test_a_preprocessing_built_in_code_keeps_one_normalisation_for_all_channels():
    spec = Preprocessing(Normalization("ct_window", tuple(CT_WINDOW)))
    ct, pet = ct_and_pet()
    image = prepare_case([ras_volume(ct), ras_volume(pet)], spec).image
    np.testing.assert_allclose(image[1], to_network_layout(expected_window(pet, *CT_WINDOW)), atol=1e-6)


@pytest.mark.parametrize("path", sorted((REPO / "MedSegAI" / "Resources" / "Models").glob("*/model.json")),
                         ids=lambda p: p.parent.name)
def test_shipped_cards_resolve_every_input_to_their_single_normalisation(path):
    card = parse_card(json.loads(path.read_text(encoding="utf-8")), str(path))
    default = card.preprocessing.normalization
    assert [card.preprocessing.normalization_for(i) for i in range(len(card.inputs))] == [default] * len(card.inputs)
    ct, _ = ct_and_pet()
    volume = ras_volume(ct)
    # the card's own spacing resamples: the expectation starts from the same grid, unnormalised
    raw = prepare_case([volume], replace(card.preprocessing, normalization=Normalization("none"),
                                         input_normalizations=())).image[0]
    image = prepare_case([volume], card.preprocessing).image
    np.testing.assert_allclose(image[0], expected(raw, default), atol=1e-5)


def test_variants_keep_the_per_input_normalisation():
    document = two_input_card({"type": "percentile_zscore"})
    document["variants"] = {"fast": {"target_spacing": [3, 3, 3]}}
    card = parse_card(document).variant("fast")
    assert card.preprocessing.normalization_for(1).type == "percentile_zscore"


def test_a_volume_count_unlike_the_card_inputs_is_refused():
    card = parse_card(two_input_card({"type": "none"}))
    ct, _ = ct_and_pet()
    with pytest.raises(ValueError, match="takes 2 input"):
        prepare_case([ras_volume(ct)], card.preprocessing)


@pytest.mark.parametrize("bad, where, message", [
    ({"type": "ct_window"}, "inputs/1/normalization", "'window' is a required property"),
    ({"type": "zscore"}, "inputs/1/normalization/type", "is not one of"),
    ({"type": "percentile_zscore", "window": [0, 1]}, "inputs/1/normalization", "'window' was unexpected"),
    ({"type": "ct_window", "window": [200, -100]}, "inputs/1/normalization/window", "low < high"),
    ({"type": "percentile_zscore", "lower": 99, "upper": 1}, "inputs/1/normalization", "not below upper"),
    ("ct", "inputs/1/normalization", "is not of type 'object'"),
])
def test_a_bad_per_input_normalisation_is_refused_naming_the_field(bad, where, message):
    with pytest.raises(BundleError) as info:
        parse_card(two_input_card(bad), "test card")
    assert f"test card is invalid at {where}: " in info.value.message
    assert message in info.value.message


def test_the_default_normalisation_is_still_checked_where_it_is():
    with pytest.raises(BundleError, match="invalid at preprocessing/normalization: 'window' is a required property"):
        parse_card(two_input_card(default={"type": "ct_window"}))
