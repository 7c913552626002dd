#!/usr/bin/env python
"""MedSegAI performance benchmark: prints numbers, passes or fails nothing.

One run measures

1. machine peak: float32 FMA throughput of a register-only C kernel (bench/fma_peak.c, built with the
   system's C compiler) and float32 matmul GFLOP/s with torch, both at physical-core threads;
2. network forward efficiency: FLOPs of one forward (torch.utils.flop_counter) / measured time,
   for the shipped demo DynUNet, an nnU-Net-size MONAI DynUNet on 96^3 and MedSegAI's DeepLabv3+;
3. framework overhead: MedSegAI end to end in-process and via the CLI, vs bare MONAI
   sliding_window_inference on the same preprocessed tensor with the same network and settings;
4. scale: end-to-end seconds and peak RSS (whole process and per pipeline stage) on synthetic CTs
   from 128^3 to 512x512x600, each in a fresh subprocess;
5. allocator hygiene: default glibc malloc vs MedSegAI's thresholds (page faults, CPU, time, RSS);
6. bfloat16 autocast: forward speed, and with --bf16-dice the Dice change of segment() per label;
7. ONNX Runtime vs PyTorch: one patch and the whole sliding window;
8. OpenMP waiting: PyTorch's threads spinning (default) or sleeping (OMP_WAIT_POLICY=PASSIVE).

Writes bench/results/latest.md and latest.json. See bench/README.md.

Usage:
    .venv/bin/python bench/run_benchmark.py            # full, ~10 min on 2 cores
    .venv/bin/python bench/run_benchmark.py --quick    # subset, ~3 min
    .venv/bin/python bench/run_benchmark.py --sections bf16 --bf16-dice --out /tmp/bf16
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import inference_options
from bench_report import SECTIONS, markdown
from MedSegAILib.fileio import write_text_atomic
from MedSegAILib.process_hygiene import physical_cores

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL_ID = "medsegai-ct-chest-demo"
MIB = 2**20
SECTION_RESULTS = {"peak": ("fma", "matmul"), "forward": ("forward", "forward_peak"), "overhead": ("overhead",),
                   "scale": ("scale",), "malloc": ("malloc",), "bf16": ("bf16",), "onnx": ("onnx",), "omp": ("omp",)}


# --------------------------------------------------------------------------- helpers

def machine_info(threads: int) -> dict:
    import torch
    cpu = "unknown"
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    mem = None
    try:
        import psutil
        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    versions = {}
    for mod in ("numpy", "scipy", "monai", "SimpleITK", "vtk"):
        try:
            m = __import__(mod)
            versions[mod] = getattr(m, "__version__", None) or getattr(m, "Version", lambda: "?")()
        except Exception:  # noqa: BLE001
            versions[mod] = None
    return {
        "cpu": cpu,
        "simd": [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags],
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "memory_gib": mem,
        "torch": torch.__version__,
        "torch_threads": threads,
        "torch_mkldnn": torch.backends.mkldnn.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def hwm_kib() -> int:
    """Peak resident set size of this process since the last reset (VmHWM), KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- synthetic CT

def synthetic_ct(shape_xyz, spacing_xyz, seed: int = 0) -> np.ndarray:
    """A chest-CT-like int16 volume ``(k, j, i)``: air, an elliptic body (soft tissue), two lungs,
    a spine and a ring of ribs, with mild noise. Built slice by slice (no full-size temporaries)."""
    nx, ny, nz = shape_xyz
    sx, sy, sz = spacing_xyz
    rng = np.random.default_rng(seed)
    vol = np.empty((nz, ny, nx), dtype=np.int16)
    # physical coordinates (mm) centred on the volume; body fills ~80 % of the field of view
    x = (np.arange(nx) - (nx - 1) / 2) * sx
    y = (np.arange(ny) - (ny - 1) / 2) * sy
    X, Y = np.meshgrid(x, y)  # (ny, nx)
    fov_x, fov_y = nx * sx, ny * sy
    ax, ay = 0.42 * fov_x, 0.32 * fov_y
    body = (X / ax) ** 2 + (Y / ay) ** 2 <= 1
    ring = ((X / (0.9 * ax)) ** 2 + (Y / (0.9 * ay)) ** 2 <= 1) & ((X / (0.84 * ax)) ** 2 + (Y / (0.84 * ay)) ** 2 > 1)
    spine = (X ** 2 + (Y - 0.7 * ay) ** 2) <= (0.13 * ay) ** 2
    noise = rng.normal(0, 20, size=(16, ny, nx)).astype(np.int16)
    zlen = nz * sz
    for k in range(nz):
        zc = (k - (nz - 1) / 2) * sz / (0.5 * zlen)  # -1 .. 1
        sl = np.full((ny, nx), -1000, dtype=np.int16)
        sl[body] = 40
        scale = max(0.0, 1 - zc ** 2) ** 0.5  # lungs taper towards both ends
        if scale > 0.05:
            for side in (-1, 1):
                lung = ((X - side * 0.42 * ax) / (0.38 * ax * scale)) ** 2 + ((Y + 0.05 * ay) / (0.75 * ay * scale)) ** 2 <= 1
                sl[lung] = -850
        rib_on = (int(k * sz / 25.0) % 2) == 0  # ribs every ~5 cm, 2.5 cm thick bands
        if rib_on:
            sl[ring] = 600
        sl[spine] = 700
        sl += noise[k % 16]
        vol[k] = sl
    return vol


