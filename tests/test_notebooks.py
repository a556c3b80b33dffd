"""Notebooks are text sources (notebooks/NN_name.py, jupytext percent format): each holds one
papermill `parameters` cell that declares `profile` and `seed`, parses as Python, holds no long
function, and becomes a page of the book that `make book` runs."""

from __future__ import annotations

import ast
import re
import subprocess
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
from prepare_pages import attach_captions, hide, keep_own_page  # noqa: E402


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())

    def walk(entries):
        for e in entries:
            yield e["file"]
            yield from walk(e.get("sections", []))

    return list(walk(toc["chapters"]))


def _makefile_pages() -> list[str]:
    """The pages `make notebooks` runs, asked of make itself (it reads them from tools/pages.py)."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "pages"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


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


WRITES = {"to_csv", "to_json", "to_parquet", "savefig", "write_text", "write_bytes", "save", "savez", "dump"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_notebook_cell_writes_a_file(path):
    """A page displays what its stage (tss.stages) or the training code computed and wrote: a file
    written by a cell would have no tested maker and no schema."""
    for c in jupytext.read(path).cells:
        if c.cell_type != "code":
            continue
        calls = {n.func.attr for n in ast.walk(ast.parse(c.source))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not calls & WRITES, f"{path.name} writes a file in a cell: {sorted(calls & WRITES)}"


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


def test_a_caption_cell_becomes_the_caption_of_the_figure_above_it(tmp_path):
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [code("fig = plot()"), md("Lesion ratio\nagainst time."), code("fig2 = plot()"), md("Curves."),
                md("## Next section")]
    nb.cells[0].metadata["tags"] = ["hide-input"]
    nb.cells[0].outputs = nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "x"})]
    nb.cells[1].metadata["tags"] = ["caption=fig-ratio"]
    nb.cells[3].metadata["tags"] = ["caption"]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert attach_captions(str(path)) == 2
    cells = nbformat.read(path, as_version=4).cells
    assert [c.source for c in cells] == ["fig = plot()", "fig2 = plot()", "## Next section"]
    assert cells[0].metadata["mystnb"] == {"figure": {"caption": "Lesion ratio against time.", "name": "fig-ratio"}}
    assert cells[0].metadata["tags"] == ["hide-input"]
    assert cells[1].metadata["mystnb"] == {"figure": {"caption": "Curves."}}  # no name: a loop draws several


def test_a_caption_cell_that_follows_no_code_cell_is_an_error(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_markdown_cell("A caption.")]
    nb.cells[1].metadata["tags"] = ["caption"]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="right below the code cell"):
        attach_captions(str(path))


DRAWS = re.compile(r"plt\.subplots|plt\.show\(\)|\.figure9\(|genesis_figure\(|plot_curves\(|study\.plot\(")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_every_cell_that_draws_a_figure_has_a_caption_below_it(path):
    cells = jupytext.read(path).cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and DRAWS.search(cell.source):
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            tags = nxt.metadata.get("tags", []) if nxt is not None else []
            assert any(t == "caption" or t.startswith("caption=") for t in tags), \
                f"{path.name}: the cell drawing {DRAWS.search(cell.source).group()} has no caption cell below it"


def _display(mime: str) -> dict:
    return nbformat.v4.new_output("display_data", data={mime: "x"})


def test_only_the_images_of_a_captioned_cell_become_figures(tmp_path):
    """A loop that prints a heading, draws and shows a table: the tables keep no caption."""
    nb = nbformat.v4.new_notebook()
    draw = nbformat.v4.new_code_cell("for p in profiles: show(p)")
    draw.outputs = [_display("text/markdown"), _display("image/png"), _display("text/html"), _display("image/png")]
    cap = nbformat.v4.new_markdown_cell("Curves.")
    cap.metadata["tags"] = ["caption"]
    nb.cells = [draw, cap]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    attach_captions(str(path))
    cells = nbformat.read(path, as_version=4).cells
    assert [[next(iter(o["data"])) for o in c.outputs] for c in cells] == [
        ["text/markdown"], ["image/png"], ["text/html"], ["image/png"]]
    assert [c.metadata.get("mystnb") for c in cells] == [None, {"figure": {"caption": "Curves."}}, None,
                                                         {"figure": {"caption": "Curves."}}]
    assert cells[0].source == draw.source and all("remove-input" in c.metadata["tags"] for c in cells[1:])
    assert all(c.source.strip() for c in cells)  # MyST-NB would drop an empty one, outputs and all

    cap.metadata["tags"] = ["caption=fig-curves"]  # one name, two images: the book would fail on it
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="this cell draws 2"):
        attach_captions(str(path))
