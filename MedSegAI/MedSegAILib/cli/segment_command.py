"""``medsegai segment``: one case or a whole cohort, continuing past failing cases."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from ..bundle import Bundle
from ..errors import Cancelled, InputImageError, MedSegAIError
from ..progress import CancelToken, ProgressReporter
from ..fileio import IMAGE_SUFFIXES
from .reporting import Reporter


@dataclass(frozen=True)
class Case:
    name: str
    inputs: tuple[Path, ...]


def case_name(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def collect_cases(paths: list[Path], inputs_per_case: int) -> list[Case]:
    """Turn command-line paths into cases.

    * files, ``inputs_per_case`` at a time, form cases (one file each for single-input models);
    * a folder of image files gives one case per file (single-input models);
    * a folder of sub-folders gives one case per sub-folder (DICOM series);
    * any other folder is one DICOM series.
    """
    for p in paths:
        if not p.exists():
            raise InputImageError(f"input not found: {p}", "check the path")
    if all(p.is_file() for p in paths):
        if len(paths) % inputs_per_case:
            raise InputImageError(
                f"the model takes {inputs_per_case} inputs per case but {len(paths)} files were given",
                "give the inputs of each case together, in the model's input order")
        groups = [tuple(paths[i:i + inputs_per_case]) for i in range(0, len(paths), inputs_per_case)]
        return [Case(case_name(g[0]), g) for g in groups]
    cases: list[Case] = []
    for p in paths:
        if p.is_file():
            cases.append(Case(case_name(p), (p,)))
            continue
        images = sorted(x for x in p.iterdir() if _is_image(x))
        subfolders = sorted(x for x in p.iterdir() if x.is_dir() and not x.name.startswith("."))
        if images:
            if inputs_per_case != 1:
                raise InputImageError(f"{p}: batch folders work for single-input models only",
                                      "give each case's input files explicitly")
            cases += [Case(case_name(x), (x,)) for x in images]
        elif subfolders:
            cases += [Case(x.name, (x,)) for x in subfolders]
        else:
            cases.append(Case(p.name, (p,)))
    return cases


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputImageError(f"--shard {text!r} is not i/n", "e.g. --shard 0/4 for the first of four jobs") from None
    if count < 1 or not 0 <= index < count:
        raise InputImageError(f"--shard {text}: need 0 <= i < n", "shards are numbered 0 .. n-1")
    return index, count


def parse_roi(text: str | None):
    if not text:
        return None
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 6:
        raise InputImageError(f"--roi {text!r} needs six numbers", "R1,A1,S1,R2,A2,S2 in RAS millimetres")
    return tuple(values[:3]), tuple(values[3:])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", type=Path, help="image files, DICOM folders, or a folder of cases")
    p.add_argument("-m", "--model", required=True, help="model id (see 'medsegai models list') or bundle path")
    p.add_argument("--model-version", help="a specific installed version (default: latest)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    p.add_argument("--runtime", choices=["auto", "torch", "onnxruntime"], default="auto",
                   help="auto (default): the model's faster CPU runtime when it runs on the CPU, else PyTorch; "
                        "onnxruntime: ONNX Runtime on the CPU (the model needs an ONNX graph)")
    p.add_argument("--roi", help="segment only inside this RAS box (mm): --roi=R1,A1,S1,R2,A2,S2")
    p.add_argument("--labels", help="comma-separated label names to keep (default: all)")
    p.add_argument("--fast", action="store_true", help="use the model's fast, low-resolution variant")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (slower)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto (default): float16 mixed precision on CUDA, float32 elsewhere; bf16: bfloat16 autocast "
                        "(fast only on CPUs with AVX512-BF16 or AMX, far slower on others)")
    p.add_argument("--force", action="store_true", help="run even if the model card says the input does not fit")
    p.add_argument("--allow-empty", action="store_true", help="write outputs even if nothing is found")
    p.add_argument("--nifti", action="store_true", help="also write a NIfTI label map and labels JSON")
    p.add_argument("--surfaces", default="", help="write surfaces: stl, obj or stl,obj")
    p.add_argument("--smoothing", type=float, default=0.5, help="surface smoothing factor 0-1 (Slicer's default 0.5)")
    p.add_argument("--no-measurements", action="store_true", help="skip the measurement table")
    p.add_argument("--shard", help="i/n: process every n-th case starting at i (cluster array jobs)")
    p.add_argument("--max-memory-gb", type=float, help="refuse cases estimated to need more host memory than this")


def run(args: argparse.Namespace, catalog, reporter: Reporter, cancel: CancelToken) -> int:
    from ..image import read_volume
    from ..outputs import OutputOptions, write_outputs
    from ..pipeline import SegmentationOptions, segment
    from ..runtime import LoadedModels

    bundle: Bundle = catalog.get(args.model, args.model_version)
    card = bundle.card
    surfaces = tuple(s for s in args.surfaces.lower().split(",") if s)
    for s in surfaces:
        if s not in ("stl", "obj"):
            raise InputImageError(f"unknown surface format {s!r}", "use --surfaces stl, obj or stl,obj")
    options = SegmentationOptions(
        device=args.device, runtime=args.runtime, threads=args.threads, variant="fast" if args.fast else None,
        roi_ras=parse_roi(args.roi),
        labels=[x.strip() for x in args.labels.split(",")] if args.labels else None, tta=args.tta,
        precision=args.precision, force=args.force, allow_empty=args.allow_empty,
        memory_limit_bytes=int(args.max_memory_gb * 2**30) if args.max_memory_gb else None)
    outputs = OutputOptions(nifti=args.nifti, surfaces=surfaces, measurements=not args.no_measurements,
                            smoothing=args.smoothing)
    index, count = parse_shard(args.shard)
    cases = collect_cases(args.inputs, len(card.inputs))[index::count]
    reporter.say(f"{card.summary()}\n{len(cases)} case(s) -> {args.output}")
    failed = 0
    models = LoadedModels()  # the network is loaded for the first case and reused by the others
    for case in cases:
        reporter.case = case.name
        start = time.perf_counter()
        try:
            reporter.emit("start", model=card.id, version=card.version, device=options.device)
            progress = ProgressReporter(reporter.progress, cancel)
            progress.stage("load", "reading the input")
            volumes = [read_volume(p) for p in case.inputs]
            result = segment(volumes, bundle, options, progress, models)
            progress.stage("write", "writing outputs")
            for w in result.warnings:
                reporter.warning(w)
            for path in write_outputs(result, volumes[0], args.output, case.name, outputs):
                reporter.emit("output", path=str(path))
            progress.update(1.0, "done")
            seconds = time.perf_counter() - start
            reporter.emit("case_done", seconds=round(seconds, 2), found=[x.name for x in result.found],
                          missing=[x.name for x in result.missing])
            reporter.say(f"{case.name}: {len(result.found)} structure(s) in {seconds:.1f} s on {result.device}")
        except Cancelled:
            raise
        except MedSegAIError as exc:
            failed += 1
            reporter.emit("case_failed", message=exc.message, hint=exc.hint, exit_code=exc.exit_code)
            reporter.say(f"{case.name}: error: {exc}")
            if len(cases) == 1:
                raise
    reporter.case = ""
    reporter.emit("done", cases=len(cases), failed=failed)
    if failed:
        reporter.say(f"{failed} of {len(cases)} case(s) failed; the others were written")
    return 1 if failed else 0
