import json
import shutil
import zipfile

import pytest
import torch

from MedSegAILib.bundle import CHECKSUM_FILE, Bundle, Catalog, import_bundle, parse_card, write_bundle
from MedSegAILib.errors import BundleError, BundleIntegrityError

from testing_support import label_entry, make_card


def _weights(card):
    from MedSegAILib.networks import build_network

    return {card["files"]["weights"]: build_network(card["network"]["name"], card["network"]["args"]).state_dict()}


def test_valid_card_parses_into_typed_fields():
    card = parse_card(make_card(labels=[
        label_entry(1, "Right lung", ["SCT", "39607008", "Lung"], (197, 165, 145), modifier=["SCT", "24028007", "Right"],
                    postprocessing={"largest_components": 1, "fill_holes": True})]))
    assert card.num_classes == 2
    label = card.labels[0]
    assert label.terminology.modifier.value == "24028007"
    assert label.postprocessing.largest_components == 1 and label.postprocessing.fill_holes
    assert label.color_float == pytest.approx((197 / 255, 165 / 255, 145 / 255))
    assert card.inference.padding == "constant"  # MONAI's default when the card says nothing
    document = make_card()
    document["inference"]["padding"] = "replicate"
    assert parse_card(document).inference.padding == "replicate"


@pytest.mark.parametrize("mutation, where", [
    (lambda c: c.pop("labels"), "(top level)"),
    (lambda c: c.update(version="1.0"), "version"),
    (lambda c: c["labels"][0].update(color=[300, 0, 0]), "labels/0/color/0"),
    (lambda c: c["labels"][0]["terminology"].update(type=["SCT", "1"]), "labels/0/terminology/type"),
    (lambda c: c["files"].update(weights="weights.pt"), "files/weights"),
    (lambda c: c["preprocessing"].update(normalization={"type": "ct_window"}), "preprocessing/normalization"),
    (lambda c: c.update(unexpected=1), "(top level)"),
    (lambda c: c["inference"].update(padding="reflect"), "inference/padding"),
])
def test_schema_violations_name_the_field(mutation, where):
    card = make_card()
    mutation(card)
    with pytest.raises(BundleError) as info:
        parse_card(card, "test card")
    assert f"invalid at {where}" in info.value.message


def test_duplicate_label_values_are_refused():
    card = make_card(labels=[label_entry(1, "A", ["SCT", "1", "a"]), label_entry(1, "B", ["SCT", "2", "b"])])
    with pytest.raises(BundleError, match="not unique"):
        parse_card(card)


@pytest.mark.parametrize("as_zip", [False, True])
def test_written_bundle_opens_and_rebuilds_the_same_network(tmp_path, as_zip):
    card = make_card(network={"name": "unet", "args": {"in_channels": 1, "out_channels": 2, "filters": [4, 8, 16],
                                                         "strides": [1, 2, 2]}})
    torch.manual_seed(0)
    weights = _weights(card)
    path = write_bundle(tmp_path / ("b.zip" if as_zip else "b"), card, weights)
    bundle = Bundle.open(path)
    net = bundle.build_network()
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(tensor, weights["weights.safetensors"][name])


def test_zip_with_a_top_level_folder_opens(tmp_path):
    card = make_card()
    src = write_bundle(tmp_path / "b", card, _weights(card))
    with zipfile.ZipFile(tmp_path / "nested.zip", "w") as zf:
        for f in src.iterdir():
            zf.write(f, f"test-window-1.0.0/{f.name}")
    assert Bundle.open(tmp_path / "nested.zip").card.id == "test-window"


@pytest.fixture
def bundle_dir(tmp_path):
    card = make_card()
    return write_bundle(tmp_path / "b", card, _weights(card))


@pytest.mark.parametrize("tamper, message", [
    (lambda d: (d / "weights.safetensors").write_bytes((d / "weights.safetensors").read_bytes()[:-1] + b"\0"),
     "weights.safetensors does not match its SHA-256"),
    (lambda d: (d / "model.json").write_text((d / "model.json").read_text().replace("Intensity", "Better")),
     "model.json does not match its SHA-256"),
    (lambda d: (d / "extra.py").write_text("import os"), "extra.py is not listed"),
    (lambda d: (d / "weights.safetensors").unlink(), "weights.safetensors listed in SHA256SUMS is missing"),
    (lambda d: (d / CHECKSUM_FILE).unlink(), "has no SHA256SUMS"),
])
def test_tampered_bundles_are_refused(bundle_dir, tamper, message):
    tamper(bundle_dir)
    with pytest.raises(BundleIntegrityError, match=message):
        Bundle.open(bundle_dir)


