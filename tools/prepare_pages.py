"""Prepare executed notebooks for the book: hide their parameter cells, keep their own chapter's cells,
turn caption cells into figure captions.

papermill adds an ``injected-parameters`` cell below each notebook's ``parameters`` cell; both are
for papermill and for a student re-running the notebook, not for a reader of the book. Jupyter
Book removes cells tagged ``remove-cell``, and has no setting that maps other tags to it, so this
adds that tag to both in the executed copies (the sources keep theirs as they are).

One notebook can be several pages (``notebooks/04_training.py`` is the three Training pages, one
papermill run per value of ``phases``): a cell tagged ``page=NAME`` belongs to the page executed into
``NAME.ipynb`` and is dropped from the others (dropped, not hidden: a page's title is its first
heading).
A figure's caption is the markdown cell right below the cell that draws it, tagged ``caption``
(or ``caption=NAME`` to give the figure a name to link to): readable in the source, and right under the
figure in Jupyter or Colab. For the book it becomes MyST-NB's figure caption of the drawing cell
(its ``mystnb.figure`` metadata: ``<figure>`` with ``<figcaption>`` in the page) and the cell goes.

Run: python tools/prepare_pages.py book/generated/NN_name.ipynb ...
"""

import sys
from pathlib import Path

import nbformat

PAGE_TAG = "page="
CAPTION_TAG = "caption"


def hide(path: str) -> int:
    """Tag both parameter cells ``remove-cell``; returns how many cells it tagged."""
    nb = nbformat.read(path, as_version=4)
    n = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if ({"parameters", "injected-parameters"} & set(tags)) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            n += 1
    nbformat.write(nb, path)
    return n


def drop_other_pages(nb, page: str) -> int:
    """Drop from ``nb`` the cells tagged ``page=NAME`` for another page than ``page``; returns how many."""
    keep = []
    for cell in nb.cells:
        pages = [t.removeprefix(PAGE_TAG) for t in cell.metadata.get("tags", []) if t.startswith(PAGE_TAG)]
        if not pages or page in pages:
            keep.append(cell)
    dropped = len(nb.cells) - len(keep)
    nb.cells = keep
    return dropped


def keep_own_page(path: str) -> int:
    """Drop the cells tagged ``page=NAME`` for another page than this file's; returns how many."""
    nb = nbformat.read(path, as_version=4)
    dropped = drop_other_pages(nb, Path(path).stem)
    nbformat.write(nb, path)
    return dropped


def _is_image(output) -> bool:
    return output.get("output_type") in ("display_data", "execute_result") and any(
        m.startswith("image/") for m in output.get("data", {}))


def _split_figures(cell, figure: dict) -> list:
    """The cell as consecutive pieces of its outputs: images get ``figure``, the rest (text, tables)
    stays plain. MyST-NB makes every rich output of a cell with figure metadata a figure, so a table
    printed beside a plot would get the plot's caption (and its name twice)."""
    images = sum(map(_is_image, cell.get("outputs", [])))
    if figure.get("name") and images > 1:
        raise ValueError(f"a named figure caption belongs to one image; this cell draws {images}: "
                         f"{cell.source[:60]!r} (use the plain 'caption' tag)")
    pieces = []
    for out in cell.get("outputs", []):
        kind = _is_image(out)
        if not pieces or kind != pieces[-1][0]:
            pieces.append((kind, []))
        pieces[-1][1].append(out)
    if not pieces:
        return [cell]
    cells = []
    for i, (kind, outs) in enumerate(pieces):
        # a continuation needs some source: MyST-NB drops code cells whose source is empty
        c = nbformat.from_dict(dict(cell)) if i == 0 else nbformat.v4.new_code_cell("# output of the cell above")
        c.outputs = outs
        if i > 0:
            c.metadata["tags"] = ["remove-input"]
        if kind:
            c.metadata["mystnb"] = {**c.metadata.get("mystnb", {}), "figure": figure}
        cells.append(c)
    return cells


def attach_captions(path: str) -> int:
    """Make each ``caption`` cell the figure caption of the images of the code cell above it; returns
    how many captions it attached."""
    nb = nbformat.read(path, as_version=4)
    keep, n = [], 0
    for cell in nb.cells:
        tags = [t for t in cell.metadata.get("tags", []) if t == CAPTION_TAG or t.startswith(CAPTION_TAG + "=")]
        if not tags:
            keep.append(cell)
            continue
        if cell.cell_type != "markdown" or not keep or keep[-1].cell_type != "code":
            raise ValueError(f"{path}: a {CAPTION_TAG!r} cell must be a markdown cell right below the code cell "
                             f"that draws its figure: {cell.source[:60]!r}")
        figure = {"caption": " ".join(cell.source.split())}
        if tags[0] != CAPTION_TAG:
            figure["name"] = tags[0].removeprefix(CAPTION_TAG + "=")
        keep[-1:] = _split_figures(keep[-1], figure)
        n += 1
    nb.cells = keep
    nbformat.write(nb, path)
    return n


if __name__ == "__main__":
    for p in sys.argv[1:]:
        hide(p)
        keep_own_page(p)
        attach_captions(p)
