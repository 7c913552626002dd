"""Python dependencies inside Slicer: torch from the PyTorch extension, the rest from pip, asked
once with consent, never from a constructor, never replacing Slicer's own SimpleITK/requests."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import slicer

# Slicer ships these (or the PyTorch extension installs them): pip must never replace them.
SKIP_PACKAGES = ["SimpleITK", "torch", "requests", "numpy", "vtk"]
REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"


def requirements() -> list[str]:
    lines = REQUIREMENTS_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def missing_requirements() -> list[str]:
    """Requirement lines whose package is not installed (version ranges checked by pip later)."""
    missing = []
    for req in requirements():
        name = req.split(";")[0].split("[")[0]
        for sep in ("<", ">", "=", "!", "~"):
            name = name.split(sep)[0]
        try:
            importlib.metadata.version(name.strip())
        except importlib.metadata.PackageNotFoundError:
            missing.append(req)
    return missing


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def install_torch(ask: bool = True) -> bool:
    """Install torch through the PyTorch extension (driver-matched CUDA build, else CPU)."""
    try:
        import PyTorchUtils
    except ImportError:
        raise RuntimeError("MedSegAI needs the PyTorch extension: install it from the Extensions Manager and restart")
    logic = PyTorchUtils.PyTorchUtilsLogic()
    if logic.torchInstalled():
        return True
    return logic.installTorch(askConfirmation=ask) is not None


def ensure_dependencies(ask: bool = True) -> bool:
    """Install what is missing, after asking once. Returns False when the user declined."""
    if not torch_available() and not install_torch(ask):
        return False
    if hasattr(slicer, "packaging"):  # Slicer >= 5.12: pip_ensure prompts, installs, offers a restart
        slicer.packaging.pip_ensure(slicer.packaging.load_requirements(str(REQUIREMENTS_FILE)),
                                    skip_packages=SKIP_PACKAGES, requester="MedSegAI", prompt_install=ask)
        return True
    missing = missing_requirements()
    if not missing:
        return True
    if ask and not slicer.util.confirmOkCancelDisplay(
            "MedSegAI needs these Python packages, which will be installed now:\n" + "\n".join(missing)):
        return False
    slicer.util.pip_install(missing)
    return True
