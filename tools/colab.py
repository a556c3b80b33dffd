"""The chapters as Colab notebooks, the book's "launch on Colab" buttons, and a Colab-like check here.

Colab opens ``.ipynb`` files from a GitHub repository and starts each notebook in an empty machine.
So each chapter (``notebooks/NN_name.py``, jupytext percent format) is exported as a notebook whose
first code cell, only where ``google.colab`` is present, fetches this repository at the commit it was
exported from, installs it, and works inside it; anywhere else that cell does nothing. The
repository's address is set in one place, the ``--repository`` option; the publishing workflow
(``.github/workflows/book.yml``) passes the address GitHub gives it, and by hand it defaults to
``git remote get-url origin``. Nothing here invents an address.

The workflow publishes the exported notebooks to the branch ``colab``, at the paths the book's launch
buttons point to (``book/generated/NN_name.ipynb``: Jupyter Book builds a Colab link from the
repository, a branch and the page's name), and ``configure`` adds those buttons to the book's config.

Run:
  python tools/colab.py export --out DIR [--repository URL] [--ref COMMIT]
  python tools/colab.py configure book/_config.yml --repository URL
  python tools/colab.py check [--page 01_cohort] [--work DIR]   # the Colab-like check (make check-colab)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from unittest import mock

import jupytext
import nbformat
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import pages  # noqa: E402  (sibling scripts, not a package)
import prepare_pages  # noqa: E402

BRANCH = "colab"  # the branch the workflow publishes the notebooks to
BOOK_PATH = "book"  # the launch buttons' path_to_book: the notebooks sit at book/generated/ on that branch
COLAB_URL = "https://colab.research.google.com"
FOLDER = "tss-companion"  # the clone's folder under /content
SIMULATE = "TSS_COLAB"  # =1: behave as on Colab here (the check)
HOME = "TSS_COLAB_HOME"  # where the clone goes when simulating (Colab: /content)

PAGES = pages.PAGES  # page -> (source under notebooks/, parameters): the one list (tools/pages.py)

# what a page reads that the chapters before it write, as `python -m tss` commands (each given the
# notebook's --profile): a Colab machine starts empty, so the notebook makes them first (each step is
# cached). Pages 08-11 render the committed runs of the larger profiles and this profile's own when
# there are any, so they need none.
_COHORT, _PREP = ["synth"], ["preprocess"]
NEEDS = {
    "02_preprocessing": [_COHORT],
    "03_models": [_COHORT, _PREP],
    "04_training_pretrain": [_COHORT, _PREP],
    "05_training_tss": [_COHORT, _PREP, ["train", "--phases", "genesis,medical,stroke"]],
    "06_training_attention": [_COHORT, _PREP, ["train", "--phases", "genesis,medical,stroke,tss3,tss45"]],
    "06b_data_size": [_COHORT, _PREP],
    "06c_clock": [_COHORT, _PREP],
    "07_baseline_lee": [_COHORT, _PREP],
}

INTRO = """\
**On Colab** the next cell fetches this project at the commit this notebook was exported from,
installs it with pip and works inside it (about two minutes); anywhere else it does nothing. The
`quick` profile runs on Colab's CPU. For the paper's scale choose *Runtime > Change runtime type >
T4 GPU* and set `profile = "full"` in the parameters cell; the T4 trains in fp16 with a gradient
scaler (`tss.precision`); to train the ImageNet rows, run `os.environ["TSS_IMAGENET_DOWNLOAD"] = "1"`
first and torchvision downloads its weights. Each Colab notebook starts on an empty machine, so a
chapter that reads what earlier chapters write makes it first, below its parameters (the cohort,
its preprocessing, earlier training phases: cached, so only once per machine)."""

INSTALL = '''\
# Colab: fetch and install this project, then work inside it (only where google.colab is present,
# or TSS_COLAB=1, which simulates Colab; anywhere else this cell does nothing)
import os, subprocess, sys
from pathlib import Path

REPOSITORY, REF = {repository!r}, {ref!r}  # written by tools/colab.py export
if "google.colab" in sys.modules or os.environ.get({simulate!r}) == "1":
    home = Path(os.environ.get({home!r}, "/content")) / {folder!r}
    if not (home / "pyproject.toml").is_file():
        subprocess.run(["git", "init", "-q", str(home)], check=True)
        subprocess.run(["git", "-C", str(home), "fetch", "-q", "--depth", "1", REPOSITORY, REF], check=True)
        subprocess.run(["git", "-C", str(home), "checkout", "-q", "FETCH_HEAD"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(home)], check=True)
    sys.path.insert(0, str(home))  # this running kernel: pip's editable hook is read at start-up only
    os.chdir(home / "notebooks")
'''


PREREQUISITES = '''\
# Colab: this chapter reads what the chapters before it write, and a Colab machine starts empty:
# make it here, for the profile above (every step is cached; written by tools/colab.py export)
NEEDS = {needs!r}
if "google.colab" in sys.modules or os.environ.get({simulate!r}) == "1":
    for step in NEEDS:
        print("python -m tss", *step, "--profile", profile, flush=True)
        subprocess.run([sys.executable, "-m", "tss", *step, "--profile", profile], check=True)
'''


def repository_from_git(root: Path = ROOT) -> str:
    """The checkout's ``origin`` address; raises SystemExit saying what to pass when it has none."""
    r = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        raise SystemExit("no repository address: this checkout has no 'origin' remote; pass --repository URL "
                         "(the publishing workflow passes the one GitHub gives it)")
    return r.stdout.strip()


