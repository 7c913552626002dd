"""The Markdown report of a benchmark run (``bench/results/latest.md``) from its JSON results: one
function per run, so a report can be rebuilt from any ``latest.json``::

    .venv/bin/python -c "import json, sys; sys.path.insert(0, 'bench'); from bench_report import markdown; \\
        print(markdown(json.load(open('bench/results/latest.json'))))"
"""

from __future__ import annotations

import statistics

# the sections of a run, in the report's order (their numbers in the report)
SECTIONS = ("peak", "forward", "overhead", "scale", "malloc", "bf16", "onnx", "omp")
RUNTIME_NAMES = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime"}


def fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown(res: dict) -> str:
    m = res["machine"]
    L = ["# MedSegAI benchmark", "",
         f"{res['date']} - mode: {'quick' if res['quick'] else 'full'} - sections: {', '.join(res['sections'])} - "
         f"total {res['bench_wall_s']:.0f} s - load average (1 min) {fmt(res['load_average_start'], 1)} at the start, "
         f"{fmt(res['load_average_end'], 1)} at the end (other users' jobs on the same cores)", "",
         f"**Machine:** {m['cpu']} ({', '.join(m['simd'])}), {m['physical_cores']} physical / {m['logical_cores']} "
         f"logical cores, {m['memory_gib']} GiB; torch {m['torch']} ({m['torch_threads']} threads), "
         f"monai {m['monai']}, numpy {m['numpy']}, SimpleITK {m['SimpleITK']}, Python {m['python']}", ""]
    carried = res.get("carried")
    if carried:
        by_date: dict[str, list[str]] = {}
        for section, date in carried.items():
            by_date.setdefault(date, []).append(f"{SECTIONS.index(section) + 1} ({section})")
        L += ["Carried over from earlier runs (`--keep-other-sections`): " + "; ".join(
            f"section{'s' if len(v) > 1 else ''} {', '.join(v)} from the run of {date}" for date, v in by_date.items())
            + ". Their numbers came from the machine and load of that run.", ""]
    mm = res.get("matmul")
    if mm:
        fma = res.get("fma", {})
        L += ["## 1. Machine peak", ""]
        if "gflops_peak" in fma:
            L += [f"float32 FMA, register-only C kernel (`bench/fma_peak.c`, {fma['compiler']}, {fma['threads']} "
                  f"threads), {fma['runs']} runs: **{fma['gflops_peak']:.1f} GFLOP/s** best, {fma['gflops_median']:.1f} "
                  "median: the ceiling no convolution can pass.", ""]
        elif fma:
            L += [f"FMA kernel skipped: {fma['skipped']}.", ""]
        share = f" ({100 * mm['gflops_peak'] / fma['gflops_peak']:.0f} % of the FMA peak)" if "gflops_peak" in fma else ""
        L += [f"float32 {mm['n']}x{mm['n']} torch matmul, {mm['runs']} runs: **{mm['gflops_peak']:.1f} GFLOP/s** best"
              f"{share}, {mm['gflops_median']:.1f} median.", ""]
    if res.get("forward"):
        peak_name = res.get("forward_peak", "matmul")
        L += ["## 2. Network forward efficiency (1 patch, batch 1, inference mode)", "",
              f"| network | input | params (M) | GFLOP | first (s) | best (s) | GFLOP/s | % of {peak_name} peak "
              f"| % of matmul | PyTorch's kernel choice best (s) | % of {peak_name} peak "
              f"| ONNX Runtime best (s) | ONNX Runtime % of {peak_name} peak |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for f in res["forward"]:
            if "skipped" in f:
                L.append(f"| {f['network']} | - | - | - | - | - | - | skipped: {f['skipped']} | - | - | - | - | - |")
                continue
            ort = f.get("onnxruntime", {})
            ort_cells = (f"{ort['best_s']:.3f} | {ort['pct_peak']:.0f} %" if "best_s" in ort
                         else f"- | {ort.get('skipped', 'not run')}")
            own = f.get("pytorch_kernels")
            own_cells = f"{own['best_s']:.3f} | {own['pct_peak']:.0f} %" if own else "- | not run"
            L.append(f"| {f['network']} | {'x'.join(map(str, f['input'][2:]))} | {f['params_M']:.2f} | "
                     f"{f['gflop']:.1f} | {f['first_s']:.3f} | {f['best_s']:.3f} | {f['gflops']:.1f} | "
                     f"{f['pct_peak']:.0f} % | {f.get('pct_matmul', f['pct_peak']):.0f} % | {own_cells} | {ort_cells} |")
        L += ["", "FLOPs: torch.utils.flop_counter (convolutions and matmuls only; norms and activations are not "
              "counted). PyTorch as MedSegAI runs it: oneDNN for every 3D convolution on channels-last "
              "activations, instance norms in that layout, one matrix product for each upsampling by kernel = "
              "stride (`MedSegAILib.networks.cpu_kernels`); \"PyTorch's kernel "
              "choice\": the same network as PyTorch dispatches it (its reference kernel for small convolutions), "
              "timed in alternating rounds with MedSegAI's. ONNX Runtime: the same network exported as "
              "MedSegAI exports bundles (`medsegai_training.onnx_export`), run with the options of MedSegAI's ONNX "
              "Runtime backend.", ""]
    o = res.get("overhead")
    if o:
        c = o["bare_swi"]
        L += ["## 3. Framework overhead", "",
              f"Synthetic CT {'x'.join(map(str, o['shape_xyz']))} voxels at {'x'.join(map(str, o['spacing_xyz']))} mm "
              f"(int16 .nrrd) -> model grid {'x'.join(map(str, c['model_grid']))}, {c['windows']} windows "
              f"of {'x'.join(map(str, o['patch']))}.", "",
              "| path | seconds | ratio to (c) |", "|---|---:|---:|",
              f"| (a) MedSegAI in-process, PyTorch: read + segment + write_outputs (later cases of a batch: network "
              f"loaded by the first; best of {o['repeats']}) | "
              f"{o['inprocess_best_s']:.2f} | {o['inprocess_best_s'] / c['best_s']:.1f}x |",
              f"| (a') same, first case in the process (loads the network) | {o['inprocess_first_s']:.2f} | "
              f"{o['inprocess_first_s'] / c['best_s']:.1f}x |",
              f"| (a'') `segment()` alone: preprocess, inference, labels back on the scan, clean-up (best) | "
              f"{o['segment_best_s']:.2f} | {o['segment_best_s'] / c['best_s']:.2f}x |"]
        if o.get("cli_s") is not None:
            runtime = o.get("cli_runtime", "torch")
            L += [f"| (b) CLI subprocess `medsegai segment` as shipped ({RUNTIME_NAMES[runtime]} on the CPU; "
                  f"interpreter start included) | {o['cli_s']:.2f} | {o['cli_s'] / c['best_s']:.1f}x |",
                  f"| (b') same, `--no-measurements` (labels only) | {o['cli_labels_only_s']:.2f} | "
                  f"{o['cli_labels_only_s'] / c['best_s']:.1f}x |"]
            if o.get("cli_labels_only_torch_s") is not None:
                L.append(f"| (b'') same as (b'), `--runtime torch` | {o['cli_labels_only_torch_s']:.2f} | "
                         f"{o['cli_labels_only_torch_s'] / c['best_s']:.1f}x |")
        L.append(f"| (c) bare MONAI sliding_window_inference on the prepared tensor (best) | {c['best_s']:.2f} | 1.0x |")
        if o.get("bare_script_s") is not None:
            L.append(f"| (d) bare script subprocess, same labels: SimpleITK read and resampling, MONAI sliding window, "
                     f"argmax, nearest-neighbour back, NRRD | {o['bare_script_s']:.2f} | "
                     f"{o['bare_script_s'] / c['best_s']:.1f}x |")
        L += ["", "Per stage of (a), best run (s): " + ", ".join(f"{k} {v:.2f}" for k, v in o["inprocess_stages"].items())]
        L += ["", f"Like for like in process: (a'')/(c) = **{o['ratio_median']:.2f}x**, the median over {o['repeats']} "
                  f"rounds that alternate the two (per round {', '.join(f'{r:.2f}' for r in o['round_ratios'])}; "
                  f"best against best {o['segment_best_s'] / c['best_s']:.2f}x)."]
        if o.get("bare_script_s") is not None:
            L += ["", f"As processes: (b')/(d) = **{o['cli_labels_only_s'] / o['bare_script_s']:.2f}x** (MedSegAI also "
                      "reorients, interpolates class scores linearly and cleans labels up; (d) does none of it).", "",
                  f"Import cost of `medsegai segment` in a fresh interpreter (best of {o['imports_repeats']}): "
                  + "; ".join(f"{k} {v['wall_s']:.2f} s ({v['cpu_s']:.2f} CPU-s)" for k, v in o["imports"].items())
                  + "."]
        L.append("")
    s = res.get("scale")
    if s:
        runtimes = ", ".join(sorted({RUNTIME_NAMES[r.get("runtime", "torch")] for r in s}))
        L += ["## 4. Scale (each case in a fresh subprocess with MedSegAI's malloc thresholds; native spacing "
              f"0.8x0.8x1.0 mm; the network in {runtimes}, as the card names it for CPUs)", "",
              "| input (xyz) | input MiB | model grid | total s | load+pre s | inference s | postprocess s | write s | "
              "peak RSS MiB | RSS / input | peak stage |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in s:
            st = r["stages_s"]
            sp = r.get("stage_peak_rss_mib") or {}
            top = max(sp, key=sp.get) if sp else "-"
            pre = st["load+segment"] - st.get("inference", 0) - st.get("postprocess", 0)
            L.append(f"| {'x'.join(map(str, r['input_shape_xyz']))} | {r['input_mib']:.0f} | "
                     f"{'x'.join(map(str, r['model_grid_xyz'] or []))} | {r['total_s']:.1f} | {pre:.1f} | "
                     f"{st.get('inference', 0):.1f} | {st.get('postprocess', 0):.1f} | {st['write']:.1f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / r['input_mib']:.1f}x | {top} |")
        L += ["", "Peak RSS per stage (MiB; VmHWM reset at each stage start):", "",
              "| input (xyz) | " + " | ".join(["load", "preprocess", "inference", "postprocess", "write"]) + " |",
              "|---|---:|---:|---:|---:|---:|"]
        for r in s:
            sp = r.get("stage_peak_rss_mib") or {}
            L.append(f"| {'x'.join(map(str, r['input_shape_xyz']))} | " + " | ".join(
                fmt(sp.get(k), 0) for k in ["load", "preprocess", "inference", "postprocess", "write"]) + " |")
        subs = list(dict.fromkeys(k for r in s for k in r.get("substeps", {})))
        if subs:
            L += ["", "Sub-steps (core functions wrapped in the benchmark's child process): seconds / peak RSS MiB "
                  "(absolute; RSS at the start of load, i.e. after imports, is the baseline: "
                  + ", ".join(f"{r['stage_start_rss_mib'].get('load', 0):.0f}" for r in s) + " MiB).", "",
                  "| sub-step | " + " | ".join("x".join(map(str, r["input_shape_xyz"])) for r in s) + " |",
                  "|---|" + "---:|" * len(s)]
            for k in subs:
                cells = []
                for r in s:
                    v = r.get("substeps", {}).get(k)
                    cells.append("-" if v is None else f"{v['s']:.2f} / {fmt(v['peak_rss_mib'], 0)}")
                L.append(f"| {k} | " + " | ".join(cells) + " |")
        if len(s) >= 2:
            a, b = s[0], s[-1]
            vr = b["input_mib"] / a["input_mib"]
            L += ["", f"From smallest to largest: input voxels x{vr:.0f}, time x{b['total_s'] / a['total_s']:.1f}, "
                      f"peak RSS x{b['peak_rss_mib'] / a['peak_rss_mib']:.1f} "
                      f"(peak RSS above the 128^3 baseline per input MiB: "
                      f"{(b['peak_rss_mib'] - a['peak_rss_mib']) / (b['input_mib'] - a['input_mib']):.1f})."]
        L.append("")
    g = res.get("malloc")
    if g:
        L += ["## 5. Allocator hygiene", "",
              f"Fresh subprocess each, alternating, {g['repeats']} each. MedSegAI's thresholds: `GLIBC_TUNABLES={g['env']}` "
              "(the CLI sets the same with mallopt). CPU and page faults: the work from reading to written outputs, "
              "imports excluded.", "",
              "| case | glibc malloc | total s (best) | inference s (best) | CPU s (best) | of it system | "
              "minor page faults | peak RSS MiB |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for case, configs in g["runs"].items():
            for name, runs in configs.items():
                best = min(runs, key=lambda r: r["total_s"])
                L.append(f"| {case} | {name} | {best['total_s']:.2f} | {min(r['inference_s'] for r in runs):.2f} | "
                         f"{min(r['cpu_s'] for r in runs):.2f} | {100 * best['cpu_sys_s'] / best['cpu_s']:.0f} % | "
                         f"{statistics.median(r['minflt'] for r in runs):,.0f} | "
                         f"{max(r['peak_rss_mib'] for r in runs):.0f} |")
        L.append("")
    b = res.get("bf16")
    if b:
        L += ["## 6. bfloat16 autocast (CPU)", "",
              f"One forward of the demo DynUNet on {'x'.join(map(str, b['input'][2:]))} (PyTorch CPU capability "
              f"{b['cpu_capability']}): float32 {b['fp32_s']:.3f} s (best), bf16 autocast {b['bf16_s']:.3f} s: "
              f"**{b['speedup']:.2f}x**; largest logit difference {b['max_abs_logit_diff']:.3f}, argmax agreement "
              f"{100 * b['argmax_agreement']:.2f} %.", ""]
        seg = b.get("segment")
        if seg:
            L += [f"`segment()` of {seg['case']}: float32 {seg['seconds']['fp32']:.1f} s, bf16 "
                  f"{seg['seconds']['bf16']:.1f} s.", "",
                  "| label | Dice fp32 | Dice bf16 | change | Dice bf16 vs fp32 |", "|---|---:|---:|---:|---:|"]
            for name, d32 in seg["dice_fp32"].items():
                d16 = seg["dice_bf16"][name]
                L.append(f"| {name} | {d32:.4f} | {d16:.4f} | {d16 - d32:+.4f} | {seg['dice_bf16_vs_fp32'][name]:.4f} |")
        else:
            L.append("Dice change not measured (bf16 is not faster here; `--bf16-dice` measures it anyway).")
        L.append("")
    onnx = res.get("onnx")
    if onnx:
        L += ["## 7. ONNX Runtime vs PyTorch (CPU, same threads)", ""]
        skipped = [x["skipped"] for x in onnx.values() if "skipped" in x]
        if skipped:
            L += [f"Skipped: {skipped[0]}.", ""]
        else:
            x = next(iter(onnx.values()))
            L += [f"onnxruntime {x['onnxruntime']}; exported with medsegai_training.onnx_export in {x['export_s']:.1f} s; "
                  f"check on one random patch: largest logit difference {x['check_max_abs_diff']:.1e}, argmax "
                  f"agreement {100 * x['check_argmax_agreement']:.2f} %. Fresh process per row; PyTorch's OpenMP "
                  "threads spin while waiting by default, or sleep with OMP_WAIT_POLICY=PASSIVE (section 8).", "",
                  "| PyTorch OMP_WAIT_POLICY | work | PyTorch s | ONNX Runtime s | PyTorch / ORT | load average |",
                  "|---|---|---:|---:|---:|---:|"]
            for policy, x in onnx.items():
                L += [f"| {policy} | one {'x'.join(map(str, x['patch']))} patch (best) | {x['patch_s']['torch']:.3f} | "
                      f"{x['patch_s']['onnxruntime']:.3f} | {x['patch_s']['torch'] / x['patch_s']['onnxruntime']:.2f}x | "
                      f"{fmt(x['load_average'], 1)} |",
                      f"| {policy} | sliding window over {'x'.join(map(str, x['model_grid']))} (best) | "
                      f"{x['swi_s']['torch']:.2f} | {x['swi_s']['onnxruntime']:.2f} | "
                      f"{x['swi_s']['torch'] / x['swi_s']['onnxruntime']:.2f}x | {fmt(x['load_average'], 1)} |"]
            x = onnx["default"]
            L += ["", f"Sliding-window outputs: largest difference {x['swi_max_abs_diff']:.1e}, argmax agreement "
                      f"{100 * x['swi_argmax_agreement']:.3f} %.", ""]
    w = res.get("omp")
    if w:
        L += ["## 8. OpenMP wait policy", "",
              f"Best forward of one {'x'.join(map(str, w['patch']))} patch ({w['threads']} threads), fresh process each, "
              f"alternating; mean load average {fmt(w['load_average'], 1)}.", "",
              "| OMP_WAIT_POLICY | best s per round |", "|---|---|"]
        for name, times in w["forward_s"].items():
            L.append(f"| {name} | " + ", ".join(f"{t:.3f}" for t in times) + " |")
        L.append("")
    return "\n".join(L)
