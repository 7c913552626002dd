"""``medsegai-train`` end to end on a tiny generated data set: plan -> train -> export -> evaluate."""

from __future__ import annotations

import json

import numpy as np

from MedSegAILib.bundle import Bundle
from medsegai_training.cli import main
from msd_support import write_dataset


def test_plan_train_export_evaluate(tmp_path, capsys):
    ds = write_dataset(tmp_path / "ds", cases=3, size=(24, 24, 24))
    plan_path, run, bundle_path, report = tmp_path / "plan.json", tmp_path / "run", tmp_path / "bundle", tmp_path / "rep"

    assert main(["plan", str(ds), "-o", str(plan_path), "--memory-mb", "256", "--base-filters", "4",
                 "--max-stages", "3", "--iterations", "20"]) == 0
    plan = json.loads(plan_path.read_text())
    assert plan["network"]["args"]["filters"] == [4, 8, 16] and plan["training"]["patch_size"] == [24, 24, 24]
    out = capsys.readouterr().out
    assert "fingerprint 3/3: case_000" not in out and "fingerprint 3/3: case_002" in out
    assert "no problems found" in out

    # train in two sessions: 12 iterations, then resume to 20
    assert main(["train", str(ds), "--plan", str(plan_path), "--out", str(run), "--iterations", "12",
                 "--threads", "1"]) == 0
    assert main(["train", str(ds), "--plan", str(plan_path), "--out", str(run), "--threads", "1"]) == 2  # no overwrite
    assert main(["train", str(ds), "--plan", str(plan_path), "--out", str(run), "--threads", "1", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "loading 3/3: case_002" in out and "it 20/20 loss" in out and "resumed from checkpoint-0000012.pt" in out
    info = json.loads((run / "run.json").read_text())
    assert info["iterations"] == 20 and info["sessions"] == 2 and info["data"][0]["subjects"] == 3

    assert main(["export", str(run), "--out", str(bundle_path)]) == 0
    bundle = Bundle.open(bundle_path)  # verifies every checksum
    assert bundle.card.id == "dataset001_sphere" and [x.name for x in bundle.card.labels] == ["sphere"]
    assert bundle.card.raw["training"]["iterations"] == 20
    assert main(["export", str(run), "--out", str(bundle_path)]) == 2  # exists, no --overwrite

    assert main(["evaluate", str(bundle_path), str(ds), "--cases", "case_000", "case_002", "-o", str(report),
                 "--threads", "1"]) == 0
    data = json.loads((report / "report.json").read_text())
    assert [c["case"] for c in data["cases"]] == ["case_000", "case_002"]
    dice = [c["metrics"]["sphere"]["dice"] for c in data["cases"]]
    assert all(d > 0 for d in dice), dice
    assert data["summary"]["sphere"]["dice"]["mean"] == np.mean(dice)
    for key in ("hd95", "assd", "sensitivity", "specificity", "volume_error"):
        assert key in data["cases"][0]["metrics"]["sphere"]
    md = (report / "report.md").read_text()
    assert md.startswith("# Evaluation of dataset001_sphere 0.1.0") and "| sphere |" in md and "HD95 (mm)" in md

    # the evaluation's means can go into the card
    assert main(["export", str(run), "--out", str(bundle_path), "--overwrite", "--metrics",
                 str(report / "report.json")]) == 0
    metrics = Bundle.open(bundle_path).card.raw["metrics"]
    assert {m["metric"] for m in metrics} == {"Dice", "HD95"} and all(m["subjects"] == 2 for m in metrics)


def test_check_command_exit_status(tmp_path, capsys):
    ds = write_dataset(tmp_path / "ds", cases=2)
    assert main(["check", str(ds), "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["ok"] is True
    (ds / "labelsTr" / "case_001.nii.gz").unlink()
    assert main(["check", str(ds)]) == 1
    assert "case_001: missing_file" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "nowhere")]) == 2