def write_ct(path: Path, shape_xyz, spacing_xyz) -> Path:
    import SimpleITK as sitk
    arr = synthetic_ct(shape_xyz, spacing_xyz)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing_xyz))
    img.SetOrigin(tuple(-(n - 1) * s / 2 for n, s in zip(shape_xyz, spacing_xyz)))  # LPS identity: like most CTs
    sitk.WriteImage(img, str(path), False)
    return path


# --------------------------------------------------------------------------- 1. machine peak

def bench_matmul(seconds: float, n: int = 2048) -> dict:
    import torch
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    for _ in range(2):
        torch.mm(a, b, out=c)
    rates = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(rates) < 3:
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        rates.append(2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return {"n": n, "runs": len(rates), "gflops_peak": max(rates), "gflops_median": statistics.median(rates)}


def bench_fma(seconds: float, threads: int) -> dict:
    """Peak float32 FMA throughput from ``fma_peak.c``; ``{"skipped": why}`` without a C compiler
    with AVX2/FMA and OpenMP (then the matmul is the only peak)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return {"skipped": "no C compiler on PATH"}
    with tempfile.TemporaryDirectory(prefix="medsegai-fma-") as tmp:
        exe = Path(tmp) / "fma_peak"
        build = subprocess.run([compiler, "-O2", "-mavx2", "-mfma", "-fopenmp", str(HERE / "fma_peak.c"), "-o", str(exe)],
                               capture_output=True, text=True)
        if build.returncode != 0:
            return {"skipped": f"{Path(compiler).name} could not build fma_peak.c: {build.stderr.strip()[:200]}"}
        out = subprocess.run([str(exe), str(threads), str(seconds)], capture_output=True, text=True, check=True)
    used, best, median, rounds, _ = out.stdout.split()
    return {"threads": int(used), "gflops_peak": float(best), "gflops_median": float(median), "runs": int(rounds),
            "compiler": Path(compiler).name}


def forward_peak(res: dict) -> tuple[float, str]:
    """The peak that section 2's efficiencies divide by: the FMA kernel's where it ran, else the matmul's."""
    fma = res.get("fma", {})
    if "gflops_peak" in fma:
        return fma["gflops_peak"], "FMA"
    return res["matmul"]["gflops_peak"], "matmul"


# --------------------------------------------------------------------------- 2. forward efficiency

def count_flops(net, x) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    return int(counter.get_total_flops())


def time_runs(run, budget_s: float, max_runs: int) -> tuple[float, list[float]]:
    """Seconds of a first (warm-up: oneDNN primitive creation, ONNX Runtime kernel selection) call of
    ``run``, then of up to ``max_runs`` more within ``budget_s``."""
    return time_alternating({"run": run}, budget_s, max_runs)["run"]


def time_alternating(runs: dict, budget_s: float, max_runs: int) -> dict:
    """Like :func:`time_runs` for several ways of doing the same work, in rounds that alternate their
    order, so that each sees the same machine (on shared cores a run alone drifts by 5-30 %):
    ``{name: (first seconds, [seconds of each round])}``."""
    firsts = {}
    for name, run in runs.items():
        t = time.perf_counter()
        run()
        firsts[name] = time.perf_counter() - t
    times = {name: [] for name in runs}
    spent, names = sum(firsts.values()), list(runs)
    while len(times[names[0]]) < max_runs and (not times[names[0]] or spent + sum(v[-1] for v in times.values())
                                               < budget_s * len(names)):
        for name in (names if len(times[names[0]]) % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t)
            spent += times[name][-1]
    return {name: (firsts[name], times[name]) for name in runs}


def ort_session(net, shape, threads: int):
    """``net`` as MedSegAI's ONNX Runtime backend runs it (CPU provider, ``threads`` intra-op
    threads, no idle spinning; see ``MedSegAILib.onnx_inference``), or the reason it cannot."""
    try:
        import onnxruntime as ort
        from medsegai_training.onnx_export import onnx_bytes
    except ImportError as exc:
        return f"onnxruntime not installed ({exc})"
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes(net, shape), options, providers=["CPUExecutionProvider"])


