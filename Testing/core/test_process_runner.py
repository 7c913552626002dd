"""The child-process runner the Slicer module uses, with real child processes."""

import sys
import time

import numpy as np
import psutil
import pytest

from MedSegAILib.bundle import write_bundle
from MedSegAILib.image import read_volume, write_volume
from MedSegAILib.networks import build_network
from MedSegAILib.process_hygiene import MALLOC_THRESHOLD_BYTES, glibc_version, malloc_environment
from MedSegAISlicerLib.process import CliProcess, ProcessCancelled, ProcessFailed, SegmentRequest, kill_process_tree

from testing_support import asymmetric_structure, make_card, volume_on


@pytest.fixture
def request_files(tmp_path):
    vol = volume_on("permuted_sagittal")
    vol.array[:] = np.where(asymmetric_structure(vol), 100, -1000)
    ct = write_volume(vol, tmp_path / "input.nrrd")
    card = make_card()
    bundle = write_bundle(tmp_path / "bundle", card, {"weights.safetensors": build_network(
        card["network"]["name"], card["network"]["args"]).state_dict()})
    return ct, bundle, tmp_path / "out"


def test_segment_request_builds_the_cli_command():
    req = SegmentRequest(["a.nrrd"], "m", "out", device="cpu", roi_ras=((1, 2, 3), (4.5, 5, 6)), labels=["A", "B"],
                         fast=True, tta=True)
    assert req.command("py") == ["py", "-m", "MedSegAILib", "--progress", "json", "segment", "a.nrrd", "--model", "m",
                                 "--output", "out", "--device", "cpu", "--roi=1,2,3,4.5,5,6", "--labels", "A,B",
                                 "--fast", "--tta", "--nifti"]
    assert req.environment({"A": "1"}) == malloc_environment({"A": "1", "CUDA_VISIBLE_DEVICES": "-1"})
    assert "CUDA_VISIBLE_DEVICES" not in SegmentRequest(["a"], "m", "o").environment({})


@pytest.mark.skipif(glibc_version() is None, reason="glibc only")
def test_child_environment_sets_malloc_thresholds_and_keeps_the_users():
    env = SegmentRequest(["a"], "m", "o").environment({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=7"})
    assert env["GLIBC_TUNABLES"].split(":") == [
        "glibc.malloc.trim_threshold=7", f"glibc.malloc.mmap_threshold={MALLOC_THRESHOLD_BYTES}"]


def test_child_run_streams_progress_and_writes_the_result(request_files):
    ct, bundle, out = request_files
    seen = []
    proc = CliProcess(SegmentRequest([str(ct)], str(bundle), str(out)).command(sys.executable), on_event=seen.append)
    assert proc.wait() == 0
    kinds = [e["event"] for e in seen]
    assert kinds[0] == "start" and kinds[-1] == "done"
    fractions = [e["fraction"] for e in seen if e["event"] == "progress"]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    labels = read_volume(out / "input_labels.nii.gz")
    np.testing.assert_array_equal(labels.array == 1, asymmetric_structure(read_volume(ct)))


def test_error_in_the_child_becomes_a_clear_exception(request_files, tmp_path):
    _, bundle, out = request_files
    missing = tmp_path / "nope.nrrd"
    proc = CliProcess(SegmentRequest([str(missing)], str(bundle), str(out)).command(sys.executable))
    with pytest.raises(ProcessFailed) as info:
        proc.wait()
    assert "input not found" in info.value.message and info.value.exit_code == 2


def test_crash_of_the_child_is_reported_not_raised_through():
    proc = CliProcess([sys.executable, "-c", "import sys, os; print('dying', file=sys.stderr, flush=True); os.abort()"])
    with pytest.raises(ProcessFailed) as info:
        proc.wait()
    assert "stopped unexpectedly" in info.value.message and "dying" in info.value.message


def test_cancel_kills_the_whole_tree_and_leaves_no_output(tmp_path):
    # a launcher-like parent that starts the real worker as a child, as PythonSlicer does
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print('{\"event\": \"start\", \"case\": \"x\"}', flush=True); time.sleep(60)")
    proc = CliProcess([sys.executable, "-c", code])
    deadline = time.time() + 20
    events = []
    while not events and time.time() < deadline:
        events = proc.events()
        time.sleep(0.05)
    children = psutil.Process(proc.process.pid).children(recursive=True)
    assert events and children
    proc.cancel()
    with pytest.raises(ProcessCancelled):
        proc.finish()
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


def test_kill_process_tree_ignores_finished_processes():
    done = psutil.Popen([sys.executable, "-c", "pass"])
    done.wait()
    kill_process_tree(done.pid)