def head(root: Path = ROOT) -> str:
    """The commit the notebooks are exported from (the install cell fetches exactly this)."""
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def install_cell_source(repository: str, ref: str) -> str:
    return INSTALL.format(repository=repository, ref=ref, simulate=SIMULATE, home=HOME, folder=FOLDER)


def notebook(page: str, repository: str, ref: str) -> nbformat.NotebookNode:
    """One page as a Colab notebook: its source, its parameters (the Training pages' ``phases``), the
    install cell below the title, and only the cells of this page."""
    source, parameters = PAGES[page]
    with tempfile.TemporaryDirectory() as tmp:  # papermill's loader adds the metadata its parameteriser reads
        jupytext.write(jupytext.read(ROOT / "notebooks" / f"{source}.py"), Path(tmp, "nb.ipynb"))
        nb = load_notebook_node(str(Path(tmp, "nb.ipynb")))
    if parameters:
        nb = parameterize_notebook(nb, parameters, kernel_name="python3", language="python")
    prepare_pages.drop_other_pages(nb, page)
    for key in ("papermill", "jupytext"):
        nb.metadata.pop(key, None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    if NEEDS.get(page):  # below the parameters (and the injected ones): it uses `profile`
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        after = max(i for i, t in enumerate(tags) if {"parameters", "injected-parameters"} & set(t)) + 1
        source = PREREQUISITES.format(needs=NEEDS[page], simulate=SIMULATE)
        nb.cells.insert(after, nbformat.v4.new_code_cell(source, metadata={"tags": ["colab"]}))
    at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0  # below the title
    nb.cells[at:at] = [nbformat.v4.new_markdown_cell(INTRO),
                       nbformat.v4.new_code_cell(install_cell_source(repository, ref), metadata={"tags": ["colab"]})]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"  # stable ids: an export of the same sources is the same file
        if not cell.metadata.get("tags", True):
            del cell.metadata["tags"]
    nbformat.validate(nb)
    return nb


def export(out: Path, repository: str, ref: str, pages=None) -> list[Path]:
    """Write ``out/book/generated/<page>.ipynb`` for each page (all by default); returns the files."""
    folder = Path(out) / BOOK_PATH / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for page in pages or PAGES:
        path = folder / f"{page}.ipynb"
        nbformat.write(notebook(page, repository, ref), path)
        written.append(path)
    (Path(out) / "README.md").write_text(
        f"# Colab notebooks\n\nThe chapters of the book as notebooks for Colab, exported by `tools/colab.py` from "
        f"commit `{ref}` of {repository}.\nThis branch is written by the publishing workflow; edit `notebooks/*.py` "
        f"on main instead.\n")
    return written


def configure(config: Path, repository: str, branch: str = BRANCH) -> None:
    """Add the Colab launch buttons to the book's ``_config.yml`` (appended, so its comments stay)."""
    text = Path(config).read_text()
    if any(line.startswith(("repository:", "launch_buttons:")) for line in text.splitlines()):
        raise SystemExit(f"{config} already sets repository or launch_buttons")
    Path(config).write_text(text.rstrip("\n") + f"""

# added by tools/colab.py configure: each chapter's "launch on Colab" button opens the notebook that
# the workflow exported from notebooks/ to the branch {branch}
repository:
  url: {repository}
  branch: {branch}
  path_to_book: {BOOK_PATH}
launch_buttons:
  colab_url: {COLAB_URL}
""")


def check(page: str, work: Path) -> Path:
    """Run one exported page as Colab would, here: a fresh virtual environment whose only packages are
    the scientific stack (Colab has it preinstalled; here it is this checkout's .venv, seen through a
    .pth file, so this project itself is not importable), the working directory elsewhere, the install
    cell enabled by ``TSS_COLAB=1`` and fetching this checkout's HEAD. Returns the executed notebook;
    raises if a cell fails, or if the chapter did not write its results inside the fetched clone."""
    import papermill

    work = Path(work).resolve()
    if work.exists():
        shutil.rmtree(work)
    venv, content, elsewhere = work / "venv", work / "content", work / "elsewhere"
    for d in (content, elsewhere):
        d.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "colab_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([py, "-c", "import tss"], capture_output=True, cwd=elsewhere)
    if probe.returncode == 0:
        raise RuntimeError("the fresh environment can already import tss: it would not test the install cell")
    kernels = work / "kernels"
    subprocess.run([py, "-m", "ipykernel", "install", "--prefix", str(kernels), "--name", "colab-sim"], check=True,
                   capture_output=True)
    export(work / "export", f"file://{ROOT}", head(), [page])
    executed = work / f"{page}.ipynb"
    env = {"JUPYTER_PATH": str(kernels / "share" / "jupyter"), SIMULATE: "1", HOME: str(content)}
    with mock.patch.dict(os.environ, env):  # the kernel inherits them; restored afterwards
        papermill.execute_notebook(work / "export" / BOOK_PATH / "generated" / f"{page}.ipynb", executed,
                                   kernel_name="colab-sim", cwd=str(elsewhere), progress_bar=False)
    clone = content / FOLDER
    if not (clone / "results").is_dir():
        raise RuntimeError(f"{page} ran but wrote no results/ inside the clone {clone}")
    if any(elsewhere.iterdir()):
        raise RuntimeError(f"{page} wrote into the working directory: {sorted(p.name for p in elsewhere.iterdir())}")
    return executed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write the Colab notebooks to OUT/book/generated/")
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--repository", help="the repository's address (default: git remote get-url origin)")
    ex.add_argument("--ref", help="the commit the install cell fetches (default: HEAD)")
    co = sub.add_parser("configure", help="add the Colab launch buttons to the book's _config.yml")
    co.add_argument("config", type=Path)
    co.add_argument("--repository", required=True)
    co.add_argument("--branch", default=BRANCH)
    ch = sub.add_parser("check", help="run one page as Colab would, in a fresh environment elsewhere")
    ch.add_argument("--page", default="01_cohort", choices=sorted(PAGES))
    ch.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    a = ap.parse_args(argv)
    if a.cmd == "export":
        files = export(a.out, a.repository or repository_from_git(), a.ref or head())
        print(f"{len(files)} notebooks in {a.out / BOOK_PATH / 'generated'}")
    elif a.cmd == "configure":
        configure(a.config, a.repository, a.branch)
        print(f"{a.config}: Colab launch buttons -> {a.repository} branch {a.branch}")
    else:
        work = a.work or Path(tempfile.mkdtemp(prefix="colab-check-"))
        print(f"{check(a.page, work)}: ran top to bottom as on Colab (clone in {work / 'content' / FOLDER})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