def bench_forward(name: str, net, shape, budget_s: float, peak: float, max_runs: int = 5,
                  onnx_threads: int | None = None) -> dict:
    """One forward of ``net`` on a random ``shape`` input in PyTorch as MedSegAI runs it (with
    ``MedSegAILib.networks.cpu_kernels``), with PyTorch's own kernel choice, and, with ``onnx_threads``,
    in ONNX Runtime: best seconds and achieved GFLOP/s against ``peak``."""
    import torch
    from MedSegAILib.networks.cpu_kernels import use_fast_cpu_kernels
    net = net.eval()
    x = torch.randn(*shape)
    flops = count_flops(net, x)
    medsegai = copy.deepcopy(net)
    use_fast_cpu_kernels(medsegai)
    with torch.inference_mode():
        timed = time_alternating({"pytorch": lambda: net(x), "medsegai": lambda: medsegai(x)}, budget_s, max_runs)
    (_, default_times), (warm, times) = timed["pytorch"], timed["medsegai"]
    best = min(times)
    params = sum(p.numel() for p in net.parameters())
    result = {"network": name, "input": list(shape), "params_M": params / 1e6, "gflop": flops / 1e9,
              "first_s": warm, "best_s": best, "median_s": statistics.median(times), "runs": len(times),
              "gflops": flops / best / 1e9, "pct_peak": 100 * flops / best / 1e9 / peak,
              "pytorch_kernels": {"best_s": min(default_times), "runs": len(default_times),
                                  "pct_peak": 100 * flops / min(default_times) / 1e9 / peak}}
    if onnx_threads:
        session = ort_session(net, shape, onnx_threads)
        if isinstance(session, str):
            result["onnxruntime"] = {"skipped": session}
        else:
            feed = {session.get_inputs()[0].name: x.numpy()}
            _, ort_times = time_runs(lambda: session.run(None, feed), budget_s, max_runs)
            ort_best = min(ort_times)
            result["onnxruntime"] = {"best_s": ort_best, "runs": len(ort_times), "gflops": flops / ort_best / 1e9,
                                     "pct_peak": 100 * flops / ort_best / 1e9 / peak}
    return result


def add_matmul_share(forward: list[dict], matmul_gflops: float) -> None:
    for f in forward:
        if "gflops" in f:
            f["pct_matmul"] = 100 * f["gflops"] / matmul_gflops


def nnunet_dynunet():
    from monai.networks.nets import DynUNet
    strides = [[1, 1, 1]] + [[2, 2, 2]] * 5
    return DynUNet(3, 1, 5, kernel_size=[[3, 3, 3]] * 6, strides=strides, upsample_kernel_size=strides[1:],
                   filters=[32, 64, 128, 256, 320, 320], norm_name=("instance", {"affine": True}), res_block=False)


# --------------------------------------------------------------------------- 3. overhead

def open_bundle(model_id: str = MODEL_ID):
    from MedSegAILib.bundle import Catalog
    return Catalog.default().get(model_id)


def run_e2e_inprocess(path: Path, out_dir: Path, bundle, threads: int, runtime: str = "auto", models=None) -> dict:
    """One case as a batch runs it: ``models`` holds the network loaded by earlier cases (None: load it)."""
    from MedSegAILib.image import read_volume
    from MedSegAILib.outputs import write_outputs
    from MedSegAILib.pipeline import SegmentationOptions, segment
    t0 = time.perf_counter()
    vol = read_volume(path)
    t1 = time.perf_counter()
    result = segment([vol], bundle, SegmentationOptions(device="cpu", threads=threads, allow_empty=True, runtime=runtime),
                     models=models)
    t2 = time.perf_counter()
    write_outputs(result, vol, out_dir, "case")
    t3 = time.perf_counter()
    return {"total_s": t3 - t0, "stages": {"load": t1 - t0, **result.seconds, "write": t3 - t2},
            "segment_s": t2 - t1}


