"""A manifest is untrusted input: nothing in it makes us write, or read, outside the folders named.

Each writer (the preprocessing cache, the synthetic cohort, the Lee baseline, training results) and
each reader that builds a path from a manifest value gets a hostile manifest and must refuse it
before anything is written: the test snapshots every file under the test's folder before and after.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_manifest import edit, make_cohort

from tss import cli, manifest, paths, synth
from tss.baselines import lee
from tss.preprocess import pipeline

HOSTILE = ["../../escaped", "/tmp/abs", "a/b", ".hidden", "..", "a\\b", "nul\x00byte", "tab\tid", "P 1",
           "-rf", "CON", "P001.", "é1", "x" * 65]


def snapshot(root: Path) -> set[Path]:
    """Every file and folder under ``root``."""
    return set(root.rglob("*"))


@pytest.fixture
def cohort(tmp_path) -> Path:
    return make_cohort(tmp_path / "cohort")


def _absolute_id(tmp_path: Path) -> str:
    return str(tmp_path / "abs")  # an absolute id that would land inside this test's folder


# --- the helper and the id rule ---------------------------------------------------------------


def test_inside_keeps_paths_in_their_folder(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    assert paths.inside(root, "sub", "x.npz") == (root / "sub" / "x.npz").resolve()
    assert paths.inside(root, "sub/../y.json") == (root / "y.json").resolve()
    for value in ("../x", "sub/../../x", str(tmp_path / "x"), "/etc/passwd", ".", "sub/..", "a\x00b"):
        with pytest.raises(ValueError, match="refused|cannot resolve") as err:
            paths.inside(root, value)
        assert repr(value) in str(err.value)  # the message names the value


def test_inside_follows_symlinks(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "out").symlink_to(elsewhere, target_is_directory=True)
    (root / "in").symlink_to(root / "real", target_is_directory=True)
    with pytest.raises(ValueError, match="'out/x.npz' leads outside"):
        paths.inside(root, "out", "x.npz")
    assert paths.inside(root, "in", "x.npz") == root.resolve() / "real" / "x.npz"


@pytest.mark.parametrize("pid", HOSTILE)
def test_unsafe_ids_are_refused(pid):
    assert paths.id_problem(pid) is not None
    with pytest.raises(ValueError, match="unsafe patient id"):
        paths.check_id(pid)


@pytest.mark.parametrize("pid", ["P001", "sub-0001", "sub-strokecase0009", "a.b_c-d", "0", "x" * 64, "COM10"])
def test_ordinary_ids_pass(pid):
    assert paths.id_problem(pid) is None and paths.ID_PATTERN.fullmatch(pid)


# --- validate names every hostile id and every escaping path ----------------------------------


@pytest.mark.parametrize("pid", HOSTILE)
def test_validate_reports_a_hostile_id_with_its_row(cohort, pid):
    edit(cohort, "P003", patient_id=pid)
    bad = [f for f in manifest.validate(cohort) if f.fatal]
    if "\x00" in pid:  # a NUL byte makes the whole file unreadable as text
        assert [(f.patient_id, f.field) for f in bad] == [("-", "manifest")] and "NUL" in bad[0].problem
        return
    assert [(f.patient_id, f.field) for f in bad] == [("row 3", "patient_id")], manifest.format_findings(bad)
    assert repr(pid) in bad[0].problem and "unsafe patient_id" in bad[0].problem
    assert manifest.safety_findings(cohort) == bad


def test_ids_that_differ_only_in_case_collide(cohort):
    edit(cohort, "P002", patient_id="p001")
    bad = [f for f in manifest.validate(cohort) if f.fatal]
    assert {(f.patient_id, f.field) for f in bad} == {("P001", "patient_id"), ("p001", "patient_id")}
    assert all("only in case" in f.problem for f in bad)


def test_path_cells_must_stay_inside_the_data_roots(cohort, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    src = cohort / "P001/dwi/P001_acq-b1000_dwi.nii.gz"
    (outside / "b1000.nii.gz").write_bytes(src.read_bytes())
    (outside / "garbage.nii.gz").write_bytes(b"not an image")  # never opened: it lies outside
    (cohort / "P004" / "link.nii.gz").symlink_to(outside / "b1000.nii.gz")
    edit(cohort, "P001", b1000="../outside/b1000.nii.gz")
    edit(cohort, "P002", flair=str(outside / "garbage.nii.gz"))
    edit(cohort, "P003", b0="/etc/hostname")
    edit(cohort, "P004", b1000="P004/link.nii.gz")
    edit(cohort, "P005", lesion_mask="~nosuchuser_tss/mask.nii.gz")
    findings = manifest.validate(cohort)  # must not raise
    bad = {(f.patient_id, f.field): f.problem for f in findings if f.fatal}
    assert set(bad) == {("P001", "b1000"), ("P002", "flair"), ("P003", "b0"), ("P004", "b1000"),
                        ("P005", "lesion_mask")}, manifest.format_findings(findings)
    for key in [("P001", "b1000"), ("P002", "flair"), ("P003", "b0"), ("P004", "b1000")]:
        assert "leads outside the data roots" in bad[key], bad[key]
    assert "cannot expand '~'" in bad["P005", "lesion_mask"]
    assert [f for f in manifest.safety_findings(cohort) if f.fatal] == [f for f in findings if f.fatal]

    edit(cohort, "P003", b0="P003/dwi/P003_acq-b0_dwi.nii.gz")
    edit(cohort, "P005", lesion_mask="")
    edit(cohort, "P002", flair=str(outside / "b1000.nii.gz"))
    findings = manifest.validate(cohort, data_roots=[outside])
    assert not [f for f in findings if f.fatal], manifest.format_findings(findings)  # a named root is allowed
    assert cli.main(["validate", str(cohort)]) == 1
    assert cli.main(["validate", str(cohort), "--data-root", str(outside)]) == 0


# --- writers: refused before anything is written ----------------------------------------------


@pytest.mark.parametrize("pid", ["../../escaped", "ABS", "a/b", ".hidden", ".."])
def test_preprocess_refuses_a_hostile_manifest_before_writing(cohort, tmp_path, pid):
    pid = _absolute_id(tmp_path) if pid == "ABS" else pid
    edit(cohort, "P002", patient_id=pid)
    out = tmp_path / "work" / "cache"
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="refusing to start preprocessing") as err:
        pipeline.preprocess_cohort(cohort, out, jobs=1, progress=False)
    assert "patient row 2, field patient_id" in str(err.value) and repr(pid) in str(err.value)
    with pytest.raises(ValueError, match="refusing to start assembling"):
        pipeline.assemble(out, cohort, progress=False)
    assert snapshot(tmp_path) == before


def test_preprocess_refuses_paths_outside_the_data_roots(cohort, tmp_path, capsys):
    edit(cohort, "P004", flair="../../elsewhere/flair.nii.gz")
    out = tmp_path / "cache"
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="patient P004, field flair: path '../../elsewhere/flair.nii.gz' leads out"):
        pipeline.preprocess_cohort(cohort, out, jobs=1, progress=False)
    assert cli.main(["preprocess", str(cohort), "--out", str(out), "--jobs", "1"]) == 2
    assert "patient P004, field flair" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def _fake_result(row):
    return {"arrays": {"volume": np.zeros((3, 2, 2, 2), np.float16)}, "meta": {"seconds": 0.0}}


@pytest.mark.parametrize("pid", ["../../escaped", "ABS", "a/b", ".hidden", ".."])
def test_run_patient_never_writes_outside_the_cache(tmp_path, monkeypatch, pid):
    """The worker itself refuses (it is public): with processing stubbed out, an unchecked id would
    write ``<id>.npz`` / ``.json`` wherever it points."""
    pid = _absolute_id(tmp_path) if pid == "ABS" else pid
    monkeypatch.setattr(pipeline, "process_patient", _fake_result)
    cache = tmp_path / "work" / "cache"
    before = snapshot(tmp_path)
    o = pipeline.run_patient({"patient_id": pid, "stroke_side": "left"}, str(cache))
    assert not o.ok and o.step == "manifest" and "unsafe patient id" in o.reason
    assert snapshot(tmp_path) == before
    assert pipeline.run_patient({"patient_id": "P1", "stroke_side": "left"}, str(cache)).ok  # the stub works
    assert {p.name for p in snapshot(tmp_path) - before} == {"work", "cache", "patients", "P1.npz", "P1.json"}


def test_cache_readers_refuse_hostile_ids(tmp_path):
    """load_patient and the Lee features read ``<id>.npz``: a planted file outside the cache stays unread."""
    cache = tmp_path / "work" / "cache"
    (cache / "patients").mkdir(parents=True)
    np.savez(tmp_path / "work" / "escaped.npz", volume=np.zeros((3, 4, 4, 2)), brain=np.ones((4, 4, 2), bool))
    (tmp_path / "work" / "escaped.json").write_text(json.dumps({"label_left": 1, "label_right": 0}))
    for pid in ("../escaped", str(tmp_path / "work" / "escaped")):
        with pytest.raises(ValueError, match="unsafe patient id"):
            pipeline.load_patient(cache, pid)
        with pytest.raises(ValueError, match="unsafe patient id"):
            lee.extract_features(cache, pid)
        assert "unsafe patient id" in lee._extract_safe(str(cache), pid, 1000)["error"]


@pytest.mark.parametrize("pid", ["../../escaped", "ABS", "a/b", ".hidden", ".."])
def test_lee_refuses_a_hostile_manifest_before_writing(tmp_path, pid):
    pid = _absolute_id(tmp_path) if pid == "ABS" else pid
    cohort, cache, out = tmp_path / "cohort", tmp_path / "cache", tmp_path / "lee"
    cohort.mkdir()
    (cache / "cohort").mkdir(parents=True)
    (cache / "cohort" / "cohort.json").write_text(json.dumps({"key": "abc"}))
    pd.DataFrame({"patient_id": ["s01", pid], "split": ["train", "test"], "onset_to_mri_min": [60, 300]}).to_csv(
        cohort / "manifest.csv", index=False)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="refusing to start the Lee baseline") as err:
        lee.run(cache, cohort, out, jobs=1, progress=False)
    assert repr(pid) in str(err.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("pid", ["../../escaped", "ABS", "a/b", ".hidden", ".."])
def test_synth_refuses_a_hostile_id_before_writing(tmp_path, pid):
    pid = _absolute_id(tmp_path) if pid == "ABS" else pid
    with pytest.raises(ValueError, match="unsafe patient id"):
        synth.patient_paths(pid)
    plan = synth.cohort.sample_patients(10, 0).to_dict("records")[0]  # a real plan: unchecked, it would render
    plan["patient_id"] = pid
    root = tmp_path / "work" / "cohort"
    root.mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="unsafe patient id"):
        synth._render_one(plan, 0, 0, str(root))
    assert snapshot(tmp_path) == before


def test_synth_refuses_a_patient_folder_that_is_a_symlink_out(tmp_path):
    root, elsewhere = tmp_path / "cohort", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    plan = synth.cohort.sample_patients(10, 0).to_dict("records")[0]
    (root / plan["patient_id"]).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="leads outside"):
        synth._render_one(plan, 0, 0, str(root))
    assert not any(elsewhere.iterdir())


def test_training_results_never_put_an_id_in_a_path(tmp_path):
    """Training writes fixed names under ``out/<experiment>``; hostile ids in the hemisphere index
    are only ever cell values."""
    import torch

    from tss import profiles
    from tss.train import Experiment, Hemispheres, Run

    hostile = ["../../escaped", _absolute_id(tmp_path), "a/b", ".hidden", "..", "ok1", "ok2", "ok3"]
    splits = ["train"] * 4 + ["val"] * 2 + ["test"] * 2
    g = torch.Generator().manual_seed(0)
    xs, rows = [], []
    for i, pid in enumerate(hostile):
        for h, side in enumerate(("left", "right")):
            x = 0.3 + 0.05 * torch.rand((3, 26, 28, 14), generator=g)
            x[0, 10:16, 8:16, 3:9] += 0.5 * (h == i % 2)
            xs.append(x)
            rows.append({"row": 2 * i + h, "patient_id": pid, "hemisphere": side, "label": int(h == i % 2),
                         "label_source": "test", "split": splits[i], "onset_to_mri_min": 100 + 60 * i})
    tiny = profiles.TrainProfile(max_epochs=1, patience=1, seeds=(0,), genesis_cubes=8, medical_per_epoch=8,
                                 synthetic_eval=8)
    out = tmp_path / "work" / "runs"
    before = snapshot(tmp_path)
    Run(Experiment("2d", "stroke", "random"), Hemispheres(torch.stack(xs), pd.DataFrame(rows), key="hostile"),
        out, "quick", 0, max_epochs=1, progress=False, train_profile=tiny).fit()
    new = snapshot(tmp_path) - before
    assert new and all(p == tmp_path / "work" or p.is_relative_to(out) for p in new), sorted(new)
    names = {part for p in new for part in p.relative_to(tmp_path).parts}
    assert not names & {"escaped", "abs", "a", "b", ".hidden", ".."}, names
    assert not any(pid in str(p.relative_to(tmp_path)) for p in new for pid in hostile if pid != ".."), sorted(new)
    written = pd.read_csv(out / "2d-stroke-random" / "predictions.csv")
    assert set(hostile) >= set(written["patient_id"])  # the ids survive as values
    assert os.listdir(tmp_path) == ["work"]
