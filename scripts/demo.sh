#!/usr/bin/env bash
# Set up the environment and segment the sample chest CT shipped inside the slicerio package with
# MedSegAI's shipped demo model. Outputs land in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CT=$(.venv/bin/python -c "import slicerio, pathlib; print(pathlib.Path(slicerio.__file__).parent / 'data' / 'CTChest4.nrrd')")
.venv/bin/medsegai segment "$CT" --model medsegai-ct-chest-demo --output out/demo --nifti --surfaces stl "$@"
echo "Outputs in out/demo: open CTChest4.seg.nrrd in 3D Slicer together with $CT"
