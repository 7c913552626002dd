"""The examples in the core modules' docstrings are tests too: every module with one that runs is found here."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import MedSegAILib

CORE = Path(MedSegAILib.__file__).parent

def runs_an_example(path: Path) -> bool:
    return any(">>>" in line and "+SKIP" not in line for line in path.read_text(encoding="utf-8").splitlines())


MODULES = sorted(".".join(p.relative_to(CORE.parent).with_suffix("").parts) for p in CORE.rglob("*.py")
                 if runs_an_example(p))


def test_the_modules_with_examples_are_found():
    assert {"MedSegAILib.body", "MedSegAILib.networks.cpu_kernels", "MedSegAILib.sliding_window"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
