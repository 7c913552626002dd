"""Settings for a process that runs segmentations: threads, glibc malloc thresholds and unused
imports.

*Allocator.* With glibc's defaults every block above the (dynamic, at most 32 MiB) mmap
threshold is a fresh ``mmap``, zero-filled page by page on first touch and unmapped on ``free``,
and free memory above 128 KiB at the heap top is given back at once. The pipeline allocates and
frees such arrays for every sliding window, every class resampled back to the scan and every
post-processing step, so the kernel keeps faulting in the same memory. With both thresholds at
1 GiB, freed memory stays in the process for reuse (``bench/``, section 5, 512x512x300: page
faults 0.84 M -> 0.08 M, time -8 %, peak RSS +5 %). Set before start-up via ``GLIBC_TUNABLES``
(:func:`malloc_environment`, for child processes) or at run time via ``mallopt``
(:func:`tune_malloc`, for the CLI). Both leave values the user set alone and do nothing where the C
library is not glibc.

*Imports.* MONAI imports its whole package tree, and with it optional packages that segmentation
never uses (matplotlib, scipy.signal, nibabel, tensorboard); :func:`skip_unused_imports` marks them
unimportable in this process, so MONAI's optional imports record them as missing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Mapping

MALLOC_THRESHOLD_BYTES = 1 << 30  # mmap and trim thresholds
# glibc's mallopt() parameter numbers (malloc.h) and tunable names, with their environment aliases
_MALLOC_PARAMETERS = {
    "mmap_threshold": (-3, "MALLOC_MMAP_THRESHOLD_"),
    "trim_threshold": (-1, "MALLOC_TRIM_THRESHOLD_"),
}
# Imported by MONAI at start-up, never used by the segmentation CLI (bench/: 1.6 of 6.3 CPU-s of
# its imports). Not scipy.ndimage/spatial, which the core uses.
UNUSED_IMPORTS = ("matplotlib.pyplot", "scipy.signal", "nibabel", "tensorboard", "torch.utils.tensorboard")


def physical_cores() -> int:
    """Cores, not hyper-threads: the default thread count (a second thread per core gave no
    speed-up to convolutions here)."""
    import psutil  # here: most of this module runs before anything else is imported

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def glibc_version() -> str | None:
    """The running glibc's version (``"2.36"``), or None for another C library or OS."""
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or not glibc (musl, macOS)
        return None
    name, _, version = (value or "").partition(" ")
    return version if name == "glibc" else None


def _user_set(name: str, env: Mapping[str, str]) -> bool:
    tunables = env.get("GLIBC_TUNABLES", "")
    set_in_tunables = any(item.split("=", 1)[0] == f"glibc.malloc.{name}" for item in tunables.split(":"))
    return set_in_tunables or _MALLOC_PARAMETERS[name][1] in env


def malloc_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus ``GLIBC_TUNABLES`` entries for the malloc thresholds, for starting a child
    process; thresholds the user set (in ``GLIBC_TUNABLES`` or ``MALLOC_*_``) are kept."""
    out = dict(env)
    if glibc_version() is None:
        return out
    added = [f"glibc.malloc.{name}={MALLOC_THRESHOLD_BYTES}" for name in _MALLOC_PARAMETERS if not _user_set(name, env)]
    if added:
        out["GLIBC_TUNABLES"] = ":".join([x for x in [env.get("GLIBC_TUNABLES")] if x] + added)
    return out


def tune_malloc(env: Mapping[str, str] = os.environ) -> bool:
    """Set the malloc thresholds in this running process with ``mallopt``; thresholds the user set
    are kept. Returns True if at least one was set, False where this is not glibc."""
    if glibc_version() is None:
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return any([mallopt(number, MALLOC_THRESHOLD_BYTES) == 1
                for name, (number, _) in _MALLOC_PARAMETERS.items() if not _user_set(name, env)])


def skip_unused_imports() -> None:
    """Make :data:`UNUSED_IMPORTS` unimportable in this process (unless already imported).
    For the CLI's own process only: a later ``import`` of one of them raises ImportError."""
    for name in UNUSED_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
