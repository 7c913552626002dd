"""The medsegai command end to end on small volumes, including every bad-input case."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicerio

from MedSegAILib.bundle import Bundle, write_bundle
from MedSegAILib.cli import main
from MedSegAILib.image import Volume, read_volume, write_volume
from MedSegAILib.networks import build_network

from testing_support import REPO, asymmetric_structure, make_card, volume_on

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def models_dir(tmp_path):
    """A user models folder holding the intensity-window test model (CT, label 'Liver' at 50-150)."""
    folder = tmp_path / "models"
    card = make_card()
    write_bundle(folder / "test-window-1.0.0", card,
                 {"weights.safetensors": build_network(card["network"]["name"], card["network"]["args"]).state_dict()})
    return folder


@pytest.fixture
def ct_file(tmp_path):
    vol = volume_on("oblique")
    vol.array[:] = np.where(asymmetric_structure(vol), 100, -1000)
    return write_volume(vol, tmp_path / "inputs" / "case1.nii.gz")


def segment_args(models_dir, *extra):
    return ["--models-dir", models_dir, "--progress", "none", "segment", *extra]


def test_segment_writes_all_outputs(tmp_path, models_dir, ct_file):
    out = tmp_path / "out"
    code, _, err = run_cli(*segment_args(models_dir, ct_file, "-m", "test-window", "-o", out, "--nifti",
                                         "--surfaces", "stl,obj"))
    assert code == 0, err
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["case1.seg.nrrd", "case1_labels.json", "case1_labels.nii.gz", "case1_measurements.csv",
                     "case1_measurements.json", "case1_surfaces/Liver.obj", "case1_surfaces/Liver.stl"]
    expected = asymmetric_structure(read_volume(ct_file))
    labels = read_volume(out / "case1_labels.nii.gz")
    np.testing.assert_array_equal(labels.array == 1, expected)
    measurements = json.loads((out / "case1_measurements.json").read_text())["segments"][0]
    assert measurements["name"] == "Liver" and measurements["voxel_count"] == int(expected.sum())
    assert measurements["intensity"]["mean"] == pytest.approx(100.0)
    assert (out / "case1_surfaces" / "Liver.stl").read_bytes()[:9] == b"SPACE=LPS"
    labels_json = json.loads((out / "case1_labels.json").read_text())
    assert labels_json["labels"][0]["terminology"].split("~")[2] == "SCT^10200004^Liver"


def test_json_progress_protocol(tmp_path, models_dir, ct_file):
    out_stream = io.StringIO()
    code = main(["--models-dir", str(models_dir), "--progress", "json", "segment", str(ct_file), "-m", "test-window",
                 "-o", str(tmp_path / "out")], out=out_stream, err=io.StringIO())
    assert code == 0
    events = [json.loads(line) for line in out_stream.getvalue().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "case_done" in kinds and "output" in kinds
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(e["case"] == "case1" for e in events if e["event"] == "progress")


def test_batch_folder_continues_past_a_bad_case_and_shards(tmp_path, models_dir, ct_file):
    folder = ct_file.parent
    shutil.copy(ct_file, folder / "case2.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "out"
    code, _, err = run_cli(*segment_args(models_dir, folder, "-m", "test-window", "-o", out))
    assert code == 1
    assert "broken: error: cannot read" in err and "1 of 3 case(s) failed" in err
    assert (out / "case1.seg.nrrd").exists() and (out / "case2.seg.nrrd").exists()
    assert not list(out.glob("broken*"))
    shard_out = tmp_path / "shard"
    code, _, _ = run_cli(*segment_args(models_dir, folder, "-m", "test-window", "-o", shard_out, "--shard", "1/3"))
    assert code == 0 and [p.name for p in shard_out.glob("*.seg.nrrd")] == ["case1.seg.nrrd"]


def test_a_batch_loads_the_network_once_and_reuses_it_unchanged(tmp_path, models_dir, ct_file, monkeypatch):
    shutil.copy(ct_file, ct_file.parent / "case2.nii.gz")  # the same image twice
    built = []
    build = Bundle.build_network
    monkeypatch.setattr(Bundle, "build_network", lambda self, card=None: built.append(card) or build(self, card))
    out = tmp_path / "out"
    code, _, err = run_cli(*segment_args(models_dir, ct_file.parent, "-m", "test-window", "-o", out))
    assert code == 0, err
    assert len(built) == 1
    # the second case ran on the network the first one left (on the CPU kernels swapped in place)
    first, second = (slicerio.read_segmentation(out / f"{name}.seg.nrrd") for name in ("case1", "case2"))
    np.testing.assert_array_equal(first["voxels"], second["voxels"])
    assert first["voxels"].any()


def test_roi_and_label_subset(tmp_path, models_dir, ct_file):
    vol = read_volume(ct_file)
    centre = (vol.ijk_to_ras @ np.r_[(np.asarray(vol.grid.size_ijk) - 1) / 2, 1])[:3]
    roi = ",".join(str(v) for v in [*(centre - [100, 100, 100]), *(centre[0], centre[1] + 100, centre[2] + 100)])
    out = tmp_path / "out"
    code, _, err = run_cli(*segment_args(models_dir, ct_file, "-m", "test-window", "-o", out, f"--roi={roi}", "--nifti"))
    assert code == 0, err
    labels = read_volume(out / "case1_labels.nii.gz")
    ras = np.einsum("ij,kmnj->kmni", vol.ijk_to_ras[:3, :3], np.stack(np.meshgrid(
        *[np.arange(n) for n in vol.array.shape], indexing="ij"), -1)[..., ::-1]) + vol.ijk_to_ras[:3, 3]
    inside = labels.array == 1
    assert inside.any() and (ras[inside][:, 0] <= centre[0] + 1.0).all()  # nothing right of the ROI
    code, _, err = run_cli(*segment_args(models_dir, ct_file, "-m", "test-window", "-o", out, "--labels", "Spleen"))
    assert code == 2 and "no label named 'Spleen'" in err and "Liver" in err


@pytest.mark.parametrize("make_input, message", [
    (lambda d: d / "missing.nii.gz", "input not found"),
    (lambda d: _write(d / "garbage.nrrd", b"NRRD0004\nthis is not nrrd\n"), "cannot read"),
    (lambda d: _image(d / "flat.nii.gz", np.zeros((1, 20, 20), np.int16)), "2D image"),
    (lambda d: _image(d / "four_d.nii.gz", np.zeros((3, 4, 8, 8), np.int16)), "4D image with 3"),
    (lambda d: _image(d / "rgb.mha", np.zeros((4, 8, 8, 3), np.uint8), vector=True), "3 components per voxel"),
    (lambda d: _image(d / "nan.mha", np.full((4, 8, 8), np.nan, np.float32)), "NaN or infinite"),
    (lambda d: _image(d / "mr.nii.gz", np.full((8, 8, 8), 300, np.int16)), "found none of its structures"),
    (lambda d: PYDICOM_FILES / "CT_small.dcm", "2D image"),
    (lambda d: _empty_dir(d / "empty"), "no DICOM series"),
])
def test_bad_inputs_get_a_clear_message_no_traceback_no_output(tmp_path, models_dir, make_input, message):
    path = make_input(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_cli(*segment_args(models_dir, path, "-m", "test-window", "-o", out))
    assert code in (2, 3)
    assert message in err and "hint:" in err and "Traceback" not in err + stdout
    assert not out.exists() or not any(out.iterdir())


def test_empty_result_can_be_written_on_request(tmp_path, models_dir):
    path = _image(tmp_path / "blank.nii.gz", np.full((8, 8, 8), -1000, np.int16))
    code, _, _ = run_cli(*segment_args(models_dir, path, "-m", "test-window", "-o", tmp_path / "o", "--allow-empty"))
    assert code == 0 and (tmp_path / "o" / "blank.seg.nrrd").exists()


def test_wrong_number_of_inputs_and_unknown_model(tmp_path, models_dir, ct_file):
    code, _, err = run_cli(*segment_args(models_dir, ct_file, "-m", "no-such-model", "-o", tmp_path / "o"))
    assert code == 2 and "unknown model 'no-such-model'" in err
    card = make_card(id="two-input", inputs=[{"name": "T1", "modality": "MR"}, {"name": "T2", "modality": "MR"}])
    write_bundle(models_dir / "two", card, {"weights.safetensors": build_network(
        card["network"]["name"], card["network"]["args"]).state_dict()})
    code, _, err = run_cli(*segment_args(models_dir, ct_file, ct_file, ct_file, "-m", "two-input", "-o", tmp_path / "o"))
    assert code == 2 and "takes 2 inputs per case but 3 files" in err


def test_modality_mismatch_warns_or_refuses(tmp_path, models_dir):
    vol = volume_on("ras_iso")
    vol.array[:] = 0
    vol.array[5:15, 5:15, 5:15] = 100  # no air: not CT
    path = write_volume(vol, tmp_path / "mr_like.nii.gz")
    code, _, err = run_cli(*segment_args(models_dir, path, "-m", "test-window", "-o", tmp_path / "o"))
    assert code == 0 and "does not look like CT" in err
    card = make_card(id="strict", applicability={"on_mismatch": "refuse", "spacing_mm": [0.5, 2.0]})
    write_bundle(models_dir / "strict", card, {"weights.safetensors": build_network(
        card["network"]["name"], card["network"]["args"]).state_dict()})
    code, _, err = run_cli(*segment_args(models_dir, path, "-m", "strict", "-o", tmp_path / "o2"))
    assert code == 2 and "does not look like CT" in err and "--force" in err
    code, _, _ = run_cli(*segment_args(models_dir, path, "-m", "strict", "-o", tmp_path / "o2", "--force"))
    assert code == 0


def test_tampered_bundle_is_refused_by_the_cli(tmp_path, models_dir, ct_file):
    weights = models_dir / "test-window-1.0.0" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, _, err = run_cli(*segment_args(models_dir, ct_file, "-m", "test-window", "-o", tmp_path / "o"))
    assert code == 2 and "does not match its SHA-256" in err
    code, out, _ = run_cli("--models-dir", models_dir, "models", "verify")
    assert code == 1 and "FAILED" in out


def test_models_list_show_verify_import(tmp_path, models_dir):
    code, out, _ = run_cli("--models-dir", models_dir, "models", "list", "--json")
    assert code == 0
    listed = {m["id"]: m for m in json.loads(out)}
    assert listed["test-window"]["source"] == "user" and listed["test-window"]["labels"] == ["Liver"]
    code, out, _ = run_cli("--models-dir", models_dir, "models", "show", "test-window")
    assert code == 0 and "SCT^10200004^Liver" in out and "license: Apache-2.0" in out
    assert "runtime on CPUs: torch (no ONNX graph)" in out
    code, out, _ = run_cli("--models-dir", models_dir, "models", "verify", str(models_dir / "test-window-1.0.0"))
    assert code == 0 and out.startswith("OK")
    card = make_card(id="imported", version="2.0.0")
    zipped = write_bundle(tmp_path / "imported.zip", card, {"weights.safetensors": build_network(
        card["network"]["name"], card["network"]["args"]).state_dict()})
    code, out, _ = run_cli("--models-dir", models_dir, "models", "import", zipped)
    assert code == 0 and (models_dir / "imported-2.0.0" / "model.json").exists()


def test_measure_command_on_seg_nrrd_and_label_map(tmp_path, models_dir, ct_file):
    run_cli(*segment_args(models_dir, ct_file, "-m", "test-window", "-o", tmp_path / "o", "--nifti"))
    for path in ("case1.seg.nrrd", "case1_labels.nii.gz"):
        code, out, err = run_cli("measure", tmp_path / "o" / path, "--image", ct_file)
        assert code == 0, err
        header, row = out.splitlines()[:2]
        values = dict(zip(header.split(","), row.split(",")))
        assert int(values["voxel_count"]) == int(asymmetric_structure(read_volume(ct_file)).sum())
        assert float(values["intensity_mean"]) == pytest.approx(100.0)


def test_measure_command_refuses_negative_label_values(tmp_path):
    labels = np.zeros((3, 4, 5), np.int16)
    labels[1, 1:3, 1:4], labels[2, 0, 0] = 2, -1
    path = write_volume(Volume(labels, np.eye(4)), tmp_path / "signed.nii.gz")
    code, _, err = run_cli("measure", path)
    assert code != 0 and "negative label values (-1)" in err and "numbered from 1" in err
    assert "Traceback" not in err


def test_dicom_series_folder_is_read_with_its_geometry():
    folder = PYDICOM_FILES / "dicomdirtests" / "98892001" / "CT5N"
    vol = read_volume(folder)
    first = min((pydicom.dcmread(p) for p in folder.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    assert vol.array.shape == (5, 16, 16)
    np.testing.assert_allclose(vol.ijk_to_ras[:3, 3], np.array(first.ImagePositionPatient, float) * [-1, -1, 1],
                               atol=1e-3)
    np.testing.assert_allclose(vol.spacing, [*map(float, first.PixelSpacing[::-1]), 2.5], atol=1e-3)


def test_dicom_series_with_uneven_slices_is_refused():
    with pytest.raises(Exception, match="uneven slice spacing"):
        read_volume(PYDICOM_FILES / "dicomdirtests" / "98892003" / "MR700")


def test_cli_runs_as_a_module_in_a_child_process(tmp_path, models_dir, ct_file):
    """What the Slicer module does: the core's CLI in a separate Python, JSON lines on stdout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "MedSegAILib", "--models-dir", str(models_dir), "--progress", "json",
                           "segment", str(ct_file), "-m", "test-window", "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"event": "done", "case": "", "cases": 1, "failed": 0}
    assert slicerio.read_segmentation(str(tmp_path / "o" / "case1.seg.nrrd"))["segments"][0]["name"] == "Liver"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _image(path: Path, array: np.ndarray, vector: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return path


def _empty_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_volume_too_large_for_memory_is_refused_before_running(tmp_path, models_dir, ct_file):
    code, _, err = run_cli(*segment_args(models_dir, ct_file, "-m", "test-window", "-o", tmp_path / "o",
                                         "--max-memory-gb", "0.0001"))
    assert code == 2 and "needs about" in err and "--roi" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_sigterm_cancels_cleanly_with_no_partial_output(tmp_path):
    """A slow model in a child process: SIGTERM stops it between windows, exit code 130, no files."""
    script = tmp_path / "slow_cli.py"
    script.write_text(
        "import sys, time, torch\n"
        "from MedSegAILib.networks import register_network\n"
        "class Slow(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.register_buffer('w', torch.zeros(1))\n"
        "    def forward(self, x):\n"
        "        time.sleep(0.2); return torch.zeros(x.shape[0], 2, *x.shape[2:])\n"
        "register_network('slow')(lambda in_channels=1, out_channels=2: Slow())\n"
        "from MedSegAILib.cli import main\n"
        "sys.exit(main())\n")
    card = make_card(id="slow", network={"name": "slow", "args": {}}, inference={"patch_size": [8, 8, 8], "overlap": 0.0})
    models = tmp_path / "models"
    import torch

    write_bundle(models / "slow", card, {"weights.safetensors": {"w": torch.zeros(1)}})
    ct = write_volume(Volume(np.full((64, 64, 64), -1000, np.int16), np.eye(4)), tmp_path / "ct.nii.gz")
    proc = subprocess.Popen([sys.executable, str(script), "--models-dir", str(models), "--progress", "json", "segment",
                             str(ct), "-m", "slow", "-o", str(tmp_path / "o")], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if json.loads(line).get("stage") == "inference" and json.loads(line)["fraction"] > 0.15:
            proc.terminate()
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=30) == 130
    assert '"event": "cancelled"' in rest
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_fast_variant_runs_at_its_own_spacing_and_lands_on_the_input_grid(tmp_path, ct_file):
    models = tmp_path / "fast_models"
    card = make_card(id="with-fast", network={"name": "intensity_window", "args": {
        "in_channels": 1, "out_channels": 2, "windows": [[-450, 5000]]}},
        variants={"fast": {"description": "3 mm", "target_spacing": [3.0, 3.0, 3.0], "patch_size": [16, 16, 16]}})
    write_bundle(models / "fast", card, {"weights.safetensors": build_network(
        card["network"]["name"], card["network"]["args"]).state_dict()})
    out = tmp_path / "o"
    code, _, err = run_cli(*segment_args(models, ct_file, "-m", "with-fast", "-o", out, "--fast", "--nifti"))
    assert code == 0, err
    labels = read_volume(out / "case1_labels.nii.gz")
    source = read_volume(ct_file)
    np.testing.assert_allclose(labels.ijk_to_ras, source.ijk_to_ras, atol=1e-5)
    expected = asymmetric_structure(source)
    found = labels.array == 1
    assert 2 * (found & expected).sum() / (found.sum() + expected.sum()) > 0.7  # coarse, but in place


def test_fast_without_a_fast_variant_is_refused(tmp_path, models_dir, ct_file):
    code, _, err = run_cli(*segment_args(models_dir, ct_file, "-m", "test-window", "-o", tmp_path / "o", "--fast"))
    assert code == 2 and "no 'fast' variant" in err
