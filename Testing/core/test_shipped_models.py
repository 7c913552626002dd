"""Every bundle shipped in MedSegAI/Resources/Models verifies, and segments its own sample data."""

import pytest
import slicerio

from MedSegAILib.bundle import Catalog
from MedSegAILib.bundle.catalog import SHIPPED_MODELS_DIR
from MedSegAILib.errors import InputImageError
from MedSegAILib.image import read_volume
from MedSegAILib.pipeline import segment
from MedSegAILib.sample_data import sample_files

SHIPPED = Catalog([(SHIPPED_MODELS_DIR, "shipped")]).entries()


def test_shipped_models_exist_and_are_small():
    assert SHIPPED, "no shipped model bundles"
    for entry in SHIPPED:
        assert sum(p.stat().st_size for p in entry.path.iterdir()) < 20 * 2**20


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e.card.id)
def test_shipped_model_verifies_and_documents_itself(entry):
    bundle = entry.open()
    bundle.build_network()
    raw = bundle.card.raw
    for key in ("intended_use", "limitations", "training", "metrics"):
        assert raw.get(key), f"{entry.card.id} card lacks {key}"
    assert sample_files(bundle.card), "every shipped model names sample data a user can try"


def test_ct_chest_demo_segments_its_sample_like_the_reference():
    """Regression check of the shipped demo model on its (training) sample: lungs Dice > 0.95."""
    bundle = Catalog([(SHIPPED_MODELS_DIR, "shipped")]).get("medsegai-ct-chest-demo")
    ct_path = sample_files(bundle.card)[0].path
    result = segment([read_volume(ct_path)], bundle)
    reference = slicerio.read_segmentation(str(ct_path.with_name("Segmentation.seg.nrrd")))
    voxels = reference["voxels"].transpose(2, 1, 0)
    for name, ref_value in [("right lung", 5), ("left lung", 6)]:
        ours = result.labels.array == bundle.card.label_by_name(name).value
        ref = voxels == ref_value
        dice = 2 * (ours & ref).sum() / (ours.sum() + ref.sum())
        assert dice > 0.95, (name, dice)


def test_tampered_sample_file_is_refused(tmp_path, monkeypatch):
    entry = SHIPPED[0]
    for sample in entry.card.raw["sample_data"]:
        (tmp_path / sample["path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / sample["path"]).write_bytes(b"not the sample")
    import MedSegAILib.sample_data as sd

    monkeypatch.setattr(sd, "locate", lambda package, path: tmp_path / path)
    with pytest.raises(InputImageError, match="does not match its SHA-256"):
        sample_files(entry.card)
