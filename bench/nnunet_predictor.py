"""Sliding-window inference: MedSegAI's against nnU-Net v2's ``nnUNetPredictor``, one network, one input.

Issue #5 asks for MedSegAI's framework overhead against nnU-Net v2's predictor on a network of the
same size. This script builds nnU-Net's own ``PlainConvUNet`` (through nnU-Net's
``get_network_from_plans``) with the demo model card's architecture (4 stages, 16-128 filters, the
card's strides, 3x3x3 kernels, instance norm with affine, LeakyReLU 0.01, two convolutions per stage,
transposed-conv upsampling, no deep supervision, no conv bias: the parameters of MedSegAI's own
``unet`` for that card, plus deep-supervision heads that PlainConvUNet builds but does not run), with
random weights (a seed). Both sliding windows then run
that same network object, in the same process, alternately, with the same thread count, over the same
synthetic tensor: what the demo model sees for a 256x256x120 CT of 1.5x1.5x2.5 mm resampled to the
card's target spacing, (1, 1, 126, 126, 30).

(a) ``nnUNetPredictor.predict_sliding_window_return_logits``: tile_step_size = 1 - overlap, Gaussian
    weights, no mirroring, CPU only (results on the CPU);
(b) ``MedSegAILib.sliding_window.sliding_window_inference``: the card's patch, overlap and Gaussian
    blending;
(c) nnU-Net with its own defaults (tile_step_size 0.5, test-time mirroring over three axes), for scale:
    this is what ``nnUNetv2_predict`` does unless told otherwise;
(d) the network's forwards alone, as many as (b) has windows, on one patch: the time neither framework
    can save. Each row's "seconds beyond the forwards" is its framework overhead;
(e), (f) (a) and (b) around a network that is one 1x1x1 convolution: the stitching alone (slicing,
    weighting, accumulating, normalising), which in (a) to (d) is smaller than the noise of the forwards.

The outputs of (a) and (b) are compared (largest and mean logit difference, argmax agreement) on the
input above and on one two slices shorter, where both place their windows at the same starts, with
Gaussian and with constant weights. They differ in three ways: window starts (nnU-Net spreads the
windows evenly, MedSegAI steps by patch * (1 - overlap) and shifts the last one back, as MONAI does),
Gaussian weights (nnU-Net's peaks at index side // 2 and is stored in float16, falling to ~1e-8 at the
corners; MedSegAI's is centred and clamped at 1e-3, as MONAI's) and accumulation (float16 in nnU-Net).

    .cache/nnunet-venv/bin/python bench/nnunet_predictor.py --threads 1 --repeats 3 --out bench/results/nnunet_predictor

The environment comes from ``scripts/setup_nnunet_bench.sh``. MONAI is not in it; MONAI's sliding
window is measured against MedSegAI's in ``bench/run_benchmark.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "MedSegAI/Resources/Models/medsegai-ct-chest-demo-0.2.2/model.json"
SCAN_SHAPE, SCAN_SPACING = (256, 256, 120), (1.5, 1.5, 2.5)  # the synthetic CT of bench/run_benchmark.py
sys.path.insert(0, str(ROOT / "MedSegAI"))

from MedSegAILib import __version__ as medsegai_version  # noqa: E402  (the package __init__ imports nothing)
from MedSegAILib.networks import build_network  # noqa: E402
from MedSegAILib.sliding_window import count_windows, sliding_window_inference, window_starts  # noqa: E402
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # noqa: E402
from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window  # noqa: E402
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans  # noqa: E402
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # noqa: E402


def nnunet_plans(card: dict) -> dict:
    """A minimal nnU-Net plans dict with one 3d_fullres configuration: the card's network and patch."""
    args = card["network"]["args"]
    n = len(args["filters"])
    arch_kwargs = {
        "n_stages": n, "features_per_stage": args["filters"], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * n, "strides": args["strides"], "n_conv_per_stage": [2] * n,
        "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": False,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"negative_slope": 0.01, "inplace": True},
    }
    architecture = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": arch_kwargs, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    return {"label_manager": "LabelManager",
            "configurations": {"3d_fullres": {"patch_size": card["inference"]["patch_size"],
                                              "architecture": architecture}}}


def build_predictor(card: dict, network: torch.nn.Module, plans: PlansManager, tile_step_size: float,
                    mirroring: bool, gaussian: bool = True) -> nnUNetPredictor:
    """nnU-Net's predictor on the CPU, set up by hand as nnU-Net's trainer does for its final validation."""
    with contextlib.redirect_stdout(sys.stderr):  # it prints that perform_everything_on_device needs CUDA
        predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=gaussian, use_mirroring=mirroring,
                                    perform_everything_on_device=False, device=torch.device("cpu"),
                                    allow_tqdm=False)
    labels = {"background": 0, **{label["name"]: label["value"] for label in card["labels"]}}
    predictor.manual_initialization(network, plans, plans.get_configuration("3d_fullres"), None,
                                    {"labels": labels}, "none", (0, 1, 2))
    return predictor


