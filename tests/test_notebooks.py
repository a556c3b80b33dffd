"""Notebooks are text sources (notebooks/NN_name.py, jupytext percent format): each holds one
papermill `parameters` cell that declares `profile` and `seed`, parses as Python, holds no long
function, and becomes a page of the book that `make book` runs."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))
# pages made from another page's notebook (make book executes it once per page)
PAGES = {"04_training": ["04_training_pretrain", "05_training_tss", "06_training_attention"]}

sys.path.insert(0, str(ROOT / "tools"))
from hide_parameters import hide, keep_own_page  # noqa: E402


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())

    def walk(entries):
        for e in entries:
            yield e["file"]
            yield from walk(e.get("sections", []))

    return list(walk(toc["chapters"]))


def _makefile_pages() -> list[str]:
    make = (ROOT / "Makefile").read_text()
    return re.search(r"^NOTEBOOKS\s*:=(.*)$", make, re.M).group(1).split()


def test_there_are_notebooks_and_no_generated_copies():
    assert SOURCES
    assert not list((ROOT / "notebooks").glob("*.ipynb")), "the .py files are the notebooks: commit no .ipynb"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_notebook_is_parameterized_and_parses(path):
    nb = jupytext.read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for name in ("profile", "seed"):
        assert re.search(rf"^{name}\s*=", params[0].source, re.M), name
    for c in code:
        ast.parse(c.source)  # a syntax error shows here, not half-way through make book


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_notebook_defines_no_long_function(path):
    """Logic lives in tss, with tests: a notebook cell may define a helper of a few lines only."""
    for c in jupytext.read(path).cells:
        if c.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(c.source)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert node.end_lineno - node.lineno < 6, f"{path.name}: {node.name} belongs in tss"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_page_of_a_notebook_is_in_the_book_and_the_makefile(path):
    for page in PAGES.get(path.stem, [path.stem]):
        assert f"generated/{page}" in _toc_files()
        assert page in _makefile_pages()


def test_the_book_lists_its_pages_in_their_numbered_order():
    pages = [f.removeprefix("generated/") for f in _toc_files() if f.startswith("generated/")]
    assert pages == sorted(pages) == _makefile_pages()


def test_the_book_hides_both_parameter_cells_and_nothing_else(tmp_path):
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


@pytest.mark.parametrize("page, kept", [
    ("05_training_tss", ["# Training II", "code"]),
    ("04_training_pretrain", ["# Training I", "code"]),
    ("06_training_attention", ["# Training III", "code", "## Wall time"]),
    ("scratch", ["code"]),
])
def test_a_page_keeps_its_own_cells_of_a_shared_notebook(tmp_path, page, kept):
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [md("# Training I"), md("# Training II"), md("# Training III"), code("code"), md("## Wall time")]
    for cell, name in zip(nb.cells, PAGES["04_training"]):
        cell.metadata["tags"] = [f"page={name}"]
    nb.cells[4].metadata["tags"] = ["hide-input", "page=06_training_attention"]
    path = tmp_path / f"{page}.ipynb"
    nbformat.write(nb, path)
    assert keep_own_page(str(path)) == 5 - len(kept)
    assert [c.source for c in nbformat.read(path, as_version=4).cells] == kept


def test_the_shared_training_notebook_has_one_title_per_page():
    nb = jupytext.read(ROOT / "notebooks" / "04_training.py")
    titles = [t for c in nb.cells for t in c.metadata.get("tags", [])
              if t.startswith("page=") and c.cell_type == "markdown" and c.source.startswith("# ")]
    assert titles == [f"page={p}" for p in PAGES["04_training"]]
