"""The three descriptions of the environment agree: pyproject.toml's ranges, requirements.lock's
exact versions (what `make setup` installs) and environment.yml (conda-forge names)."""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
WANTED = [Requirement(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name, where they differ


def _lock() -> dict[str, str]:
    """The lock's pins that apply to this interpreter and platform: name -> version."""
    env, pins = default_environment(), {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                (spec,) = req.specifier
                pins[canonicalize_name(req.name)] = spec.version
    return pins


def _norm(req: Requirement) -> tuple[str, str]:
    return canonicalize_name(CONDA_NAMES.get(req.name, req.name)), str(req.specifier)


def test_environment_yml_has_pyprojects_ranges_and_installs_the_project():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip"))]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = [Requirement(r) for r in conda] + [Requirement(r) for r in pip if not r.startswith("-e")]
    assert sorted(map(_norm, listed)) == sorted(map(_norm, WANTED))
    assert "-e ." in pip
    assert f"python{PROJECT['requires-python']}" in env["dependencies"]


def test_the_lock_pins_every_package_within_pyprojects_ranges():
    pins = _lock()
    for req in WANTED:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock has {req.name}=={pins[name]}, outside pyproject's {req}: run `make lock`"
    constraints = (ROOT / "lock-constraints.txt").read_text().split()
    for c in (Requirement(line) for line in constraints if "==" in line):
        assert pins[canonicalize_name(c.name)] == next(iter(c.specifier)).version


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="not the project's .venv: a conda or other environment has its own versions")
def test_the_venv_holds_exactly_the_locked_versions():
    wrong = []
    for name, version in _lock().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        if have.split("+")[0] != version:  # torch's local build tag (+cu130) is the registry's
            wrong.append(f"{name} {have} (lock: {version})")
    assert not wrong, "run `make setup`: " + ", ".join(wrong)


def test_jupyter_book_is_pinned_below_2():
    jb = [r for r in WANTED if r.name == "jupyter-book"]
    assert jb and not jb[0].specifier.contains("2.0")


def test_license_and_citation_agree_with_pyproject_and_the_book():
    assert PROJECT["license"]["text"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["license"] == "MIT" and cff["version"] == PROJECT["version"]
    bib = (ROOT / "book" / "references.bib").read_text()
    paper = cff["preferred-citation"]
    assert f"title   = {{{paper['title']}}}" in bib and f"year = {{{paper['year']}}}" in bib
    assert all(a["family-names"] in bib for a in paper["authors"])


def test_the_package_docstring_names_every_module():
    import tss

    root = Path(tss.__file__).parent
    modules = {p.stem for p in root.glob("*.py") if p.stem not in ("__init__", "__main__")}
    modules |= {p.parent.name for p in root.glob("*/__init__.py")}
    named = {line.split()[0] for line in tss.__doc__.splitlines() if line[:1].isalpha() and "  " in line}
    assert modules <= named, f"tss/__init__.py does not describe {sorted(modules - named)}"


def test_the_pages_workflow_publishes_the_folder_make_book_builds():
    root = Path(__file__).resolve().parents[1]
    wf = yaml.safe_load((root / ".github" / "workflows" / "book.yml").read_text())
    steps = wf["jobs"]["build"]["steps"]
    assert any("make book" in s.get("run", "") for s in steps)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "book/_build/html"
    assert "book/_build/html" in (root / "Makefile").read_text()   # where `make book` writes the site
    assert wf["jobs"]["deploy"]["steps"][0]["uses"].startswith("actions/deploy-pages")
