"""Slicer packaging: every script and resource is listed in CMake (an unlisted file is silently
not installed), and the extension metadata matches the catalog entry."""

import re
from pathlib import Path

import pytest

from testing_support import REPO

MODULE_DIRS = ["MedSegAI", "SegmentEditorMedSegAI"]


def cmake_list(text: str, variable: str) -> set[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not found"
    return {line.strip() for line in match.group(1).splitlines() if line.strip() and not line.strip().startswith("#")}


def files_on_disk(module: Path) -> tuple[set[str], set[str]]:
    files = [p for p in module.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.name != "CMakeLists.txt"]
    scripts = {p.relative_to(module).as_posix() for p in files if p.suffix == ".py"}
    resources = {p.relative_to(module).as_posix() for p in files if p.suffix != ".py"}
    return scripts, resources


@pytest.mark.parametrize("module", MODULE_DIRS)
def test_every_file_of_the_module_is_listed_in_cmake(module):
    text = (REPO / module / "CMakeLists.txt").read_text()
    scripts, resources = files_on_disk(REPO / module)
    assert cmake_list(text, "MODULE_PYTHON_SCRIPTS") == scripts
    assert cmake_list(text, "MODULE_PYTHON_RESOURCES") == resources


def test_extension_cmake_names_every_module_and_depends_on_pytorch():
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.findall(r"add_subdirectory\((\w+)\)", text) == MODULE_DIRS
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    for key in ("HOMEPAGE", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "CATEGORY"):
        assert re.search(rf'set\(EXTENSION_{key} "[^"]+"\)', text), key


CATALOG_KEYS = {"$schema", "build_dependencies", "build_subdirectory", "category", "dicom_support_rule", "enabled",
                "scm_revision", "scm_type", "scm_url", "tier"}


def test_catalog_entry_follows_the_extensions_index_schema_and_matches_cmake():
    import json

    entry = json.loads((REPO / "Resources" / "ExtensionsIndex" / "MedSegAI.json").read_text())
    assert {"$schema", "category", "scm_url"} <= set(entry) <= CATALOG_KEYS
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert 1 <= entry["tier"] <= 5
    cmake = (REPO / "CMakeLists.txt").read_text()
    depends = re.search(r'set\(EXTENSION_DEPENDS "([^"]*)"\)', cmake).group(1).split()
    assert entry["build_dependencies"] == depends
    assert entry["category"] == re.search(r'set\(EXTENSION_CATEGORY "([^"]*)"\)', cmake).group(1)
