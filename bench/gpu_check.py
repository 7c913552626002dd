"""The GPU measurements of issue #5, as one short run for a lent GPU machine (its device time is scarce).

1. **Forward**: one window of each network (the shipped demo and brain-extraction weights, MedSegAI's
   DeepLabv3+ and an nnU-Net-size U-Net with random weights) in float32, float16 autocast (MedSegAI's
   ``auto`` on CUDA) and bfloat16 autocast, batch 1 and 4: milliseconds per window, TFLOP/s, and the
   largest logit difference and argmax agreement against float32.
2. **Whole volume**: ``InferenceEngine.predict`` (MedSegAI's own sliding window, blending and softmax) of
   the nnU-Net-size U-Net on 128^3 windows over a CT-sized model grid (512 x 512 x 600 voxels, i.e. a CT
   at its native spacing), with the volume stitched on the GPU and on the host: seconds and peak GPU
   memory.

It needs only torch, numpy, safetensors and jsonschema (for the card), not SimpleITK or VTK, so that it
runs in the GPU machine's image with small wheels carried. From the repository root, here::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_17_x86_64 -d .whl jsonschema jsonschema-specifications referencing rpds-py attrs

then on the device (``carry: [".whl"]``)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=/tmp/site:MedSegAI python3 bench/gpu_check.py --out $OUT

On a CPU (``--device cpu --quick``) the same code runs on small sizes, to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "MedSegAI"))

from MedSegAILib.bundle.card import InferenceSettings  # noqa: E402
from MedSegAILib.bundle.catalog import SHIPPED_MODELS_DIR, Catalog  # noqa: E402
from MedSegAILib.inference import InferenceEngine  # noqa: E402
from MedSegAILib.networks import build_network  # noqa: E402
from run_benchmark import count_flops  # noqa: E402

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
NNUNET_SIZE = {"in_channels": 1, "out_channels": 3, "filters": [32, 64, 128, 256, 320, 320],
               "strides": [1, 2, 2, 2, 2, 2]}


def shipped(model_id: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The newest shipped bundle of ``model_id``: its network and window."""
    bundle = Catalog([(SHIPPED_MODELS_DIR, "shipped")]).get(model_id)
    return bundle.build_network(), (1, len(bundle.card.inputs), *bundle.card.inference.patch_size)


