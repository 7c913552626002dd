"""Every Slicer name the extension calls exists in Slicer's real libraries, with the keywords we pass.

The code that only runs inside Slicer (widget, effect, self-tests) cannot run here; this test reads
it and checks each ``slicer.<name>``, ``slicer.util.<function>(...)`` and the keyword arguments
against slicer-core. Names that slicer-core cannot have (Qt, the application) are listed in
``INSIDE_SLICER_ONLY``, each with where it comes from; any other unknown name fails.
"""

from __future__ import annotations

import ast
import inspect

import pytest

from slicer_helpers import slicer  # noqa: F401 -- skips this module where slicer-core is missing
from testing_support import REPO

pytestmark = pytest.mark.slicer

SOURCES = sorted((REPO / "MedSegAI").glob("*.py")) + sorted((REPO / "MedSegAI" / "MedSegAISlicerLib").glob("*.py")) \
    + sorted((REPO / "SegmentEditorMedSegAI").rglob("*.py"))

INSIDE_SLICER_ONLY = {
    "app": "qSlicerApplication (Qt)",
    "modules": "module registry of the application (slicer-core tests set a namespace)",
    "mrmlScene": "the application's scene (slicer-core tests set their own)",
    "packaging": "slicer.packaging, Slicer >= 5.12 application package manager (feature-detected)",
    "qMRMLSegmentEditorWidget": "Qt widget",
    "qMRMLSliderWidget": "Qt widget (feature-detected)",
    "util.loadUI": "Qt UI loader",
    "util.childWidgetVariables": "Qt",
    "util.tryWithErrorDisplay": "Qt message boxes",
    "util.errorDisplay": "Qt message box",
    "util.infoDisplay": "Qt message box",
    "util.confirmOkCancelDisplay": "Qt message box",
    "util.selectModule": "application module selector",
    "util.VTKObservationMixin": "imported from slicer.util; checked below as a class",
    "parameterNodeWrapper": "imported from slicer.parameterNodeWrapper (Qt-based)",
}


def used_names() -> dict[str, set[str]]:
    """``{"vtkMRMLScalarVolumeNode": {files}, "util.addVolumeFromArray": {...}}`` and keyword uses."""
    names: dict[str, set[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "slicer":
                names.setdefault(node.attr, set()).add(path.name)
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "slicer"
                    and node.value.attr == "util"):
                names.setdefault(f"util.{node.attr}", set()).add(path.name)
    names.pop("util", None)
    return names


def util_keyword_calls():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            f = getattr(node, "func", None)
            if (isinstance(node, ast.Call) and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute)
                    and isinstance(f.value.value, ast.Name) and f.value.value.id == "slicer" and f.value.attr == "util"):
                yield path.name, f.attr, [k.arg for k in node.keywords if k.arg], len(node.args)


def test_every_slicer_name_exists_in_slicer_core_or_is_listed():
    import slicer.util  # noqa: F401

    missing = {}
    for name, files in used_names().items():
        if name in INSIDE_SLICER_ONLY:
            continue
        owner, attr = (slicer.util, name[5:]) if name.startswith("util.") else (slicer, name)
        if not hasattr(owner, attr):
            missing[name] = sorted(files)
    assert not missing, f"not in slicer-core and not listed as inside-Slicer-only: {missing}"


def test_inside_slicer_only_list_has_no_stale_entries():
    used = used_names()
    stale = [n for n in INSIDE_SLICER_ONLY if n not in used and not n.startswith(("parameterNodeWrapper", "util.VTK"))]
    assert not stale


def test_slicer_util_calls_use_existing_parameters():
    import slicer.util

    for file, function, keywords, positional in util_keyword_calls():
        if f"util.{function}" in INSIDE_SLICER_ONLY:
            continue
        params = inspect.signature(getattr(slicer.util, function)).parameters
        assert positional <= len(params), (file, function)
        for k in keywords:
            assert k in params, f"{file}: slicer.util.{function} has no parameter {k!r}"