def bare_swi_runner(path: Path, bundle, threads: int):
    """Bare MONAI sliding_window_inference on the already-preprocessed tensor: a function that
    runs it once and returns its seconds, and the facts of that work."""
    import torch
    from monai.inferers import sliding_window_inference
    from MedSegAILib.image import read_volume
    from MedSegAILib.networks.cpu_kernels import use_fast_cpu_kernels
    from MedSegAILib.sliding_window import count_windows
    from MedSegAILib.preprocessing import prepare_case
    card = bundle.card
    prepared = prepare_case([read_volume(path)], card.preprocessing)
    x = torch.from_numpy(prepared.image)[None]
    net = bundle.build_network().eval()
    use_fast_cpu_kernels(net)  # the kernels MedSegAI runs: the ratio is then the framework's cost alone
    inf = card.inference

    def run_once() -> float:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            t = time.perf_counter()
            sliding_window_inference(x, inf.patch_size, inf.sw_batch_size, net, overlap=inf.overlap, mode=inf.blending,
                                     padding_mode=inf.padding)
            return time.perf_counter() - t

    return run_once, {"model_grid": list(x.shape[2:]), "windows": count_windows(x.shape[2:], inf.patch_size, inf.overlap)}


def paired_overhead(ct: Path, out_dir: Path, bundle, threads: int, rounds: int) -> dict:
    """MedSegAI in process against the bare sliding window, in alternating order round by round,
    so that both see the same machine (on these shared cores either alone drifts by 30 %): the
    ratio of each round, and the best of each. Both run the network in PyTorch, whatever runtime the
    card names for CPUs, so that the ratio is the framework's cost alone."""
    from MedSegAILib.runtime import LoadedModels
    run_bare, bare = bare_swi_runner(ct, bundle, threads)
    models = LoadedModels()  # as the CLI runs a batch: the network is loaded by the first case
    first = run_e2e_inprocess(ct, out_dir, bundle, threads, "torch", models)
    bare["first_s"] = run_bare()
    ours, bares = [], []
    for r in range(rounds):
        for which in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
            if which == "ours":
                ours.append(run_e2e_inprocess(ct, out_dir, bundle, threads, "torch", models))
            else:
                bares.append(run_bare())
    best = min(ours, key=lambda o: o["total_s"])
    bare["best_s"] = min(bares)
    ratios = [o["segment_s"] / b for o, b in zip(ours, bares)]
    return {"repeats": rounds, "inprocess_first_s": first["total_s"], "inprocess_best_s": best["total_s"],
            "segment_best_s": min(o["segment_s"] for o in ours), "inprocess_stages": best["stages"],
            "segment_s": [o["segment_s"] for o in ours], "bare_s": bares, "round_ratios": ratios,
            "ratio_median": statistics.median(ratios), "bare_swi": bare}


def run_measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command to its end: wall seconds, its CPU seconds and minor page faults (from
    RUSAGE_CHILDREN, so one child at a time) and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return {"wall_s": wall, "cpu_user_s": after.ru_utime - before.ru_utime, "cpu_sys_s": after.ru_stime - before.ru_stime,
            "minflt": after.ru_minflt - before.ru_minflt, "stdout": proc.stdout}


def run_cli(path: Path, out_dir: Path, threads: int, *extra: str) -> float:
    exe = Path(sys.executable).parent / "medsegai"
    cmd = [str(exe), "--progress", "none", "segment", str(path), "-m", MODEL_ID, "-o", str(out_dir),
           "--device", "cpu", "--threads", str(threads), "--allow-empty", *extra]
    return run_measured(cmd)["wall_s"]


# What a minimal hand-written script does for the same labels: SimpleITK read, resampling to the
# model spacing, CT window, MONAI sliding window, argmax, nearest-neighbour resampling of the labels
# back to the scan, compressed NRRD. No reorientation, no per-class interpolation, no clean-up.
BARE_SCRIPT = """
import sys
import numpy as np, SimpleITK as sitk, torch
from monai.inferers import sliding_window_inference
from MedSegAILib.bundle import Catalog
src, out, model, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
bundle = Catalog.default().get(model)
pre, inf = bundle.card.preprocessing, bundle.card.inference
image = sitk.ReadImage(src)
size = [int(round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), pre.target_spacing)]
resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), pre.target_spacing,
                          image.GetDirection(), -1000.0, sitk.sitkFloat32)
low, high = pre.normalization.window
array = (np.clip(sitk.GetArrayFromImage(resampled), low, high) - low) / (high - low)
x = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 1, 0)))[None, None]
net = bundle.build_network().eval()
with torch.inference_mode():
    logits = sliding_window_inference(x, inf.patch_size, inf.sw_batch_size, net, overlap=inf.overlap, mode=inf.blending,
                                      padding_mode=inf.padding)
labels = sitk.GetImageFromArray(logits.argmax(1)[0].numpy().astype(np.uint8).transpose(2, 1, 0))
labels.CopyInformation(resampled)
sitk.WriteImage(sitk.Resample(labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0), out, True)
"""


