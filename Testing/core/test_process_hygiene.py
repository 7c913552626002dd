"""Allocator and import settings of the segmentation process (MedSegAILib.process_hygiene)."""

import subprocess
import sys

import pytest

from MedSegAILib import process_hygiene
from MedSegAILib.process_hygiene import MALLOC_THRESHOLD_BYTES, malloc_environment, tune_malloc

GLIBC = process_hygiene.glibc_version() is not None
MALLINFO2 = GLIBC and tuple(int(x) for x in process_hygiene.glibc_version().split(".")[:2]) >= (2, 33)
OURS = f"glibc.malloc.mmap_threshold={MALLOC_THRESHOLD_BYTES}:glibc.malloc.trim_threshold={MALLOC_THRESHOLD_BYTES}"


@pytest.fixture
def not_glibc(monkeypatch):
    monkeypatch.setattr(process_hygiene, "glibc_version", lambda: None)
    monkeypatch.setattr(process_hygiene.ctypes, "CDLL", lambda *a: pytest.fail("no C library call off glibc"))


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_environment_adds_the_thresholds_and_keeps_the_users():
    assert malloc_environment({"A": "1"}) == {"A": "1", "GLIBC_TUNABLES": OURS}
    assert malloc_environment({"GLIBC_TUNABLES": "glibc.cpu.x86_ibt=on"})["GLIBC_TUNABLES"] == "glibc.cpu.x86_ibt=on:" + OURS
    mine = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096"}
    assert malloc_environment(mine)["GLIBC_TUNABLES"] == (
        f"glibc.malloc.mmap_threshold=4096:glibc.malloc.trim_threshold={MALLOC_THRESHOLD_BYTES}")
    both = {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1", "MALLOC_MMAP_THRESHOLD_": "2"}
    assert malloc_environment(both) == both


def test_off_glibc_nothing_is_set_or_called(not_glibc):
    assert malloc_environment({"A": "1"}) == {"A": "1"}
    assert tune_malloc({}) is False


@pytest.mark.skipif(not MALLINFO2, reason="needs glibc >= 2.33 (mallinfo2)")
def test_tune_malloc_keeps_a_large_block_off_mmap():
    """In a fresh process: after tune_malloc a 64 MiB block comes from the heap, not from mmap."""
    code = """
import ctypes, sys
from MedSegAILib.process_hygiene import tune_malloc
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
tuned = tune_malloc({}) if sys.argv[1] == "tuned" else False
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)
print(tuned, libc.mallinfo2().hblkhd - before >= 64 << 20)
libc.free(ctypes.c_void_p(block))
"""
    for mode, expected in [("default", "False True"), ("tuned", "True False")]:
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True).stdout
        assert out.split() == expected.split(), mode


def test_skip_unused_imports_in_a_fresh_process():
    code = """
from MedSegAILib.process_hygiene import UNUSED_IMPORTS, skip_unused_imports
skip_unused_imports()
import monai.inferers
for name in UNUSED_IMPORTS:
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(name + " was importable")
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_label_only_outputs_never_import_vtk(tmp_path):
    """VTK costs about a second of start-up; only surfaces and measurements need it."""
    code = f"""
import sys
import numpy as np
from MedSegAILib.cli import entry_point
from MedSegAILib.image import Volume
from MedSegAILib.outputs import OutputOptions, segment_infos
from MedSegAILib.segnrrd import write_seg_nrrd
write_seg_nrrd(r"{tmp_path / 'x.seg.nrrd'}", np.ones((2, 2, 2), np.uint8), np.eye(4), [])
print("vtk" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]
