"""Generating a cohort (tss.synth): parallel and serial renders agree, the cache and resumption,
the written cohort passes validation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from small_cohort import N_SMALL
from synth_files import _load

from tss import manifest, profiles, synth
from tss.synth import acquire, cohort
from tss.template import load_anatomy


def test_parallel_files_equal_a_serial_render(small):
    """Images written by worker processes equal an in-process render of the same patient."""
    root, _ = small
    plans = cohort.sample_patients(N_SMALL, seed=3)
    i = 4
    out = acquire.render_patient(plans.iloc[i].to_dict(), 3, i, load_anatomy())
    pid = plans.iloc[i]["patient_id"]
    for key in ("b1000", "b0", "flair", "lesion_mask"):
        arr, aff = out["images"][key]
        img = _load(root, pid, key)
        np.testing.assert_array_equal(np.asanyarray(img.dataobj), arr)
        np.testing.assert_allclose(img.affine, aff, atol=1e-5)


def test_rerun_reuses_cache_and_resumes(small, tmp_path):
    root, res = small
    assert res.n_generated == N_SMALL
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    pid = "sub-0002"
    before = np.asanyarray(_load(copy, pid, "flair").dataobj).copy()
    (copy / synth.patient_paths(pid)["truth"]).unlink()  # as if killed before finishing this patient
    again = synth.generate(copy, n=N_SMALL, seed=3, jobs=1, progress=False)
    assert (again.n_generated, again.n_cached) == (1, N_SMALL - 1)
    np.testing.assert_array_equal(np.asanyarray(_load(copy, pid, "flair").dataobj), before)


def test_written_cohort_passes_validation(small):
    root, _ = small
    findings = manifest.validate(root)
    assert not [f for f in findings if f.fatal], findings
    c = manifest.load_cohort(root)
    assert len(c) == N_SMALL and set(c.table["split"]) == {"train", "val", "test"}


def test_generation_refuses_a_folder_holding_a_cohort_it_did_not_write(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / manifest.MANIFEST_NAME).write_text("patient_id,b1000\nsub-01,sub-01/dwi.nii.gz\n")
    before = sorted(p.name for p in real.iterdir())
    with pytest.raises(FileExistsError, match="did not write"):
        synth.generate(real, n=2, seed=0, jobs=1, progress=False)
    assert sorted(p.name for p in real.iterdir()) == before  # nothing written into it
    assert (real / manifest.MANIFEST_NAME).read_text().startswith("patient_id,b1000\nsub-01,")


def test_a_cohort_variant_renders_with_its_parameters_in_workers_and_keeps_to_its_own_folder(small, tmp_path,
                                                                                             monkeypatch):
    import json

    from tss.synth import params

    root, _ = small
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    meta = json.loads((copy / "generator.json").read_text())
    assert meta.pop("variant") == profiles.DEFAULT_VARIANT == "loud"
    (copy / "generator.json").write_text(json.dumps(meta))
    assert synth.cohort_variant(copy) == "loud"  # a cohort written before variants existed is the first one

    monkeypatch.setitem(params.VARIANTS, "test", {"snr_flair": ((4.0, 5.0), "a test: a noisy FLAIR")})
    with params.using("test"):
        assert params.param("snr_flair") == (4.0, 5.0)
        assert {r["name"]: r for r in params.as_records()}["snr_flair"]["source"] == "a test: a noisy FLAIR"
    assert params.param("snr_flair") == (25.0, 45.0)  # restored after the block

    before = sorted(p.name for p in copy.rglob("*"))
    with pytest.raises(FileExistsError, match="'loud' cohort"):
        synth.generate(copy, n=N_SMALL, seed=3, jobs=1, progress=False, variant="test")
    assert sorted(p.name for p in copy.rglob("*")) == before
    with pytest.raises(ValueError, match="unknown cohort variant"):
        synth.generate(tmp_path / "none", n=2, seed=3, jobs=1, progress=False, variant="nope")
    assert not (tmp_path / "none").exists()

    # worker processes start with the default parameters: they must render with the variant's
    from functools import partial

    from tss.parallel import map_patients

    i = 4
    plan = cohort.sample_patients(N_SMALL, seed=3).iloc[i].to_dict()
    out = tmp_path / "test"
    render = partial(synth._render_indexed, seed=3, root=str(out), variant=params.overrides("test"))
    [(truth, was_cached)] = map_patients(render, [(i, plan)], jobs=2, progress=False)
    assert not was_cached
    with params.using("test"):
        noisy = acquire.render_patient(plan, 3, i, load_anatomy())["images"]["flair"][0]
    written = np.asanyarray(_load(out, plan["patient_id"], "flair").dataobj)
    np.testing.assert_array_equal(written, noisy)
    loud = np.asanyarray(_load(root, plan["patient_id"], "flair").dataobj)  # the same patient, default parameters
    assert written.shape == loud.shape and not np.array_equal(written, loud)
