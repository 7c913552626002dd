"""Benchmark sections on how the network runs: bfloat16 autocast, ONNX Runtime, OpenMP waiting.

Used by run_benchmark.py (sections 6-8); each function returns a dict for the JSON results.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path



def _best_alternating(functions: dict, repeats: int) -> dict[str, list[float]]:
    """Run each function once (warm-up), then ``repeats`` rounds alternating between them, so
    load from other processes hits all alike; seconds per run."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for f in functions.values():
        f()
    for _ in range(repeats):
        for name, f in functions.items():
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    return times


def load_average() -> float | None:
    """1-minute load average: how busy the machine was (other users' jobs) when measured."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


# --------------------------------------------------------------------------- bf16

def bf16_forward(net, shape, threads: int, fp32_repeats: int = 3) -> dict:
    """One forward of ``shape`` in float32 (best of ``fp32_repeats`` after a warm-up) and under
    bfloat16 autocast (one run after a warm-up; the warm-up run itself where it took over 10x the
    float32 time, as on CPUs without native bf16, where a run takes long and warming up changes
    nothing)."""
    import torch
    torch.set_num_threads(threads)
    net = net.eval()
    x = torch.randn(*shape)

    def run(dtype):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            return net(x).float()

    fp32 = _best_alternating({"fp32": lambda: run("fp32")}, fp32_repeats)["fp32"]
    t = time.perf_counter()
    y16 = run("bf16")
    bf16_s = time.perf_counter() - t
    if bf16_s < 10 * min(fp32):
        t = time.perf_counter()
        y16 = run("bf16")
        bf16_s = time.perf_counter() - t
    y32 = run("fp32")
    return {"input": list(shape), "fp32_s": min(fp32), "bf16_s": bf16_s, "speedup": min(fp32) / bf16_s,
            "max_abs_logit_diff": float((y32 - y16).abs().max()),
            "argmax_agreement": float((y32.argmax(1) == y16.argmax(1)).float().mean()),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "load_average": load_average()}


def bf16_dice(bundle, threads: int) -> dict:
    """``segment()`` of slicerio's CTChest4 (the demo model's training subject) in float32 and
    bfloat16: Dice per label against the reference, and between the two results."""
    from medsegai_training.ct_chest_demo import label_mapping, slicerio_data_dir
    from medsegai_training.data import read_label_map
    from medsegai_training.evaluation import dice
    from MedSegAILib.image import read_volume
    from MedSegAILib.pipeline import SegmentationOptions, segment

    data = slicerio_data_dir()
    mapping, _ = label_mapping(data / "Segmentation.seg.nrrd")
    reference = mapping.apply(read_label_map(data / "Segmentation.seg.nrrd").volume.array)
    volume = read_volume(data / "CTChest4.nrrd")
    results, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        t = time.perf_counter()
        results[precision] = segment([volume], bundle, SegmentationOptions(
            device="cpu", threads=threads, precision=precision, allow_empty=True)).labels.array
        seconds[precision] = time.perf_counter() - t
    labels = bundle.card.labels
    return {"case": "slicerio CTChest4 (training subject)", "seconds": seconds,
            "dice_fp32": {x.name: dice(results["fp32"], reference, x.value) for x in labels},
            "dice_bf16": {x.name: dice(results["bf16"], reference, x.value) for x in labels},
            "dice_bf16_vs_fp32": {x.name: dice(results["bf16"], results["fp32"], x.value) for x in labels}}


# --------------------------------------------------------------------------- ONNX Runtime

def onnx_vs_torch(bundle, image, threads: int, folder: Path, patch_repeats: int = 5, swi_repeats: int = 2) -> dict:
    """ONNX Runtime (CPU provider, ``threads`` intra-op threads) against PyTorch on the bundle's
    network: one patch, and MONAI's sliding window over ``image`` ``(1, C, X, Y, Z)``."""
    try:
        import onnxruntime as ort
        from medsegai_training.onnx_export import check_onnx, export_onnx
    except ImportError as exc:
        return {"skipped": f"onnxruntime not installed ({exc})"}
    import torch
    from monai.inferers import sliding_window_inference

    torch.set_num_threads(threads)
    t = time.perf_counter()
    path = export_onnx(bundle, folder / "model.onnx")
    export_s = time.perf_counter() - t
    check = check_onnx(bundle, path, threads=threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    net = bundle.build_network().eval()
    inf = bundle.card.inference

    def ort_net(window):
        return torch.from_numpy(session.run(["logits"], {"image": window.numpy()})[0])

    x = torch.randn(1, len(bundle.card.inputs), *inf.patch_size)
    outputs = {}

    def swi(name, f):
        outputs[name] = sliding_window_inference(image, inf.patch_size, inf.sw_batch_size, f, overlap=inf.overlap,
                                                 mode=inf.blending, padding_mode=inf.padding)

    with torch.inference_mode():
        patch = _best_alternating({"torch": lambda: net(x), "onnxruntime": lambda: ort_net(x)}, patch_repeats)
        whole = _best_alternating({"torch": lambda: swi("torch", net), "onnxruntime": lambda: swi("onnxruntime", ort_net)},
                                  swi_repeats)
    diff = (outputs["torch"] - outputs["onnxruntime"]).abs().max()
    agree = (outputs["torch"].argmax(1) == outputs["onnxruntime"].argmax(1)).float().mean()
    return {"onnxruntime": ort.__version__, "export_s": export_s, "check_max_abs_diff": check.max_abs_diff,
            "check_argmax_agreement": check.argmax_agreement, "patch": list(inf.patch_size),
            "model_grid": list(image.shape[2:]),
            "patch_s": {k: min(v) for k, v in patch.items()}, "swi_s": {k: min(v) for k, v in whole.items()},
            "swi_max_abs_diff": float(diff), "swi_argmax_agreement": float(agree), "load_average": load_average()}


# --------------------------------------------------------------------------- OpenMP waiting

_FORWARD_CODE = """
import sys, time, torch
from MedSegAILib.bundle import Catalog
torch.set_num_threads(int(sys.argv[1]))
bundle = Catalog.default().get(sys.argv[2])
net = bundle.build_network().eval()
x = torch.randn(1, len(bundle.card.inputs), *map(int, sys.argv[3:6]))
times = []
with torch.inference_mode():
    net(x)
    for _ in range(int(sys.argv[6])):
        t = time.perf_counter(); net(x); times.append(time.perf_counter() - t)
print(min(times))
"""


def omp_wait_policy(model_id: str, patch, threads: int, rounds: int = 2, runs: int = 5) -> dict:
    """Best forward time of one patch in fresh processes with PyTorch's OpenMP threads spinning
    while they wait (the default) or sleeping (``OMP_WAIT_POLICY=PASSIVE``), alternating. Spinning
    costs little on an idle machine and much when other processes want the same cores."""
    configs = {"default": None, "PASSIVE": "PASSIVE"}
    best: dict[str, list[float]] = {k: [] for k in configs}
    loads = []
    for _ in range(rounds):
        for name, policy in configs.items():
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            loads.append(load_average())
            out = subprocess.run([sys.executable, "-c", _FORWARD_CODE, str(threads), model_id, *map(str, patch), str(runs)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            best[name].append(float(out.split()[-1]))
    return {"patch": list(patch), "threads": threads, "forward_s": best,
            "load_average": statistics.mean(x for x in loads if x is not None) if any(loads) else None}
