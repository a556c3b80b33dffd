"""Hide the parameter cells of executed notebooks from the rendered book.

papermill adds an ``injected-parameters`` cell below each notebook's ``parameters`` cell; both are
for papermill and for a student re-running the notebook, not for a reader of the book. Jupyter
Book removes cells tagged ``remove-cell``, and has no setting that maps other tags to it, so this
adds that tag to both in the executed copies (the sources keep theirs as they are).
Run: python tools/hide_parameters.py book/generated/NN_name.ipynb ...
"""

import sys

import nbformat


def hide(path: str) -> int:
    nb = nbformat.read(path, as_version=4)
    n = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if ({"parameters", "injected-parameters"} & set(tags)) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            n += 1
    nbformat.write(nb, path)
    return n


if __name__ == "__main__":
    for p in sys.argv[1:]:
        hide(p)
