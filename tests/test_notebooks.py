"""Notebooks are sources: committed without outputs, each with a papermill `parameters` cell
that declares `profile` and `seed`, and each listed in the book and run by `make book`."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterized(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for name in ("profile", "seed"):
        assert re.search(rf"^{name}\s*=", params[0].source, re.M), name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_book_and_the_makefile(path):
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    def walk(entries):
        for e in entries:
            yield e["file"]
            yield from walk(e.get("sections", []))

    files = list(walk(toc["chapters"]))
    assert f"generated/{path.stem}" in files
    make = (ROOT / "Makefile").read_text()
    assert re.search(rf"^NOTEBOOKS\s*:=.*\b{path.stem}\b", make, re.M)


def test_the_book_hides_both_parameter_cells_and_nothing_else(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from hide_parameters import hide

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'quick'"), nbformat.v4.new_code_cell("profile = 'lowres'"),
                nbformat.v4.new_code_cell("print(profile)")]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells[1].metadata["tags"] = ["injected-parameters"]  # what papermill adds
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert hide(str(path)) == 2 and hide(str(path)) == 0  # idempotent
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells]
    assert tags == [["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], []]