def run_bare_script(path: Path, out_path: Path, threads: int) -> float:
    return run_measured([sys.executable, "-c", BARE_SCRIPT, str(path), str(out_path), MODEL_ID, str(threads)])["wall_s"]


def cli_imports(repeats: int) -> dict:
    """Seconds and CPU seconds of a fresh interpreter importing what ``medsegai segment`` needs for a
    U-Net bundle with label outputs, against the floor (torch alone) and what MONAI would add
    (best of ``repeats``)."""
    needed = "import MedSegAILib.cli, MedSegAILib.pipeline, MedSegAILib.outputs, MedSegAILib.image, MedSegAILib.networks"
    variants = {"torch alone": "import torch",
                "the CLI's (no MONAI, no VTK)": needed,
                "the CLI's plus `import monai`": needed + "\nimport monai"}
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, code in variants.items():
            runs[name].append(run_measured([sys.executable, "-c", code]))
    return {name: {"wall_s": min(r["wall_s"] for r in rs), "cpu_s": min(r["cpu_user_s"] + r["cpu_sys_s"] for r in rs)}
            for name, rs in runs.items()}


# --------------------------------------------------------------------------- 4/5. child process

class StageMemory:
    """Seconds and peak RSS per pipeline stage and per instrumented sub-step.

    VmHWM is read and reset at every boundary (stage change, sub-step entry or exit); each closed
    segment's peak is attributed to every label on the stack, so a stage's peak includes its
    sub-steps'."""

    def __init__(self, first: str) -> None:
        self.enabled = reset_hwm()
        self.stack = [first]
        self.peaks: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.start_rss = {first: rss_kib()}

    def boundary(self) -> None:
        h = hwm_kib()
        for label in self.stack:
            self.peaks[label] = max(self.peaks.get(label, 0), h)
        reset_hwm()

    def stage(self, name: str) -> None:
        if self.stack == [name]:
            return
        self.boundary()
        self.stack = [name]
        self.start_rss[name] = rss_kib()

    def wrap(self, owner, attr: str, label: str) -> None:
        fn = getattr(owner, attr)
        tracker = self

        def wrapper(*args, **kwargs):
            tracker.boundary()
            full = tracker.stack[-1] + "/" + label
            tracker.stack.append(full)
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                tracker.seconds[full] = tracker.seconds.get(full, 0.0) + time.perf_counter() - t
                tracker.calls[full] = tracker.calls.get(full, 0) + 1
                tracker.boundary()
                tracker.stack.pop()

        setattr(owner, attr, wrapper)


def child_main(path: Path, out_dir: Path, threads: int) -> None:
    """One end-to-end case in this (fresh) process; prints one JSON line with seconds and peak RSS
    per stage and sub-step. Sub-steps are timed by wrapping core functions in this process only."""
    t_import = time.perf_counter()
    from MedSegAILib import measurements, outputs, pipeline, postprocessing, surfaces
    from MedSegAILib.image import read_volume
    from MedSegAILib.inference import InferenceEngine
    from MedSegAILib.onnx_inference import OnnxEngine
    from MedSegAILib.outputs import write_outputs
    from MedSegAILib.runtime import choose_runtime
    from MedSegAILib.pipeline import SegmentationOptions, segment
    from MedSegAILib.preprocessing.spatial import SpatialPlan
    from MedSegAILib.progress import ProgressReporter
    bundle = open_bundle()
    import_s = time.perf_counter() - t_import

    mem = StageMemory("load")
    mem.wrap(pipeline, "prepare_case", "prepare_case")
    mem.wrap(InferenceEngine, "predict", "predict")
    mem.wrap(OnnxEngine, "predict", "predict")
    mem.wrap(SpatialPlan, "labels_to_source", "labels_to_source")
    mem.wrap(pipeline, "postprocess", "cleanup")
    mem.wrap(postprocessing, "keep_components", "components")
    mem.wrap(postprocessing, "fill_holes", "fill_holes")
    mem.wrap(outputs, "write_seg_nrrd", "seg_nrrd")
    # outputs imports these when it writes surfaces and measurements; per-label steps run in
    # threads, which one stack of labels cannot follow, so only the whole steps are timed
    mem.wrap(surfaces, "label_surfaces", "surfaces")
    mem.wrap(measurements, "measure", "measure")

    t0 = time.perf_counter()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    vol = read_volume(path)
    reporter = ProgressReporter(lambda event: mem.stage(event.stage))
    result = segment([vol], bundle, SegmentationOptions(device="cpu", threads=threads, allow_empty=True), reporter)
    t1 = time.perf_counter()
    mem.stage("write")
    write_outputs(result, vol, out_dir, "case")
    t2 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    mem.stage("end")
    plan = SpatialPlan.for_grid(vol.grid, bundle.card.preprocessing.target_spacing)
    stage_peaks = {k: v / 1024 for k, v in mem.peaks.items() if "/" not in k}
    out = {
        "input_shape_xyz": list(vol.array.shape[::-1]),
        "runtime": choose_runtime("auto", bundle.card, "cpu"),
        "input_mib": vol.array.nbytes / MIB,
        "model_grid_xyz": list(plan.model_grid.size_ijk),
        "import_s": import_s,
        "total_s": t2 - t0,
        "stages_s": {"load+segment": t1 - t0, **result.seconds, "write": t2 - t1},
        # the work itself (read to written), imports excluded
        "work": {"cpu_user_s": usage.ru_utime - usage0.ru_utime, "cpu_sys_s": usage.ru_stime - usage0.ru_stime,
                 "minflt": usage.ru_minflt - usage0.ru_minflt},
        # resetting VmHWM also lowers ru_maxrss, so the whole-run peak is the largest stage peak
        "peak_rss_mib": max(stage_peaks.values()) if mem.enabled else
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stage_peak_rss_mib": stage_peaks if mem.enabled else None,
        "stage_start_rss_mib": {k: v / 1024 for k, v in mem.start_rss.items() if k != "end"},
        "substeps": {k: {"s": mem.seconds[k], "calls": mem.calls[k],
                         "peak_rss_mib": mem.peaks.get(k, 0) / 1024 if mem.enabled else None}
                     for k in mem.seconds},
    }
    print("BENCH_JSON " + json.dumps(out), flush=True)


