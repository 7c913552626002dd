# Sourced by the set-up scripts of comparison baselines (peers, nnU-Net): each gets a venv of its own
# under .cache/, apart from .venv, with the CPU build of torch pinned first (a looser requirement
# pulls a multi-GB CUDA build).

# venv_ready VENV IMPORTS: true (and says so) when VENV's python can run IMPORTS.
venv_ready() {
    if [ -x "$1/bin/python" ] && "$1/bin/python" -c "$2" 2>/dev/null; then
        echo "environment ready: $1"
        return 0
    fi
    return 1
}

# new_torch_venv VENV: a fresh venv with torch==2.13.0 (CPU).
new_torch_venv() {
    python3 -m venv "$1"
    "$1/bin/pip" install -q torch==2.13.0
}