def networks(quick: bool) -> dict[str, tuple[torch.nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    nets = {"demo U-Net (shipped)": shipped("medsegai-ct-chest-demo"),
            "brain-extraction U-Net (shipped)": shipped("medsegai-mr-brain-extraction"),
            "DeepLabv3+ [16..128]": (build_network("deeplabv3plus", {"in_channels": 1, "out_channels": 5,
                                                                     "channels": [16, 32, 64, 128]}), (1, 1, 96, 96, 16))}
    window = 64 if quick else 128
    nets["nnU-Net-size U-Net [32..320]"] = (build_network("unet", NNUNET_SIZE), (1, 1, window, window, window))
    return nets


def timed(run, device: torch.device, repeats: int) -> float:
    """Best seconds of ``repeats`` calls after two warm-ups (cuDNN picks its algorithms in the first)."""
    for _ in range(2):
        run()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def forward_rows(device: torch.device, quick: bool, repeats: int) -> list[dict]:
    rows = []
    for name, (net, shape) in networks(quick).items():
        net = net.to(device).eval()
        for batch in (1, 4):
            x = torch.randn(batch, *shape[1:], device=device)
            flops = count_flops(net, x)
            with torch.inference_mode():
                reference = net(x).float()
                for precision, dtype in PRECISIONS.items():
                    if dtype is not None and device.type == "cpu":
                        continue  # 50-120x slower on AVX2 CPUs; measured in run_benchmark.py, section 6

                    def run(dtype=dtype):
                        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                            return net(x)
                    seconds = timed(run, device, repeats)
                    out = run().float()
                    rows.append({"network": name, "window": list(shape[2:]), "batch": batch, "precision": precision,
                                 "ms_per_window": 1000 * seconds / batch, "tflops": flops / seconds / 1e12,
                                 "max_logit_diff": float((out - reference).abs().max()),
                                 "argmax_agreement": float((out.argmax(1) == reference.argmax(1)).float().mean())})
                    print(f"forward {name} batch {batch} {precision}: {rows[-1]['ms_per_window']:.2f} ms/window, "
                          f"{rows[-1]['tflops']:.1f} TFLOP/s", flush=True)
        net.cpu()
    return rows


def volume_rows(device: torch.device, quick: bool) -> list[dict]:
    """The nnU-Net-size U-Net over a CT-sized grid through MedSegAI's engine, stitched on each side."""
    torch.manual_seed(0)
    window, grid = ((64, 64, 64), (160, 160, 96)) if quick else ((128, 128, 128), (512, 512, 600))
    image = np.random.default_rng(0).standard_normal((1, *grid), dtype=np.float32)
    rows = []
    stitch_sides = ["cuda", "cpu"] if device.type == "cuda" else ["cpu"]
    for stitch in stitch_sides:
        for precision in (["auto", "fp32"] if device.type == "cuda" else ["fp32"]):
            engine = InferenceEngine(build_network("unet", NNUNET_SIZE), InferenceSettings(patch_size=window), device,
                                     stitch_device=torch.device(stitch), precision=precision)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            probabilities = engine.predict(image)
            seconds = time.perf_counter() - start
            peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
            rows.append({"grid": list(grid), "window": list(window), "stitch_on": stitch, "precision": precision,
                         "windows": engine.total_windows(grid), "seconds": seconds, "peak_gpu_gib": peak,
                         "probabilities_shape": list(probabilities.shape)})
            print(f"volume {grid} stitched on {stitch}, {precision}: {seconds:.1f} s, "
                  f"peak GPU {peak if peak is None else round(peak, 2)} GiB", flush=True)
            del probabilities, engine
    return rows


def markdown(result: dict) -> str:
    lines = [f"# GPU check ({result['date']})", "", f"**Device:** {result['device']}; torch {result['torch']}, "
             f"cuDNN {result['cudnn']}", "", "## Forward, one window (best of the repeats after two warm-ups)", "",
             "| network | window | batch | precision | ms / window | TFLOP/s | largest logit diff vs fp32 | argmax agreement |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for r in result["forward"]:
        lines.append(f"| {r['network']} | {'x'.join(map(str, r['window']))} | {r['batch']} | {r['precision']} | "
                     f"{r['ms_per_window']:.2f} | {r['tflops']:.1f} | {r['max_logit_diff']:.2e} | "
                     f"{100 * r['argmax_agreement']:.3f} % |")
    lines += ["", "## Whole volume through `InferenceEngine.predict` (nnU-Net-size U-Net, random weights)", "",
              "| model grid | window | windows | stitched on | precision | seconds | peak GPU GiB |",
              "|---|---|---:|---|---|---:|---:|"]
    for r in result["volume"]:
        peak = "-" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.2f}"
        lines.append(f"| {'x'.join(map(str, r['grid']))} | {'x'.join(map(str, r['window']))} | {r['windows']} | "
                     f"{r['stitch_on']} | {r['precision']} | {r['seconds']:.1f} | {peak} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu, to check the script on small sizes")
    ap.add_argument("--quick", action="store_true", help="small windows and grid")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu", help="folder for gpu_check.md and .json")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("PyTorch sees no CUDA device here: run this on a GPU machine, or with --device cpu --quick")
        torch.backends.cudnn.benchmark = True  # fixed window shapes: let cuDNN time its algorithms once
        name = f"{torch.cuda.get_device_name(device)}, {torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB"
    else:
        name = "CPU"
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "device": name, "torch": torch.__version__,
              "cudnn": torch.backends.cudnn.version(), "quick": args.quick}
    result["forward"] = forward_rows(device, args.quick, args.repeats)
    result["volume"] = volume_rows(device, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (args.out / "gpu_check.md").write_text(markdown(result))
    print(f"wrote {args.out / 'gpu_check.md'} and gpu_check.json")


if __name__ == "__main__":
    main()