def test_weights_that_do_not_fit_the_network_are_refused(tmp_path):
    card = make_card(network={"name": "unet", "args": {"in_channels": 1, "out_channels": 2, "filters": [4, 8, 16],
                                                         "strides": [1, 2, 2]}})
    other = make_card(network={"name": "unet", "args": {"in_channels": 1, "out_channels": 2, "filters": [4, 16, 16],
                                                          "strides": [1, 2, 2]}})
    path = write_bundle(tmp_path / "b", card, _weights(other))
    with pytest.raises(BundleError, match="weights do not fit network unet"):
        Bundle.open(path).build_network()


def test_pickled_weights_cannot_be_loaded(tmp_path, bundle_dir):
    """A torch pickle renamed to .safetensors (with a matching checksum) is rejected, never unpickled."""
    torch.save({"windows": torch.zeros(1, 2)}, bundle_dir / "weights.safetensors")
    from MedSegAILib.bundle.bundle import sha256_hex

    lines = [f"{sha256_hex(p.read_bytes())}  {p.name}\n" for p in sorted(bundle_dir.iterdir()) if p.name != CHECKSUM_FILE]
    (bundle_dir / CHECKSUM_FILE).write_text("".join(lines))
    with pytest.raises(BundleError, match="cannot read weights"):
        Bundle.open(bundle_dir).build_network()


def test_catalog_lists_finds_latest_and_reports_broken_bundles(tmp_path):
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    for version, where in [("1.0.0", shipped), ("1.2.0", user), ("1.10.0", user)]:
        card = make_card(version=version)
        write_bundle(where / f"m-{version}", card, _weights(card))
    (user / "broken").mkdir()
    (user / "broken" / "model.json").write_text("{not json")
    catalog = Catalog([(shipped, "shipped"), (user, "user")])
    entries, problems = catalog.scan()
    assert [e.card.version for e in entries] == ["1.0.0", "1.2.0", "1.10.0"]
    assert len(problems) == 1 and "not valid JSON" in problems[0].message
    assert catalog.find("test-window").card.version == "1.10.0"
    assert catalog.find("test-window", "1.2.0").source == "user"
    with pytest.raises(BundleError, match="did you mean: test-window"):
        catalog.find("test_window_x")


def test_import_installs_verified_copy_and_refuses_duplicates(tmp_path):
    card = make_card()
    zipped = write_bundle(tmp_path / "m.zip", card, _weights(card))
    models = tmp_path / "models"
    target = import_bundle(zipped, models)
    assert target.name == "test-window-1.0.0" and Bundle.open(target).card.id == "test-window"
    with pytest.raises(BundleError, match="already installed"):
        import_bundle(zipped, models)
    assert import_bundle(zipped, models, replace_existing=True) == target
    # a corrupted zip is refused and leaves nothing behind
    bad = tmp_path / "bad.zip"
    data = bytearray(zipped.read_bytes())
    shutil.copy(zipped, bad)
    with zipfile.ZipFile(zipped) as zf, zipfile.ZipFile(bad, "w") as out:
        for info in zf.infolist():
            payload = zf.read(info)
            out.writestr(info.filename, payload.replace(b"Intensity", b"Tampered") if info.filename == "model.json" else payload)
    assert data
    with pytest.raises(BundleIntegrityError):
        import_bundle(bad, tmp_path / "models2")
    assert not (tmp_path / "models2" / "test-window-1.0.0").exists()


def test_card_variant_overrides(tmp_path):
    card = make_card(variants={"fast": {"target_spacing": [3, 3, 3], "patch_size": [16, 16, 16]}})
    parsed = parse_card(card)
    fast = parsed.variant("fast")
    assert fast.preprocessing.target_spacing == (3, 3, 3) and fast.inference.patch_size == (16, 16, 16)
    with pytest.raises(BundleError, match="offers no 'slow' variant"):
        parsed.variant("slow")
    assert json.loads(json.dumps(parsed.raw)) == card
