"""``medsegai models list|show|verify|import``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bundle import Bundle, Catalog, import_bundle
from ..errors import MedSegAIError
from .reporting import Reporter


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="models_command", required=True)
    ls = sub.add_parser("list", help="installed models")
    ls.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="a model's card")
    show.add_argument("model")
    show.add_argument("--json", action="store_true", help="print the whole card as JSON")
    verify = sub.add_parser("verify", help="check bundles' checksums and cards (all installed if none given)")
    verify.add_argument("models", nargs="*")
    imp = sub.add_parser("import", help="install a bundle (.zip or folder) into the user models folder; offline")
    imp.add_argument("bundle", type=Path)
    imp.add_argument("--replace", action="store_true", help="overwrite an installed model of the same version")


def run(args: argparse.Namespace, catalog: Catalog, reporter: Reporter, user_dir: Path) -> int:
    out = reporter.out
    if args.models_command == "list":
        entries, problems = catalog.scan()
        if args.json:
            out.write(json.dumps([{"id": e.card.id, "version": e.card.version, "title": e.card.title,
                                   "modality": e.card.modality, "labels": [x.name for x in e.card.labels],
                                   "license": e.card.license_name, "source": e.source, "path": str(e.path)}
                                  for e in entries], indent=2) + "\n")
        else:
            for e in entries:
                out.write(f"{e.card.id:<32} {e.card.version:<10} {e.card.modality:<4} {e.source:<8} {e.card.title}\n")
            if not entries:
                out.write("no models installed; import one with 'medsegai models import <bundle.zip>'\n")
        for p in problems:
            reporter.warning(f"skipped {p.path}: {p.message}")
        return 0
    if args.models_command == "show":
        card = catalog.get(args.model).card
        if args.json:
            out.write(json.dumps(card.raw, indent=2) + "\n")
            return 0
        out.write(f"{card.title} ({card.id} {card.version})\n{card.description}\n\n")
        out.write(f"modality: {card.modality}; inputs: {', '.join(f'{i.name} ({i.modality})' for i in card.inputs)}\n")
        lic = card.license_name + (" - NON-COMMERCIAL USE ONLY" if card.commercial_use is False else "")
        out.write(f"license: {lic}\n")
        spacing = card.preprocessing.target_spacing
        out.write(f"network: {card.network.name}; spacing: {spacing or 'native'} mm; patch: {card.inference.patch_size}\n")
        graph = f"ONNX graph {card.onnx_graph_file}" if card.onnx_graph_file else "no ONNX graph"
        out.write(f"runtime on CPUs: {card.inference.cpu_runtime} ({graph})\n")
        if card.variants:
            out.write(f"variants: {', '.join(card.variants)}\n")
        for key in ("intended_use", "limitations"):
            if card.raw.get(key):
                out.write(f"{key.replace('_', ' ')}: {card.raw[key]}\n")
        out.write("labels:\n")
        for x in card.labels:
            out.write(f"  {x.value:>3} {x.name:<28} {x.terminology.type}"
                      f"{' ' + str(x.terminology.modifier) if x.terminology.modifier else ''}\n")
        for m in card.raw.get("metrics", []):
            out.write(f"metric: {json.dumps(m)}\n")
        return 0
    if args.models_command == "verify":
        targets = args.models or [str(e.path) for e in catalog.entries()]
        failed = 0
        for t in targets:
            try:
                bundle = catalog.get(t)
                bundle.build_network()
                out.write(f"OK      {bundle.card.id} {bundle.card.version} ({bundle.path})\n")
            except MedSegAIError as exc:
                failed += 1
                out.write(f"FAILED  {t}: {exc.message}\n")
        return 1 if failed else 0
    if args.models_command == "import":
        target = import_bundle(args.bundle, user_dir, replace_existing=args.replace)
        out.write(f"installed {Bundle.open(target).card.summary()}\n  at {target}\n")
        return 0
    raise AssertionError(args.models_command)
