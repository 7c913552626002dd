#!/usr/bin/env bash
# Make nnU-Net v2's own environment (.cache/nnunet-venv) for bench/nnunet_predictor.py: torch 2.13.0
# (the CPU build; pinned first, a looser requirement pulls a multi-GB CUDA build) and nnunetv2 2.8.1 with
# its dependencies (dynamic_network_architectures among them), from PyPI only. nnU-Net is a comparison
# baseline, never a product dependency, so it lives apart from .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch_venv.sh
VENV=.cache/nnunet-venv
venv_ready "$VENV" "import nnunetv2, dynamic_network_architectures" && exit 0
new_torch_venv "$VENV"
# --no-deps: dynamic-network-architectures requires timm, which pulls torchvision and with it a CUDA torch;
# timm serves only its Primus/EVA networks, not the PlainConvUNet that is benchmarked. The rest of nnunetv2's
# requirements follow explicitly.
"$VENV/bin/pip" install -q --no-deps nnunetv2==2.8.1 dynamic-network-architectures==0.4.4
"$VENV/bin/pip" install -q acvl-utils==0.2.6 batchgeneratorsv2==0.3.6 batchgenerators einops blosc2 tqdm scipy \
    numpy scikit-learn scikit-image SimpleITK pandas graphviz tifffile requests nibabel matplotlib seaborn imagecodecs yacs
echo "environment ready: $VENV"
