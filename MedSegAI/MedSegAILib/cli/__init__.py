"""The ``medsegai`` command line: the same pipeline as the Slicer module, for batches and servers."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .. import __version__
from ..bundle import Catalog, default_user_models_dir
from ..errors import Cancelled, MedSegAIError
from ..process_hygiene import skip_unused_imports, tune_malloc
from ..progress import CancelToken
from . import measure_command, models_command, segment_command
from .reporting import Reporter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medsegai", description="Deep-learning segmentation of CT and MRI volumes.")
    parser.add_argument("--version", action="version", version=f"medsegai {__version__}")
    parser.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                        help="bar (default), json (one JSON object per line on stdout, for programs) or none")
    parser.add_argument("--models-dir", type=Path, help="user models folder (default ~/.medsegai/models)")
    sub = parser.add_subparsers(dest="command", required=True)
    segment_command.add_arguments(sub.add_parser("segment", help="segment volumes with a model"))
    models_command.add_arguments(sub.add_parser("models", help="list, show, verify and import models"))
    measure_command.add_arguments(sub.add_parser("measure", help="measure an existing segmentation"))
    return parser


def main(argv: list[str] | None = None, out=None, err=None) -> int:
    args = build_parser().parse_args(argv)
    reporter = Reporter(args.progress, out or sys.stdout, err or sys.stderr)
    user_dir = args.models_dir or default_user_models_dir()
    catalog = Catalog.default(user_dir=user_dir)
    cancel = CancelToken()
    previous = _install_cancel_handlers(cancel)
    try:
        if args.command == "segment":
            return segment_command.run(args, catalog, reporter, cancel)
        if args.command == "models":
            return models_command.run(args, catalog, reporter, user_dir)
        return measure_command.run(args, reporter)
    except Cancelled as exc:
        reporter.emit("cancelled")
        reporter.say(f"cancelled: {exc.message}")
        return exc.exit_code
    except MedSegAIError as exc:
        reporter.emit("error", message=exc.message, hint=exc.hint, exit_code=exc.exit_code)
        reporter.say(f"error: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""))
        return exc.exit_code
    except MemoryError:
        reporter.emit("error", message="out of memory", hint="use --roi or --fast, or a machine with more memory")
        reporter.say("error: out of memory\n  hint: use --roi or --fast, or a machine with more memory")
        return 2
    finally:
        _restore_handlers(previous)


def _install_cancel_handlers(cancel: CancelToken) -> dict:
    """SIGTERM/SIGINT request a clean stop between sliding windows (no partial files); a second
    signal stops at once."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)
    return previous


def _restore_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def entry_point() -> None:
    """The ``medsegai`` process: allocator and import settings first (see :mod:`..process_hygiene`)."""
    tune_malloc()
    skip_unused_imports()
    sys.exit(main())
