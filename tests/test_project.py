"""The project's folders resolve from the project root, whatever the working directory (make book
runs the notebooks from notebooks/, a student from the repository root, Colab from /content)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from tss import project

ROOT = Path(__file__).resolve().parents[1]


def test_the_root_is_this_checkout():
    assert project.root() == ROOT


@pytest.mark.parametrize("cwd", ["/", "notebooks", "."])
def test_the_same_folders_from_any_working_directory(cwd):
    code = "from tss import project; print(project.paths('quick').cache)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / cwd, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == ROOT / "results" / "quick" / "cache" / "preprocess"


def test_one_profiles_folders():
    p = project.paths("lowres", base=ROOT)
    assert p.cohort == ROOT / "data" / "synthetic-lowres"
    assert p.runs == ROOT / "results" / "lowres" / "runs"
    assert p.study == ROOT / "results" / "lowres" / "study"
    assert p.stage("models") == ROOT / "results" / "lowres" / "models"
    assert p.bench == ROOT / "results" / "bench"


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError):
        project.paths("huge", base=ROOT)


def test_tss_root_names_the_project_or_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv(project.ENV_ROOT, str(ROOT))
    assert project.root() == ROOT
    monkeypatch.setenv(project.ENV_ROOT, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="is not this project's folder"):
        project.root()


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.py")), ids=lambda p: p.stem)
def test_no_notebook_code_names_a_folder_relative_to_the_working_directory(path):
    for cell in jupytext.read(path).cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            code = line.split("#")[0]
            assert not re.search(r"""["']\.\./(results|data)""", code), f"{path.name}: {line.strip()}"


def test_a_path_is_shown_relative_to_the_project_so_no_page_reveals_the_build_folder(tmp_path):
    assert project.shown(ROOT / "results" / "lowres" / "runs") == "results/lowres/runs"
    assert project.shown(tmp_path) == str(tmp_path)  # outside the project: as given


def test_synth_and_preprocess_take_a_profiles_folders_or_say_what_is_missing(monkeypatch):
    """`tss synth --profile P` and `tss preprocess --profile P` (what a Colab notebook runs before its
    chapter) use the profile's folders and size; without a profile the folders must be named."""
    from tss import cli, preprocess, profiles, synth

    seen = {}

    class Generated:
        n_patients, root, seconds, n_generated, n_cached = 0, "", 0.0, 0, 0

    class Processed:
        failures, outcomes = [], []

        def summary(self):
            return ""

    monkeypatch.setattr(synth, "generate",
                        lambda out, n, seed, jobs, variant: seen.update(synth=(out, n, variant)) or Generated())
    monkeypatch.setattr(preprocess, "preprocess_cohort",
                        lambda cohort, out, jobs, data_roots: seen.update(prep=(cohort, out)) or Processed())
    P = project.paths("quick")
    assert cli.main(["synth", "--profile", "quick"]) == 0
    assert seen["synth"] == (P.cohort, profiles.COHORT["quick"].n_patients, "loud")
    assert cli.main(["preprocess", "--profile", "quick", "--no-assemble"]) == 0
    assert seen["prep"] == (P.cohort, P.cache)
    assert cli.main(["synth", "--out", "elsewhere"]) == 0 and seen["synth"] == (Path("elsewhere"), 422, "loud")
    assert cli.main(["synth", "--out", "elsewhere", "--variant", "calibrated"]) == 0 and seen["synth"][2] == "calibrated"
    assert cli.main(["synth", "--profile", "quick", "--variant", "calibrated"]) == 0  # its own folder
    assert seen["synth"] == (P.variant_cohort("calibrated"), profiles.COHORT["quick"].n_patients, "calibrated")
    assert cli.main(["synth", "--profile", "quick", "--variant", "nope"]) == 2  # said, not a traceback
    with pytest.raises(SystemExit, match="give --profile, or COHORT and --out"):
        cli.main(["preprocess"])
    with pytest.raises(SystemExit, match="give --profile, or --out"):
        cli.main(["synth", "--n", "5"])


def test_a_page_shows_the_largest_profile_that_has_its_files(tmp_path):
    from tss.project import largest_with

    (tmp_path / "pyproject.toml").write_text("")
    assert largest_with("audit/native.csv", tmp_path) is None
    for p in ("quick", "lowres"):
        (tmp_path / "results" / p / "audit").mkdir(parents=True)
        (tmp_path / "results" / p / "audit" / "native.csv").write_text("patient_id\n")
    assert largest_with("audit/native.csv", tmp_path) == "lowres"
    (tmp_path / "results" / "full" / "clock" / "seed0" / "x").mkdir(parents=True)  # a folder, no finished run
    assert largest_with("clock/seed*/*/summary.json", tmp_path) is None


def test_pages_that_compare_profiles_list_them_largest_first_by_the_same_rule(tmp_path):
    root = tmp_path / "results"
    assert project.profiles_with(project.FINISHED_RUNS, root) == []
    for p in ("quick", "full"):
        d = root / p / "runs" / "seed0" / "2d-stroke-random"
        d.mkdir(parents=True)
        (d / "summary.json").write_text("{}")
    (root / "lowres").mkdir()
    (root / "lowres" / "provenance.json").write_text("{}")
    assert project.profiles_with(project.FINISHED_RUNS, root) == ["full", "quick"]
    assert project.profiles_with(("provenance.json", project.FINISHED_RUNS), root) == ["full", "lowres", "quick"]
    assert project.profiles_with(project.FINISHED_RUNS, root, among=("quick", "lowres")) == ["quick"]


def test_a_results_folder_given_by_its_path_keeps_its_name_and_spells_every_profile_folder(tmp_path):
    where = project.under(tmp_path / "elsewhere", "lowres")
    assert where.results_root == tmp_path / "elsewhere"  # not tmp_path / "results"
    assert where.runs == tmp_path / "elsewhere" / "lowres" / "runs"
    assert where.lee == tmp_path / "elsewhere" / "lowres" / "baselines" / "lee"
    assert where.cohort_tables == tmp_path / "elsewhere" / "lowres" / "cohort"
    assert where.outputs == tmp_path / "elsewhere" / "lowres" / "results"
    assert where.cohort == tmp_path / "data" / "synthetic-lowres"
    assert project.paths("lowres", tmp_path).results_root == tmp_path / "results"


def test_a_variants_cohort_has_its_own_folder_and_the_default_keeps_the_profiles(tmp_path):
    P = project.paths("lowres", tmp_path)
    assert P.variant_cohort("loud") == P.cohort == tmp_path / "data" / "synthetic-lowres"
    assert P.variant_cohort("calibrated") == tmp_path / "data" / "synthetic-lowres-calibrated"
    assert P.variant("calibrated") == tmp_path / "results" / "lowres" / "variants" / "calibrated"
