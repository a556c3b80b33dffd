"""The Colab notebooks (tools/colab.py): one per page of the book, each with an install cell that acts
only on Colab, the Training pages' own `phases`, the repository address from the one place it is set,
and the book's launch buttons pointing at them. `make check-colab` runs a page as Colab would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab  # noqa: E402

URL, REF = "https://example.org/lab/tss-companion", "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, nbformat.NotebookNode]:
    out = tmp_path_factory.mktemp("colab")
    files = colab.export(out, URL, REF)
    return {f.stem: nbformat.read(f, as_version=4) for f in files}


def _makefile_phases() -> dict[str, str]:
    """The pages `make notebooks` runs, with the `phases` each is executed with, asked of the
    registry the Makefile reads (tools/pages.py, through its command line as the Makefile does)."""
    names = subprocess.run([sys.executable, str(ROOT / "tools" / "pages.py")], capture_output=True, text=True,
                           check=True).stdout.split()
    out = {}
    for p in names:
        args = subprocess.run([sys.executable, str(ROOT / "tools" / "pages.py"), "--papermill", p],
                              capture_output=True, text=True, check=True).stdout.split()
        out[p] = dict(zip(args[1::3], args[2::3])).get("phases")
    return out


def test_the_colab_pages_are_the_books_pages_with_the_same_phases():
    ours = {page: params.get("phases") for page, (_, params) in colab.PAGES.items()}
    assert ours == _makefile_phases()


def test_each_page_installs_first_then_takes_its_parameters(exported):
    assert sorted(exported) == sorted(colab.PAGES)
    for page, nb in exported.items():
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "colab" in code[0].metadata.tags, page
        assert f"REPOSITORY, REF = {URL!r}, {REF!r}" in code[0].source
        assert "parameters" in code[1].metadata.tags, page
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), page  # the title stays first
        nbformat.validate(nb)


@pytest.mark.parametrize("page,phases,title", [("04_training_pretrain", "genesis,medical,stroke", "# Training I"),
                                               ("05_training_tss", "tss3,tss45", "# Training II"),
                                               ("06_training_attention", "attention", "# Training III")])
def test_a_training_page_runs_its_own_phases_under_its_own_title(exported, page, phases, title):
    nb = exported[page]
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and f'phases = "{phases}"' in injected[0].source
    assert nb.cells[0].source.startswith(title)
    others = {p for p in colab.PAGES if p != page}
    assert not any(f"page={p}" in c.metadata.get("tags", []) for c in nb.cells for p in others)


def test_the_install_cell_does_nothing_off_colab(exported, monkeypatch, tmp_path):
    cell = next(c for c in exported["01_cohort"].cells if "colab" in c.metadata.get("tags", []))
    monkeypatch.delenv(colab.SIMULATE, raising=False)
    assert "google.colab" not in sys.modules
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a} off Colab"))
    monkeypatch.chdir(tmp_path)
    path = list(sys.path)
    exec(compile(cell.source, "install-cell", "exec"), {})
    assert Path.cwd() == tmp_path and sys.path == path


def test_the_install_cell_fetches_the_exported_commit_on_colab(exported, monkeypatch, tmp_path):
    cell = next(c for c in exported["01_cohort"].cells if "colab" in c.metadata.get("tags", []))
    calls = []

    def run(cmd, check):
        calls.append(cmd)
        if cmd[-1] == "FETCH_HEAD":  # what the checkout would leave
            (tmp_path / colab.FOLDER / "notebooks").mkdir(parents=True)
            (tmp_path / colab.FOLDER / "pyproject.toml").write_text("")

    monkeypatch.setenv(colab.SIMULATE, "1")
    monkeypatch.setenv(colab.HOME, str(tmp_path))
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    exec(compile(cell.source, "install-cell", "exec"), {})
    home = tmp_path / colab.FOLDER
    assert ["git", "-C", str(home), "fetch", "-q", "--depth", "1", URL, REF] in calls
    assert calls[-1] == [sys.executable, "-m", "pip", "install", "-q", "-e", str(home)]
    assert Path.cwd() == home / "notebooks" and sys.path[0] == str(home)


def test_launch_buttons_point_at_the_published_notebooks(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text((ROOT / "book" / "_config.yml").read_text())
    colab.configure(config, URL)
    c = yaml.safe_load(config.read_text())
    assert c["repository"] == {"url": URL, "branch": colab.BRANCH, "path_to_book": colab.BOOK_PATH}
    assert c["launch_buttons"] == {"colab_url": colab.COLAB_URL}
    assert c["sphinx"]["config"]["html_show_copyright"] is False  # the rest is kept
    with pytest.raises(SystemExit, match="already sets"):
        colab.configure(config, URL)


def test_without_an_address_export_says_what_to_pass(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(SystemExit, match="--repository"):
        colab.repository_from_git(tmp_path)
    env = {**os.environ, "GIT_DIR": str(tmp_path / ".git")}
    r = subprocess.run(["git", "remote", "add", "origin", URL], env=env)
    assert r.returncode == 0 and colab.repository_from_git(tmp_path) == URL


def test_a_page_first_makes_what_earlier_chapters_write_for_its_profile(exported, monkeypatch, tmp_path):
    nb = exported["06_training_attention"]
    cells = [c for c in nb.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in cells]
    i = next(k for k, t in enumerate(tags) if "colab" in t and k > 0)
    assert "injected-parameters" in tags[i - 1]  # it reads the notebook's `profile`
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setenv(colab.SIMULATE, "1")
    exec(compile(cells[i].source, "prerequisites", "exec"), {"profile": "lowres", "os": os, "subprocess": subprocess,
                                                             "sys": sys})
    assert [c[3:] for c in calls] == [["synth", "--profile", "lowres"], ["preprocess", "--profile", "lowres"],
                                      ["train", "--phases", "genesis,medical,stroke,tss3,tss45", "--profile", "lowres"]]
    monkeypatch.delenv(colab.SIMULATE)
    calls.clear()
    exec(compile(cells[i].source, "prerequisites", "exec"), {"profile": "lowres", "os": os, "subprocess": subprocess,
                                                             "sys": sys})
    assert not calls  # off Colab it does nothing
    assert sum("colab" in t for t in (c.metadata.get("tags", []) for c in exported["01_cohort"].cells)) == 1


def test_each_prerequisite_is_a_command_that_exists():
    from tss import cli

    parser = cli.build_parser()
    for page, steps in colab.NEEDS.items():
        assert page in colab.PAGES
        for step in steps:
            args = parser.parse_args([*step, "--profile", "quick"])
            assert args.profile == "quick" and callable(args.func), (page, step)