def onnx_child_main(path: Path, folder: Path, threads: int) -> None:
    """Section 7 in a fresh process (so OMP_WAIT_POLICY from its environment applies to PyTorch)."""
    import torch
    from MedSegAILib.image import read_volume
    from MedSegAILib.preprocessing import prepare_case
    bundle = open_bundle()
    image = torch.from_numpy(prepare_case([read_volume(path)], bundle.card.preprocessing).image)[None]
    folder.mkdir(parents=True, exist_ok=True)
    print("BENCH_JSON " + json.dumps(inference_options.onnx_vs_torch(bundle, image, threads, folder)), flush=True)


def run_onnx_child(path: Path, folder: Path, threads: int, omp_wait_policy: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    cmd = [sys.executable, str(Path(__file__).resolve()), "--onnx-child", str(path), "--child-out", str(folder),
           "--threads", str(threads)]
    stdout = run_measured(cmd, env)["stdout"]
    return json.loads(next(x for x in stdout.splitlines() if x.startswith("BENCH_JSON "))[len("BENCH_JSON "):])


def malloc_env(tuned: bool) -> dict:
    """This environment with glibc's default malloc, or with MedSegAI's thresholds (what the CLI
    sets with mallopt and the Slicer module in its child's environment)."""
    from MedSegAILib.process_hygiene import malloc_environment
    env = {k: v for k, v in os.environ.items()
           if k != "GLIBC_TUNABLES" and not (k.startswith("MALLOC_") and k.endswith("_"))}
    return malloc_environment(env) if tuned else env


def run_child(path: Path, out_dir: Path, threads: int, tuned_malloc: bool = True) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--child-out", str(out_dir),
           "--threads", str(threads)]
    run = run_measured(cmd, malloc_env(tuned_malloc))
    line = next(x for x in run.pop("stdout").splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line[len("BENCH_JSON "):])
    data["process"] = run
    data["process_wall_s"] = run["wall_s"]
    return data


# --------------------------------------------------------------------------- main

def carry_sections(res: dict, previous: dict) -> None:
    """Copy into ``res`` the sections it did not run from ``previous`` (an earlier latest.json),
    each keeping the date of the run that measured it, so that a partial rerun leaves one file
    whose every section says when it was measured."""
    carried = dict(res.get("carried", {}))
    earlier = previous.get("carried", {})
    for section, keys in SECTION_RESULTS.items():
        if section in res["sections"] or not all(k in previous for k in keys):
            continue
        res.update({k: previous[k] for k in keys})
        carried[section] = earlier.get(section, previous["date"])
    res["carried"] = carried


def slicerio_ct() -> Path:
    """slicerio's CTChest4: the demo model's own (training) subject."""
    import slicerio
    return Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd"


