"""``medsegai-train`` end to end on tiny generated data sets: plan -> train -> export -> evaluate,
and k-fold cross-validation (train two folds with validation, export their best weights, evaluate
both folds in one report)."""

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
    captured = capsys.readouterr()
    out = captured.out
    assert "loading 3/3: case_002" in out and "it 20/20 loss" in out and "resumed from checkpoint-0000012.pt" in out
    assert "20/20 loss" in captured.err and " s/it ETA " in captured.err  # the progress bar
    info = json.loads((run / "run.json").read_text())
    assert info["iterations"] == 20 and info["sessions"] == 2 and info["data"][0]["subjects"] == 3
    assert info["loss"].startswith("Dice + cross-entropy") and info["optimizer"].startswith("AdamW")
    assert "validation" not in info and info["processes"] == 1 and info["device"] == "cpu"
    assert info["mixed_precision"] is False and "amp" not in info["settings"]
    assert (run / "learning_curves.png").stat().st_size > 5000 and (run / "tensorboard").is_dir()

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
    assert data["cases"][0]["overlay"] == "figures/overlay_case_000.png" and "folds" not in data
    assert "![case_000](figures/overlay_case_000.png)" in md and (report / "figures" / "overlay_case_002.png").exists()

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


def test_k_fold_cross_validation(tmp_path, capsys):
    ds = write_dataset(tmp_path / "ds", cases=4, size=(16, 16, 16))
    plan_path = tmp_path / "plan.json"
    assert main(["plan", str(ds), "-o", str(plan_path), "--memory-mb", "64", "--base-filters", "4",
                 "--max-stages", "3", "--iterations", "6"]) == 0
    runs = [tmp_path / f"fold{i}" for i in (0, 1)]
    for fold, run in enumerate(runs):
        assert main(["train", str(ds), "--plan", str(plan_path), "--out", str(run), "--threads", "1", "--folds", "2",
                     "--fold", str(fold), "--validate-every", "3", "--patience", "3", "--loss", "dice_focal",
                     "--progress", "none", "--no-tensorboard"]) == 0
    out = capsys.readouterr()
    assert "loading validation 2/2" in out.out and "validation at it 6: Dice sphere" in out.out and not out.err
    infos = [json.loads((run / "run.json").read_text()) for run in runs]
    folds = [info["cross_validation"]["validation_cases"] for info in infos]
    assert sorted(folds[0] + folds[1]) == ["case_000", "case_001", "case_002", "case_003"]
    assert infos[0]["cross_validation"]["training_cases"] == folds[1] and infos[0]["data"][0]["cases"] == folds[1]
    assert infos[0]["validation"]["cases"] == folds[0] and infos[0]["validation"]["best"]["iteration"] in (3, 6)
    assert infos[0]["loss"].startswith("Dice + focal") and not (runs[0] / "tensorboard").exists()

    bundles = [tmp_path / f"bundle{i}" for i in (0, 1)]
    for run, bundle in zip(runs, bundles):
        assert main(["export", str(run), "--out", str(bundle)]) == 0
        assert "exporting the best validation checkpoint" in capsys.readouterr().out
        training = Bundle.open(bundle).card.raw["training"]
        assert training["checkpoint"]["file"] == "best.pt" and training["cross_validation"]["fold"] in (0, 1)

    report = tmp_path / "cv"
    assert main(["evaluate", str(bundles[0]), str(bundles[1]), str(ds), "-o", str(report), "--threads", "1",
                 "--runs", str(runs[0]), str(runs[1])]) == 0
    data = json.loads((report / "report.json").read_text())
    assert [f["cases"] for f in data["folds"]] == folds  # each model on its own validation fold
    assert [(c["fold"], c["case"]) for c in data["cases"]] == [(i, n) for i in (0, 1) for n in folds[i]]
    fold_means = [f["summary"]["sphere"]["dice"]["mean"] for f in data["folds"]]
    cv = data["cross_validation"]["sphere"]["dice"]
    assert cv["n"] == 2 and np.isclose(cv["mean"], np.mean(fold_means)) and np.isclose(cv["std"], np.std(fold_means))
    md = (report / "report.md").read_text()
    assert "## Cross-validation (mean ± sd over the 2 folds' means)" in md and "| case | fold | label |" in md
    assert "![learning curves](figures/learning_curves_fold1.png)" in md
    assert (report / "figures" / f"overlay_{folds[1][0]}_fold1.png").exists()
