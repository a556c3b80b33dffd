"""Prepare executed notebooks for the book: hide their parameter cells, keep their own chapter's cells.

papermill adds an ``injected-parameters`` cell below each notebook's ``parameters`` cell; both are
for papermill and for a student re-running the notebook, not for a reader of the book. Jupyter
Book removes cells tagged ``remove-cell``, and has no setting that maps other tags to it, so this
adds that tag to both in the executed copies (the sources keep theirs as they are).

One notebook can be several pages (``notebooks/04_training.py`` is the three Training pages, one
papermill run per value of ``phases``): a cell tagged ``page=NAME`` belongs to the page executed into
``NAME.ipynb`` and is dropped from the others (dropped, not hidden: a page's title is its first
heading).
Run: python tools/hide_parameters.py book/generated/NN_name.ipynb ...
"""

import sys
from pathlib import Path

import nbformat

PAGE_TAG = "page="


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


def keep_own_page(path: str) -> int:
    """Drop the cells tagged ``page=NAME`` for another page than this file's; returns how many."""
    nb = nbformat.read(path, as_version=4)
    page = Path(path).stem
    keep = []
    for cell in nb.cells:
        pages = [t.removeprefix(PAGE_TAG) for t in cell.metadata.get("tags", []) if t.startswith(PAGE_TAG)]
        if not pages or page in pages:
            keep.append(cell)
    dropped = len(nb.cells) - len(keep)
    nb.cells = keep
    nbformat.write(nb, path)
    return dropped


if __name__ == "__main__":
    for p in sys.argv[1:]:
        hide(p)
        keep_own_page(p)
