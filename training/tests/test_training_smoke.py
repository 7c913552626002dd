"""Smoke tests of the training package: train a tiny model on synthetic data, export it, segment
with it through the real pipeline, and resume from checkpoints. Each test runs in seconds on CPU."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from MedSegAILib.bundle import Bundle, parse_card, verify_members
from MedSegAILib.pipeline import SegmentationOptions, segment
from medsegai_training.augmentation import AugmentationConfig, Augmenter
from medsegai_training.checkpoint import latest_checkpoint, list_checkpoints
from medsegai_training.data import CaseSource, load_case
from medsegai_training.evaluation import evaluate_case
from medsegai_training.export import bundle_size_bytes, export_bundle
from medsegai_training.sampling import PatchSampler, crop
from medsegai_training.trainer import TrainingError
from training_support import TINY_CARD, make_trainer, tiny_case, tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def case():
    return tiny_case()


def test_case_is_prepared_by_the_core_and_mapped(case):
    assert case.prepared.image.shape == (1, 32, 28, 12)  # (C, X, Y, Z): LPS input reoriented to RAS
    assert case.prepared.image.dtype == np.float32
    assert 0.0 <= case.prepared.image.min() and case.prepared.image.max() <= 1.0
    assert set(np.unique(case.prepared.labels).tolist()) == {0, 1, 2}  # source 30 became background
    assert set(np.unique(case.reference.array).tolist()) == {0, 1, 2}
    assert case.reference.grid.same_as(case.volumes[0].grid)


def test_patches_oversample_foreground_and_pad_outside():
    image = np.zeros((1, 40, 40, 10), np.float32)
    labels = np.zeros((40, 40, 10), np.uint8)
    labels[2:4, 2:4, 2:4] = 1  # 8 voxels in a corner
    rng = np.random.default_rng(0)
    hits = sum(bool(PatchSampler([(image, labels)], 1.0).sample(rng, (8, 8, 4))[1].any()) for _ in range(30))
    assert hits == 30
    big_image, big_labels = PatchSampler([(image + 0.5, labels)], 0.0).sample(rng, (48, 44, 12))
    assert big_image.shape == (1, 48, 44, 12) and big_labels.shape == (48, 44, 12)
    assert crop(np.ones((2, 2, 2)), (-1, 0, 0), (3, 2, 2), 7)[0].tolist() == [[7, 7], [7, 7]]


def test_augmentation_never_flips_left_and_right():
    """Labels on the left half stay on the left half: no flips, only small rotations."""
    labels = np.zeros((40, 40, 4), np.uint8)
    labels[:20] = 1
    labels[20:] = 2
    image = labels[None].astype(np.float32)
    aug = Augmenter(AugmentationConfig(affine_probability=1.0), (24, 24, 4), (1.0, 1.0, 3.0))
    rng = np.random.default_rng(1)
    start = [(40 - s) // 2 for s in aug.input_size[:2]]
    region = (slice(start[0], start[0] + aug.input_size[0]), slice(start[1], start[1] + aug.input_size[1]))
    for _ in range(10):
        img, lab = aug(rng, image[(slice(None),) + region], labels[region])
        assert img.shape == (1, 24, 24, 4) and lab.shape == (24, 24, 4)
        assert (lab[:8] == 1).all() and (lab[-8:] == 2).all()


def test_tiny_model_trains_exports_and_segments(case, tmp_path):
    lines: list[str] = []
    result = make_trainer(case, tmp_path / "work", tiny_config(), lines).run()
    assert result.iterations == 40 and len(result.losses) == 40 and result.sessions == 1
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    assert any(line.startswith("it 40/40") for line in lines)
    log = [json.loads(x) for x in (tmp_path / "work" / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(5, 45, 5))

    card = copy.deepcopy(TINY_CARD)
    card["training"] = {"iterations": result.iterations, "seed": 3}
    card["metrics"] = [{"metric": "Dice", "label": "bright blob", "value": 0.5, "data": "training subject"}]
    bundle = export_bundle(tmp_path / "tiny-bundle", card, result.network)
    reopened = Bundle.open(tmp_path / "tiny-bundle")  # verifies every checksum
    verify_members(reopened.members, "tiny bundle")
    assert reopened.card.raw["training"]["iterations"] == 40
    assert bundle_size_bytes(bundle.path) < 1_000_000
    with pytest.raises(FileExistsError):
        export_bundle(tmp_path / "tiny-bundle", card, result.network)
    export_bundle(tmp_path / "tiny-bundle", card, result.network, overwrite=True)

    volume = case.volumes[0]
    out = segment([volume], reopened, SegmentationOptions(device="cpu", threads=1, allow_empty=True))
    assert out.labels.grid.same_as(volume.grid)
    assert out.labels.array.shape == volume.array.shape and out.labels.array.dtype == np.uint8
    assert set(np.unique(out.labels.array).tolist()) <= {0, 1, 2}
    evaluation = evaluate_case(reopened, case, threads=1)
    assert set(evaluation.dice) == {"bright blob", "dark blob"}
    assert all(0.0 <= d <= 1.0 for d in evaluation.dice.values())


def test_resume_continues_the_iteration_count_and_the_same_run(case, tmp_path):
    config = tiny_config(iterations=12, checkpoint_every=4, log_every=4)
    uninterrupted = make_trainer(case, tmp_path / "a", config).run()

    first = make_trainer(case, tmp_path / "b", config).run(stop_at=7)
    assert first.iterations == 7 and len(first.losses) == 7
    assert [n for n, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [4, 7]
    with pytest.raises(TrainingError, match="resume"):
        make_trainer(case, tmp_path / "b", config).run()  # never overwrites checkpoints silently

    lines: list[str] = []
    second = make_trainer(case, tmp_path / "b", config, lines).run(resume=True)
    assert second.resumed_from == 7 and second.iterations == 12 and second.sessions == 2
    assert len(second.losses) == 12 and second.losses[:7] == first.losses
    assert any("resumed from checkpoint-0000007.pt at iteration 7" in x for x in lines)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "checkpoint-0000012.pt"
    # same seed, saved random states: the resumed run is the uninterrupted one
    np.testing.assert_allclose(second.losses, uninterrupted.losses, rtol=1e-4)

    with pytest.raises(TrainingError, match="other settings"):
        make_trainer(case, tmp_path / "b", tiny_config(iterations=12, checkpoint_every=4, learning_rate=0.5)).run(
            resume=True)
    restarted = make_trainer(case, tmp_path / "b", config).run(restart=True, stop_at=2)
    assert restarted.iterations == 2 and restarted.resumed_from is None


def test_demo_recipe_finds_its_labels_in_the_seg_nrrd_by_terminology():
    from medsegai_training import ct_chest_demo as demo

    mapping, described = demo.label_mapping(demo.slicerio_data_dir() / "Segmentation.seg.nrrd")
    assert dict(mapping.source_to_model) == {5: 1, 6: 2, 1: 3, 2: 4, 3: 4, 4: 4}  # tissue (7) -> background
    assert described[-1]["model_name"] == "background"
    parse_card(demo.card_document(), "demo card")


def test_demo_recipe_codes_and_colours_come_from_slicer_terminology():
    from medsegai_training import ct_chest_demo as demo

    folder = REPO / ".cache" / "terminologies"
    general = folder / "SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.term.json"
    master = folder / "SegmentationCategoryTypeModifier-DICOM-Master.term.json"
    if not (general.exists() and master.exists()):
        pytest.skip("Slicer terminology files not set up in .cache/terminologies")

    def types(path):
        found = {}
        for category in json.loads(path.read_text())["SegmentationCodes"]["Category"]:
            for t in category.get("Type", []):
                found[(category["CodeValue"], t["CodeValue"])] = t
        return found

    lists = {demo.GENERAL_ANATOMY_CONTEXT: types(general), demo.DICOM_MASTER_CONTEXT: types(master)}
    for label in demo.LABELS:
        entry = lists[label.context][("123037004", label.type_code[1])]
        assert entry["CodeMeaning"] == label.type_code[2]
        if label.modifier:
            modifier = next(m for m in entry["Modifier"] if m["CodeValue"] == label.modifier[1])
            assert tuple(modifier["recommendedDisplayRGBValue"]) == label.color
        elif "recommendedDisplayRGBValue" in entry:
            assert tuple(entry["recommendedDisplayRGBValue"]) == label.color
        else:  # the merged spine: thoracic spine colour of the General Anatomy list
            assert tuple(lists[demo.GENERAL_ANATOMY_CONTEXT][("123037004", "122495006")]["recommendedDisplayRGBValue"]) \
                == label.color


def test_shipped_demo_bundle_matches_its_recipe():
    from medsegai_training import ct_chest_demo as demo

    path = REPO / "MedSegAI" / "Resources" / "Models" / f"{demo.BUNDLE_ID}-{demo.BUNDLE_VERSION}"
    if not path.exists():
        pytest.skip("demo bundle not built")
    bundle = Bundle.open(path)
    raw = dict(bundle.card.raw)
    assert {k: v for k, v in raw.items() if k not in ("training", "metrics", "timings")} == demo.card_document()
    assert all("TRAINING subject" in m["data"] for m in raw["metrics"])
    assert raw["training"]["data"][0]["license"].startswith("MIT")
    assert bundle_size_bytes(path) < 20 * 2**20
    bundle.build_network()


@pytest.mark.parametrize("held_out", ["caudal", "cranial"])
def test_demo_hold_out_halves_split_the_slices_in_place(held_out):
    """The held-out half is the named end of the body, the halves share no slice, and each keeps
    its voxels where they were in space (so the reference stays on its image)."""
    from medsegai_training import ct_chest_demo as demo

    data = demo.slicerio_data_dir()
    mapping, _ = demo.label_mapping(data / "Segmentation.seg.nrrd")
    card = parse_card(demo.card_document(), "demo card")
    case = load_case(CaseSource("CTChest4", (data / "CTChest4.nrrd",), data / "Segmentation.seg.nrrd", mapping),
                     card.preprocessing)
    train, test = demo.split_halves(case, held_out, card.preprocessing)
    full = case.volumes[0]

    def z_range(volume):
        corners = volume.ijk_to_ras @ np.array([[0, 0, 0, 1], [0, 0, volume.array.shape[0] - 1, 1]], float).T
        return sorted(corners[2])

    assert train.volumes[0].array.shape[0] + test.volumes[0].array.shape[0] == full.array.shape[0]
    (train_lo, train_hi), (test_lo, test_hi) = z_range(train.volumes[0]), z_range(test.volumes[0])
    assert (test_hi < train_lo) if held_out == "caudal" else (train_hi < test_lo)
    for half in (train, test):
        volume = half.volumes[0]
        first = np.linalg.solve(full.ijk_to_ras, volume.ijk_to_ras @ [0, 0, 0, 1.0])  # its first slice in the full scan
        k0 = int(round(first[2]))
        np.testing.assert_allclose(first[:3], [0, 0, k0], atol=1e-9)
        np.testing.assert_array_equal(volume.array, full.array[k0:k0 + volume.array.shape[0]])
        np.testing.assert_array_equal(half.reference.array, case.reference.array[k0:k0 + volume.array.shape[0]])
        assert np.isin([1, 2, 3, 4], half.reference.array).all()  # every label occurs in both halves
