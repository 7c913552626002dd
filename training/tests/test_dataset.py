"""MSD / nnU-Net data set reading and the data set check, on small generated NIfTI and NRRD sets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsegai_training.data import load_case
from medsegai_training.dataset import DatasetError, check_dataset, load_dataset
from MedSegAILib.bundle.card import Normalization, Preprocessing
from msd_support import sphere_case, write_case, write_dataset


def test_dataset_json_and_cases_are_read(tmp_path):
    root = write_dataset(tmp_path / "ds", cases=3)
    ds = load_dataset(root)
    assert ds.channel_names == ("CT",)
    assert ds.labels == {"background": 0, "sphere": 1} and ds.foreground_labels == {"sphere": 1}
    assert [c.name for c in ds.cases] == ["case_000", "case_001", "case_002"]
    assert all(c.complete for c in ds.cases)
    report = check_dataset(ds)
    assert report.ok, report.text()
    stats = report.statistics()
    assert stats["spacing_mm"]["median"] == [1.5, 1.5, 2.0]
    assert stats["size_voxels"]["max"] == [24, 24, 24]
    assert stats["cases_with_label"]["sphere"] == 3
    assert "no problems found" in report.text()
    json.dumps(report.as_dict())  # serialisable

    # the sources load through the core's preprocessing with the label values kept
    spec = Preprocessing(Normalization("ct_window", (-1000.0, 1000.0)), (1.5, 1.5, 2.0))
    case = load_case(ds.sources()[0], spec)
    assert case.prepared.image.shape == (1, 24, 24, 24)
    assert set(np.unique(case.reference.array).tolist()) == {0, 1}


def test_msd_spelling_and_nrrd(tmp_path):
    root = write_dataset(tmp_path / "ds", cases=2, ending=".nrrd", channel="T2",
                         labels={"0": "background", "1": "prostate"})
    raw = json.loads((root / "dataset.json").read_text())
    raw["modality"] = raw.pop("channel_names")
    (root / "dataset.json").write_text(json.dumps(raw))
    ds = load_dataset(root)
    assert ds.labels == {"background": 0, "prostate": 1} and ds.channel_names == ("T2",)
    assert len(ds.cases) == 2 and check_dataset(ds).ok


def test_check_reports_every_kind_of_problem(tmp_path):
    root = write_dataset(tmp_path / "ds", cases=2)
    image, label = sphere_case()
    # label on another grid (spacing and origin)
    write_case(root, "shifted", image, label, (1.5, 1.5, 2.0), label_spacing=(1.0, 1.5, 2.0),
               label_origin=(5.0, 0.0, 0.0))
    # empty label
    write_case(root, "empty", image, np.zeros_like(label), (1.5, 1.5, 2.0))
    # a value dataset.json does not list
    bad = label.copy()
    bad[0, 0, :3] = 7
    write_case(root, "extra", image, bad, (1.5, 1.5, 2.0))
    # label without image, image without label
    write_case(root, "orphan", image, label, (1.5, 1.5, 2.0))
    (root / "imagesTr" / "orphan_0000.nii.gz").unlink()
    write_case(root, "nolabel", image, label, (1.5, 1.5, 2.0))
    (root / "labelsTr" / "nolabel.nii.gz").unlink()

    report = check_dataset(root)
    kinds = {(p.case, p.kind) for p in report.problems}
    assert ("shifted", "geometry_mismatch") in kinds
    assert ("empty", "empty_label") in kinds
    assert ("extra", "unexpected_label_values") in kinds
    assert ("orphan", "missing_file") in kinds and ("nolabel", "missing_file") in kinds
    mismatch = next(p for p in report.problems if p.kind == "geometry_mismatch")
    assert "spacing" in mismatch.message and "origin" in mismatch.message
    assert "[7]" in next(p.message for p in report.problems if p.kind == "unexpected_label_values")
    # empty labels and stray values are reported but still usable; the others are not
    assert sorted(report.usable_cases) == ["case_000", "case_001", "empty", "extra"]
    assert not report.ok
    text = report.text()
    assert "geometry_mismatch" in text and "empty_label" in text
    assert "numTraining 2, 7 case(s) found" in text
    d = report.as_dict()
    assert {p["kind"] for p in d["problems"]} >= {"geometry_mismatch", "empty_label", "missing_file"}


def test_statistics_are_along_model_axes(tmp_path):
    """A case stored with swapped axes (direction) is reported in x, y, z after reorientation."""
    import SimpleITK as sitk

    root = write_dataset(tmp_path / "ds", cases=1, size=(20, 16, 12), spacing=(1.0, 2.0, 3.0))
    for folder, name in (("imagesTr", "case_000_0000.nii.gz"), ("labelsTr", "case_000.nii.gz")):
        path = root / folder / name
        img = sitk.ReadImage(str(path))
        img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))  # file axis i runs along y
        sitk.WriteImage(img, str(path))
    check = check_dataset(root).cases[0]
    assert check.spacing == [2.0, 1.0, 3.0] and check.size == [16, 20, 12]


def test_bad_dataset_json_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="dataset.json"):
        load_dataset(tmp_path)
    root = write_dataset(tmp_path / "ds", cases=1, labels={"background": 0, "both": [1, 2]})
    with pytest.raises(DatasetError, match="region"):
        load_dataset(root)