def summarise(run: dict) -> dict:
    """What the allocator section reports of one child run."""
    work = run["work"]
    return {"total_s": run["total_s"], "inference_s": run["stages_s"].get("inference"),
            "cpu_s": work["cpu_user_s"] + work["cpu_sys_s"], "cpu_sys_s": work["cpu_sys_s"], "minflt": work["minflt"],
            "peak_rss_mib": run["peak_rss_mib"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~3 minute subset")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results folder (latest.md, latest.json)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess measurements")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    ap.add_argument("--keep-other-sections", action="store_true",
                    help="carry the sections not run now over from the existing latest.json in --out, each with "
                         "its own date (default: write only what this run measured)")
    ap.add_argument("--bf16-dice", action="store_true",
                    help="also segment CTChest4 in bf16 for the Dice change (done anyway where bf16 is faster; "
                         "takes long where it is slower)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--onnx-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = args.threads or physical_cores()
    if args.child:
        child_main(args.child, args.child_out, threads)
        return
    if args.onnx_child:
        onnx_child_main(args.onnx_child, args.child_out, threads)
        return
    sections = [x for x in args.sections.split(",") if x]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    if "forward" in sections and "peak" not in sections:
        sections.insert(0, "peak")  # efficiency is relative to the peak

    import torch
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    quick = args.quick
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": quick, "sections": sections,
                 "load_average_start": inference_options.load_average(), "machine": machine_info(threads)}
    bundle = open_bundle()
    card = bundle.card
    patch = list(card.inference.patch_size)
    step = iter(range(1, len(sections) + 1))

    def header(title: str) -> None:
        log(f"[{next(step)}/{len(sections)}] {title}")

    if "peak" in sections:
        header("machine peak")
        res["fma"] = bench_fma(0.5 if quick else 1.5, threads)
        res["matmul"] = bench_matmul(0.8 if quick else 2.0)
        log(f"      FMA {res['fma'].get('gflops_peak', res['fma'].get('skipped'))}, matmul "
            f"{res['matmul']['gflops_peak']:.1f} GFLOP/s")

    if "forward" in sections:
        header("network forward efficiency")
        from MedSegAILib.networks import build_network
        peak, res["forward_peak"] = forward_peak(res)
        fw = [bench_forward(f"demo DynUNet {card.network.args.get('filters')}", bundle.build_network(),
                            [1, 1, *patch], 5 if quick else 10, peak, onnx_threads=threads)]
        brain = open_bundle("medsegai-mr-brain-extraction")
        fw.append(bench_forward(f"brain-extraction U-Net {brain.card.network.args.get('filters')}",
                                brain.build_network(), [1, 1, *brain.card.inference.patch_size], 5 if quick else 10,
                                peak, onnx_threads=threads))
        dl_args = {"in_channels": 1, "out_channels": card.num_classes, "channels": [16, 32, 64, 128]}
        fw.append(bench_forward("MedSegAI DeepLabv3+ [16..128], aspp 64", build_network("deeplabv3plus", dl_args),
                                [1, 1, *patch], 5 if quick else 10, peak, onnx_threads=threads))
        if quick:
            fw.append({"network": "nnU-Net-size DynUNet 96^3", "skipped": "--quick"})
        else:
            fw.append(bench_forward("nnU-Net-size DynUNet [32..320] (MONAI)", nnunet_dynunet(), [1, 1, 96, 96, 96], 30,
                                    peak, max_runs=3, onnx_threads=threads))
        for f in fw:
            if "skipped" not in f:
                ort = f.get("onnxruntime", {})
                ort_text = f"{ort['best_s']:.3f} s ({ort['pct_peak']:.0f} %)" if "best_s" in ort else ort.get("skipped")
                log(f"      {f['network']}: {f['gflop']:.1f} GFLOP, {f['best_s']:.3f} s, {f['gflops']:.1f} GFLOP/s "
                    f"({f['pct_peak']:.0f} % of the {res['forward_peak']} peak); ONNX Runtime {ort_text}")
        add_matmul_share(fw, res["matmul"]["gflops_peak"])
        res["forward"] = fw

    with tempfile.TemporaryDirectory(prefix="medsegai-bench-") as tmp:
        tmp = Path(tmp)
        shape, spacing = (256, 256, 120), (1.5, 1.5, 2.5)
        ct = write_ct(tmp / "overhead.nrrd", shape, spacing) if {"overhead", "onnx"} & set(sections) else None

        if "overhead" in sections:
            header("framework overhead")
            overhead = {"shape_xyz": list(shape), "spacing_xyz": list(spacing), "patch": patch,
                        "overlap": card.inference.overlap, "cli_s": None,
                        **paired_overhead(ct, tmp / "out_a", bundle, threads, 3 if quick else 7)}
            torch.set_num_threads(threads)
            if not args.no_cli:
                cli_reps = 1 if quick else 2
                overhead["cli_s"] = min(run_cli(ct, tmp / "out_b", threads) for _ in range(cli_reps))
                overhead["cli_labels_only_s"] = min(run_cli(ct, tmp / "out_b2", threads, "--no-measurements")
                                                    for _ in range(cli_reps))
                overhead["cli_runtime"] = bundle.card.inference.cpu_runtime
                if overhead["cli_runtime"] != "torch":
                    overhead["cli_labels_only_torch_s"] = min(
                        run_cli(ct, tmp / "out_b3", threads, "--no-measurements", "--runtime", "torch")
                        for _ in range(cli_reps))
                overhead["bare_script_s"] = min(run_bare_script(ct, tmp / "bare.nrrd", threads) for _ in range(cli_reps))
                overhead["imports"] = cli_imports(2 if quick else 3)
                overhead["imports_repeats"] = 2 if quick else 3
            res["overhead"] = overhead
            log(f"      in-process {overhead['inprocess_best_s']:.2f} s, CLI {overhead['cli_s']} s, bare SWI "
                f"{overhead['bare_swi']['best_s']:.2f} s, segment()/bare per round: median {overhead['ratio_median']:.2f}x")

        if "scale" in sections:
            header("scale")
            spacing = (0.8, 0.8, 1.0)
            sizes = [(128, 128, 128), (256, 256, 200), (512, 512, 300)] + ([] if quick else [(512, 512, 600)])
            scale = []
            for size in sizes:
                path = write_ct(tmp / f"scale_{'x'.join(map(str, size))}.nrrd", size, spacing)
                r = run_child(path, tmp / "out_scale", threads)
                r["spacing_xyz"] = list(spacing)
                scale.append(r)
                log(f"      {size}: {r['total_s']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB, stages "
                    + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_s"].items()))
                path.unlink()
            res["scale"] = scale

        if "malloc" in sections:
            header("allocator hygiene")
            size = (256, 256, 200) if quick else (512, 512, 300)
            cases = {"x".join(map(str, size)): write_ct(tmp / "malloc.nrrd", size, (0.8, 0.8, 1.0)),
                     "CTChest4 (128x128x34)": slicerio_ct()}
            reps = 1 if quick else 2
            mruns: dict = {case: {"glibc default": [], "MedSegAI thresholds": []} for case in cases}
            for case, path in cases.items():
                for _ in range(reps):
                    for name, tuned in (("glibc default", False), ("MedSegAI thresholds", True)):
                        r = summarise(run_child(path, tmp / "out_malloc", threads, tuned))
                        mruns[case][name].append(r)
                        log(f"      {case} {name}: {r['total_s']:.2f} s, {r['minflt']} page faults, "
                            f"sys {r['cpu_sys_s']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB")
            res["malloc"] = {"repeats": reps, "env": malloc_env(True).get("GLIBC_TUNABLES"), "runs": mruns}

        if "bf16" in sections:
            header("bf16 autocast")
            b = inference_options.bf16_forward(bundle.build_network(), [1, 1, *patch], threads)
            log(f"      forward fp32 {b['fp32_s']:.3f} s, bf16 {b['bf16_s']:.3f} s ({b['speedup']:.2f}x)")
            if args.bf16_dice or b["speedup"] > 1:
                b["segment"] = inference_options.bf16_dice(bundle, threads)
                log(f"      Dice bf16 vs fp32: {b['segment']['dice_bf16_vs_fp32']}")
            res["bf16"] = b

        if "onnx" in sections:
            header("ONNX Runtime vs PyTorch")
            res["onnx"] = {}
            for policy in ("default", "PASSIVE"):  # PyTorch's OpenMP threads spinning or sleeping (section 8)
                res["onnx"][policy] = run_onnx_child(ct, tmp / "onnx", threads, policy if policy != "default" else None)
                log(f"      OMP_WAIT_POLICY {policy}: {res['onnx'][policy]}")

        if "omp" in sections:
            header("OpenMP wait policy")
            res["omp"] = inference_options.omp_wait_policy(MODEL_ID, patch, threads, 1 if quick else 2)
            log(f"      {res['omp']}")

    res["load_average_end"] = inference_options.load_average()
    res["bench_wall_s"] = time.perf_counter() - t_start
    previous = args.out / "latest.json"
    if args.keep_other_sections and previous.exists():
        carry_sections(res, json.loads(previous.read_text()))
    md = markdown(res)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "latest.md", md + "\n")
    write_text_atomic(args.out / "latest.json", json.dumps(res, indent=1, default=float) + "\n")
    print(md)
    log(f"wrote {args.out / 'latest.md'} and {args.out / 'latest.json'} in {res['bench_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