def input_shape(card: dict) -> tuple[int, ...]:
    """The scan's extent in voxels of the card's target spacing."""
    target = card["preprocessing"]["target_spacing"]
    return tuple(round(n * s / t) for n, s, t in zip(SCAN_SHAPE, SCAN_SPACING, target))


def timed(run: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def forwards_alone(network: torch.nn.Module, patch: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` forwards of one patch: the sliding windows' network time without slicing or blending."""
    for _ in range(count):
        out = network(patch)
    return out


def starts(shape: Sequence[int], patch: Sequence[int], overlap: float) -> dict:
    """Window start indices per axis: nnU-Net's (evenly spread) and MedSegAI's (MONAI's fixed step)."""
    return {"nnunet": compute_steps_for_sliding_window(shape, patch, 1 - overlap),
            "medsegai": [window_starts(s, p, overlap) for s, p in zip(shape, patch)]}


def agreement(nnunet: torch.Tensor, medsegai: torch.Tensor) -> dict:
    """Largest and mean logit difference and the share of voxels with the same argmax, ``(K, *spatial)`` each."""
    difference = (nnunet.float() - medsegai).abs()
    return {"max_abs_diff": float(difference.max()), "mean_abs_diff": float(difference.mean()),
            "logit_sd": float(medsegai.std()),
            "argmax_agreement": float((nnunet.argmax(0) == medsegai.argmax(0)).float().mean())}


def versions() -> dict:
    found = {name: importlib.metadata.version(name) for name in ("torch", "nnunetv2", "dynamic_network_architectures")}
    return {"python": platform.python_version(), "medsegai": medsegai_version, **found}


def markdown(report: dict) -> str:
    rows, parameters = report["rows"], report["parameters"]
    reference = rows[0]["seconds"]
    lines = [
        f"## Sliding window: MedSegAI vs nnU-Net v2 predictor (best of {report['repeats']}, "
        f"torch threads {report['threads']})", "",
        f"Network: nnU-Net `PlainConvUNet` with the demo card's architecture, {parameters['plainconvunet']:,} "
        f"parameters, {parameters['plainconvunet_unused_heads']:,} of them in deep-supervision heads that do not run "
        f"(MedSegAI's `unet` for the card: {parameters['medsegai_unet']:,}), random weights (seed 0). "
        f"Input {report['input_shape']}, patch {report['patch_size']}, overlap {report['overlap']}, Gaussian.", "",
        "| method | seconds | ratio to (a) | windows | forwards | seconds beyond the forwards |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows[:4]:
        lines.append(f"| {row['method']} | {row['seconds']:.3f} | {row['seconds'] / reference:.2f} | "
                     f"{row['windows']} | {row['forwards']} | {row['beyond_forwards_s']:.3f} |")
    lines += ["", "Stitching alone: the same windows and blending around a network that is one 1x1x1 convolution "
              "(1 to 5 channels).", "", "| method | seconds | ratio to (e) | windows |", "|---|---:|---:|---:|"]
    for row in rows[4:]:
        lines.append(f"| {row['method']} | {row['seconds']:.3f} | {row['seconds'] / rows[4]['seconds']:.2f} | "
                     f"{row['windows']} |")
    lines += ["", "(a) against (b): nnU-Net's logits (float16) against MedSegAI's (float32).", "",
              "| input | shape | window starts nnU-Net | window starts MedSegAI | max abs diff | mean abs diff "
              "| argmax agreement |",
              "|---|---|---|---|---:|---:|---:|"]
    for check in report["checks"]:
        lines.append(f"| {check['input']} | {tuple(check['shape'])} | {check['starts']['nnunet']} | "
                     f"{check['starts']['medsegai']} | {check['max_abs_diff']:.4f} | {check['mean_abs_diff']:.5f} | "
                     f"{100 * check['argmax_agreement']:.3f} % |")
    lines.append(f"\nLogits' standard deviation: {report['checks'][0]['logit_sd']:.3f}.\n")
    lines += [
        f"Load average (1 min) at start {report['load_start'][0]:.2f}, at end {report['load_end'][0]:.2f}; "
        f"{report['machine']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    load_start = os.getloadavg()
    card = json.loads(CARD.read_text())
    patch, overlap = card["inference"]["patch_size"], card["inference"]["overlap"]

    torch.manual_seed(0)
    plans = PlansManager(nnunet_plans(card))
    configuration = plans.get_configuration("3d_fullres")
    network = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                     configuration.network_arch_init_kwargs_req_import, 1,
                                     card["network"]["args"]["out_channels"], deep_supervision=False).eval()
    # PlainConvUNet builds a segmentation head per decoder stage; without deep supervision only the last one runs
    parameters = {"plainconvunet": sum(p.numel() for p in network.parameters()),
                  "plainconvunet_unused_heads": sum(p.numel() for p in network.decoder.seg_layers[:-1].parameters()),
                  "medsegai_unet": sum(p.numel() for p in build_network("unet", card["network"]["args"]).parameters())}
    shape = input_shape(card)
    image = torch.randn((1, 1, *shape))

    like = build_predictor(card, network, plans, 1 - overlap, mirroring=False)
    defaults = build_predictor(card, network, plans, 0.5, mirroring=True)
    pointwise = torch.nn.Conv3d(1, card["network"]["args"]["out_channels"], 1).eval()  # for stitching alone
    stitching = build_predictor(card, pointwise, plans, 1 - overlap, mirroring=False)
    labels = {"a": "(a) nnU-Net predictor, tile_step_size 1 - overlap, no mirroring",
              "b": "(b) MedSegAI sliding_window_inference",
              "c": "(c) nnU-Net predictor, its defaults (tile_step_size 0.5, mirroring x, y, z)",
              "d": "(d) the network's forwards alone, one per window of (b)",
              "e": "(e) nnU-Net predictor as (a), network a 1x1x1 convolution",
              "f": "(f) MedSegAI as (b), network a 1x1x1 convolution"}
    windows = {"a": math.prod(map(len, compute_steps_for_sliding_window(shape, patch, 1 - overlap))),
               "b": count_windows(shape, patch, overlap),
               "c": math.prod(map(len, compute_steps_for_sliding_window(shape, patch, 0.5)))}
    windows.update(d=windows["b"], e=windows["a"], f=windows["b"])
    forwards = {**windows, "c": 8 * windows["c"]}  # (c): each window also flipped along 7 combinations of axes
    first_patch = image[(..., *(slice(0, p) for p in patch))]
    runs: dict[str, Callable[[], torch.Tensor]] = {
        "a": lambda: like.predict_sliding_window_return_logits(image[0]),
        "b": lambda: sliding_window_inference(image, patch, network, overlap, "gaussian")[0],
        "c": lambda: defaults.predict_sliding_window_return_logits(image[0]),
        "d": lambda: forwards_alone(network, first_patch, windows["d"]),
        "e": lambda: stitching.predict_sliding_window_return_logits(image[0]),
        "f": lambda: sliding_window_inference(image, patch, pointwise, overlap, "gaussian")[0],
    }
    seconds = {key: math.inf for key in runs}
    outputs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        network(torch.zeros((1, 1, *patch)))  # warm-up
        for repeat in range(options.repeats):
            for key, run in runs.items():
                elapsed, outputs[key] = timed(run)
                seconds[key] = min(seconds[key], elapsed)
                print(f"repeat {repeat + 1}: {labels[key]}: {elapsed:.3f} s", file=sys.stderr)

    per_forward = seconds["d"] / forwards["d"]
    rows = [{"key": key, "method": labels[key], "seconds": seconds[key], "windows": windows[key],
             "forwards": forwards[key], "beyond_forwards_s": seconds[key] - per_forward * forwards[key]}
            for key in "abcd"]
    rows += [{"key": key, "method": labels[key], "seconds": seconds[key], "windows": windows[key]} for key in "ef"]
    # Two slices fewer and both place their windows at the same starts; with constant weights the rest is float16.
    aligned_shape = (*shape[:-1], shape[-1] - 2)
    aligned = torch.randn((1, 1, *aligned_shape))
    constant = build_predictor(card, network, plans, 1 - overlap, mirroring=False, gaussian=False)
    checks = [{"input": "card input, Gaussian", "shape": shape, **agreement(outputs["a"], outputs["b"])}]
    with torch.inference_mode():
        for label, predictor, blending in (("aligned windows, Gaussian", like, "gaussian"),
                                           ("aligned windows, constant weights", constant, "constant")):
            checks.append({"input": label, "shape": aligned_shape,
                           **agreement(predictor.predict_sliding_window_return_logits(aligned[0]),
                                       sliding_window_inference(aligned, patch, network, overlap, blending)[0])})
    for check in checks:
        check["starts"] = starts(check["shape"], patch, overlap)
    report = {
        "threads": options.threads, "repeats": options.repeats, "input_shape": [1, 1, *shape], "patch_size": patch,
        "overlap": overlap, "parameters": parameters, "rows": rows,
        "ratio_medsegai_to_nnunet": seconds["b"] / seconds["a"],
        "ratio_medsegai_to_nnunet_stitching_alone": seconds["f"] / seconds["e"],
        "checks": checks,
        "load_start": load_start, "load_end": os.getloadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical cores, {platform.platform()}",
        "versions": versions(),
    }
    text = markdown(report)
    print(text)
    if options.out:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.with_suffix(".md").write_text(text)
        options.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
