"""Preprocessing: registration, skull stripping, hemispheres, bad inputs, caching, the real case."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import SHARED

from tss import manifest, preprocess
from tss.cli import main as cli
from tss.preprocess import qc, steps

GOOD = ["sub-0001", "sub-0002"]


@pytest.fixture(scope="module")
def processed(small, tmp_path_factory):
    root, _ = small
    cache = tmp_path_factory.mktemp("prep")
    run = preprocess.preprocess_cohort(root, cache, jobs=2, progress=False, ids=GOOD)
    assert not run.failures, run.summary()
    return root, cache


def _point_error(M, T, n=2000):
    pts = np.random.default_rng(0).uniform(-60, 60, (n, 3))
    return np.linalg.norm((pts @ M[:3, :3].T + M[:3, 3]) - (pts @ T[:3, :3].T + T[:3, 3]), axis=1).mean()


def test_registration_recovers_a_known_similarity():
    tpl = steps.load_template()
    true = sitk.Similarity3DTransform()
    true.SetScale(0.94)
    true.SetRotation((0.3, 0.2, 1.0), np.deg2rad(9))
    true.SetTranslation((5, -7, 4))
    ref = sitk.Image([150, 150, 26], sitk.sitkFloat32)  # a DWI-like grid: 1.5 mm, 6.2 mm slices
    ref.SetSpacing([1.5, 1.5, 6.2])
    ref.SetOrigin([-112, -130, -70])
    moving = sitk.Resample(tpl.t2w, ref, true.GetInverse(), sitk.sitkLinear, 0.0)
    M = steps.affine_matrix(steps.register_to_template(moving, tpl))
    assert _point_error(M, steps.affine_matrix(true)) < 1.0


def _known_moving(tpl):
    true = sitk.Similarity3DTransform()
    true.SetRotation((0.3, 0.2, 1.0), np.deg2rad(6))
    true.SetTranslation((4, -5, 3))
    ref = sitk.Image([150, 150, 26], sitk.sitkFloat32)
    ref.SetSpacing([1.5, 1.5, 6.2])
    ref.SetOrigin([-112, -130, -70])
    return sitk.Resample(tpl.t2w, ref, true.GetInverse(), sitk.sitkLinear, 0.0), steps.affine_matrix(true)


def test_the_registration_metric_prefers_the_true_alignment_to_one_6_mm_off():
    tpl = steps.load_template()
    moving, T = _known_moving(tpl)
    off = T.copy()
    off[:3, 3] += (0, 6, 0)
    mask = sitk.BinaryDilate(tpl.mask_2mm, [5, 5, 5])
    assert steps._metric_at(T, tpl, moving, mask, None, "mi") < steps._metric_at(off, tpl, moving, mask, None, "mi")


def test_an_affine_stage_that_ends_worse_than_it_started_is_not_kept(monkeypatch):
    # seen on one synthetic b0: the similarity stage at 2.7 mm, the affine stage then at 6.1 mm
    tpl = steps.load_template()
    moving, T = _known_moving(tpl)
    start = T.copy()
    start[:3, 3] += (0.5, 0, 0)
    metric_at = steps._metric_at
    monkeypatch.setattr(steps, "_metric_at", lambda M, *a: -np.inf if np.allclose(M, start) else metric_at(M, *a))
    kept = steps.affine_matrix(steps.register_to_template(moving, tpl, initial=start))
    assert np.allclose(kept, start)  # the optimised result scored worse than its start: the start is kept
    monkeypatch.setattr(steps, "_metric_at", metric_at)
    moved = steps.affine_matrix(steps.register_to_template(moving, tpl, initial=start))
    assert not np.allclose(moved, start) and _point_error(moved, T) < _point_error(start, T)


def test_registration_and_skull_stripping_against_the_synthetic_truth(processed):
    root, cache = processed
    for pid in GOOD:
        err = qc.registration_error(root, cache, pid)
        strip = qc.skull_strip_dice(root, cache, pid)
        # the smooth anatomical deformation alone leaves ~1.6 mm for the best possible affine
        assert err["dwi_error_mean_mm"] < 2.5 and err["flair_error_mean_mm"] < 3.5, err
        assert strip["brain_dice"] >= 0.95, strip
        assert strip["shell_voxels_in_mask_fraction"] < 0.01, strip


def test_a_misregistration_fails_the_sanity_check():
    tpl = steps.load_template()
    good = steps.to_array(sitk.Resample(tpl.t2w, tpl.target, sitk.Transform(), sitk.sitkLinear, 0.0))
    assert steps.template_correlation(good, tpl) > 0.95
    rot = sitk.Euler3DTransform((0, -18, 0), 0, np.deg2rad(35), 0, (20, 0, 15))
    bad = steps.to_array(sitk.Resample(tpl.t2w, tpl.target, rot, sitk.sitkLinear, 0.0))
    assert steps.template_correlation(bad, tpl) < steps.MIN_TEMPLATE_CORRELATION


def test_qc_summary_names_the_worst_patient_of_each_measure():
    from tss.preprocess import qc

    rows = [{"patient_id": pid, "dwi_error_mean_mm": e, "flair_error_mean_mm": 1.0, "dwi_error_p95_mm": 2 * e,
             "affine_floor_mm": 1.5, "brain_dice": d, "shell_voxels_in_mask_fraction": 0.0}
            for pid, e, d in [("a", 1.8, 0.97), ("b", 6.1, 0.91), ("c", 2.0, 0.98)]]
    s = qc.summarise(pd.DataFrame(rows))
    assert s.at["b0/b1000 error (mm)", "worst patient"] == "b (6.10)"
    assert s.at["brain Dice", "worst patient"] == "b (0.91)"  # the smallest Dice is the worst
    assert s.at["b0/b1000 error (mm)", "max"] == 6.1 and s.at["brain Dice", "min"] == 0.91
    assert s.at["b0/b1000 error (mm)", "target"] == "< 2"


def test_target_grid_and_midline():
    aff = steps.target_affine()
    x_mid = aff[0, 0] * 111.5 + aff[0, 3]  # between voxels 111 and 112
    assert abs(x_mid) < 1e-9
    assert steps.TARGET_SHAPE == (224, 224, 26)


def test_hemisphere_flip_puts_a_lesion_and_its_mirror_twin_at_the_same_place():
    vol = np.zeros((3, 224, 224, 26), np.float32)
    vol[0, 40:46, 100:110, 12] = 1.0  # left hemisphere (x < 0)
    vol[1, 223 - 45:223 - 39, 100:110, 12] = 1.0  # its mirror image in the right hemisphere
    h = preprocess.hemispheres(vol)
    assert h.shape == (2, 3, 26, 224, 112)
    np.testing.assert_array_equal(h[0, 0], h[1, 1])
    assert h[0, 0].sum() == 60 and h[1, 0].sum() == 0


def test_hemisphere_labels_from_mask_or_side():
    les = np.zeros((224, 224, 26), bool)
    les[30:40, 100:110, 10] = True  # 100 voxels on the left
    les[150, 100, 10] = True  # one stray voxel on the right: below the threshold
    assert preprocess.hemisphere_labels(les, "none")[:2] == (1, 0)
    assert preprocess.hemisphere_labels(None, "both")[:2] == (1, 1)
    assert preprocess.hemisphere_labels(None, "right")[:2] == (0, 1)


def test_rerun_reads_from_cache(processed):
    root, cache = processed
    run = preprocess.preprocess_cohort(root, cache, jobs=1, progress=False, ids=GOOD)
    assert all(o.ok and o.cached for o in run.outcomes)


def test_assembled_tensors(processed):
    root, cache = processed
    preprocess.assemble(cache, root, progress=False)
    arr, index = preprocess.load_hemispheres(cache)
    assert arr.shape == (4, 3, 26, 224, 112) and arr.dtype == np.float16
    assert 0.0 <= float(arr.min()) and float(arr.max()) <= 1.0 and float(arr.mean()) > 0.01
    latent = pd.read_csv(root / "latent.csv").set_index("patient_id")
    for r in index.itertuples():
        side = latent.at[r.patient_id, "stroke_side"]
        assert r.label == int(side in (r.hemisphere, "both")), (r.patient_id, r.hemisphere, side)


def _corrupt_cohort(src_root, dst, good: str):
    """A cohort with one good patient and one patient per kind of bad input."""
    table = manifest.read_manifest(src_root / manifest.MANIFEST_NAME).set_index("patient_id")
    row = table.loc[good].copy()
    img = nib.load(str(src_root / row["b1000"]))
    for k in ("b1000", "b0", "flair", "lesion_mask"):  # absolute: the new manifest lives elsewhere
        row[k] = str(src_root / row[k])
    rows = {good: row}

    def write(name, data, affine=img.affine):
        p = dst / name
        nib.save(nib.Nifti1Image(data, affine), p)
        return str(p)

    full = Path(row["b1000"])
    trunc = dst / "truncated.nii.gz"
    trunc.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    data = np.asanyarray(img.dataobj).astype(np.float32)
    nan = data.copy()
    nan[5, 5, 5] = np.nan
    variants = {
        "bad-truncated": ("b1000", str(trunc), "load", "truncated"),
        "bad-nan": ("b1000", write("nan.nii.gz", nan), "load", "NaN"),
        "bad-zero": ("b1000", write("zero.nii.gz", np.zeros_like(data)), "load", "zero"),
        "bad-4d": ("b1000", write("dwi4d.nii.gz", np.stack([data, data, data], -1)), "load", "bval"),
        "bad-missing": ("flair", str(dst / "no-such-flair.nii.gz"), "load", "not found"),
        "bad-noise": ("b0", write("noise.nii.gz", np.random.default_rng(0).random(data.shape).astype(np.float32)),
                      "register", ""),
    }
    for pid, (field, path, _, _) in variants.items():
        rows[pid] = row.copy()
        rows[pid][field] = path
    df = pd.DataFrame(rows).T.rename_axis("patient_id").reset_index()
    manifest.write_manifest(df, dst / manifest.MANIFEST_NAME)
    return {pid: (step, word) for pid, (_, _, step, word) in variants.items()}


def test_bad_inputs_are_reported_and_the_others_finish(processed, tmp_path, capsys):
    root, cache = processed
    cohort = tmp_path / "bad"
    cohort.mkdir()
    expected = _corrupt_cohort(root, cohort, GOOD[0])
    # the good patient's inputs are the same files: it comes from the cache
    run = preprocess.preprocess_cohort(cohort, cache, jobs=2, progress=False, data_roots=[root])
    by = {o.patient_id: o for o in run.outcomes}
    assert by[GOOD[0]].ok
    for pid, (step, word) in expected.items():
        o = by[pid]
        assert not o.ok and o.step.startswith(step), (pid, o)
        assert word.lower() in o.reason.lower(), (pid, o.reason)
    assert set(pd.read_csv(cache / "failures.csv")["patient_id"]) == set(expected)
    assert cli(["preprocess", str(cohort), "--out", str(cache), "--jobs", "2", "--no-assemble",
                "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "bad-nan, step load" in out and f"{len(expected)} failed" in out


@pytest.mark.skipif(not (SHARED / "data" / "isles22-sample").exists(), reason="shared ISLES'22 sample not present")
def test_real_isles_case_lesion_lands_in_the_left_hemisphere(tmp_path):
    manifest_csv = Path(__file__).resolve().parents[1] / "data_manifest" / "isles22-sample.csv"
    run = preprocess.preprocess_cohort(manifest_csv, tmp_path, jobs=1, progress=False,
                                       data_roots=[SHARED / "data" / "isles22-sample"])
    assert not run.failures, run.summary()
    p = preprocess.load_patient(tmp_path, "sub-strokecase0009")
    assert p["meta"]["b0_source"].startswith("derived")
    assert p["meta"]["label_left"] == 1 and p["meta"]["label_right"] == 0
    preprocess.assemble(tmp_path, manifest_csv, progress=False)
    arr, index = preprocess.load_hemispheres(tmp_path)
    lesion_h = preprocess.hemispheres(np.repeat(p["lesion"][None].astype(np.float32), 3, 0))
    assert lesion_h[0].sum() > 100 and lesion_h[1].sum() == 0
    assert list(index["label"]) == [1, 0]


def test_the_genesis_figure_cube_holds_the_lesion_on_its_shown_slice(processed):
    import matplotlib

    matplotlib.use("Agg")
    from tss import viz
    from tss.models import genesis

    root, cache = processed
    preprocess.assemble(cache, root, progress=False)
    _, index = preprocess.load_hemispheres(cache)
    split = index.loc[index["label"] == 1, "split"].iloc[0]
    c = viz.lesion_cube(cache, (8, 32, 32), split=split)
    assert tuple(c["cube"].shape) == (3, 8, 32, 32) and c["lesion"].shape == (8, 32, 32)
    assert c["lesion"][c["k"]].sum() > 0   # the shown slice goes through the lesion
    assert c["cube"][0][c["lesion"] > 0.5].mean() > c["cube"][0][c["lesion"] < 0.5].mean()  # DWI bright in the lesion
    fig = viz.genesis_figure(c["cube"], c["k"])
    titles = [ax.get_title() for ax in fig.axes[: len(genesis.TRANSFORMS) + 2]]
    assert titles[0] == "original" and titles[-1] == "composed (training)" and len(fig.axes) == 2 * len(titles)
    with pytest.raises(ValueError, match="no nosuchsplit hemisphere"):
        viz.lesion_cube(cache, (8, 32, 32), split="nosuchsplit")


def test_preprocessing_builds_its_template_without_the_synthetic_generator():
    import subprocess
    import sys

    code = ("import sys; from tss import preprocess; from tss.preprocess import steps; steps.load_template(); "
            "print(sorted(m for m in sys.modules if m.startswith('tss.synth')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_cache_store_reads_patients_and_the_assembled_cohort_where_preprocessing_writes_them(tmp_path):
    store = preprocess.PreprocessCache(tmp_path)
    assert store.patient_ids() == [] and not store.assembled() and not store.has_patient("sub-0001")
    store.patients_dir.mkdir()
    np.savez(store.patient_file("sub-0002", ".npz"), volume=np.ones((3, 4, 4, 2), np.float16), brain=np.ones((4, 4, 2), bool))
    store.patient_file("sub-0002", ".json").write_text('{"label_left": 1}')
    np.savez(store.patient_file("sub-0001", ".npz"), volume=np.zeros((3, 4, 4, 2), np.float16))  # no .json yet
    assert store.patient_ids() == ["sub-0001", "sub-0002"]
    assert store.has_patient("sub-0002") and not store.has_patient("sub-0001")
    p = store.load_patient("sub-0002")
    assert p["meta"] == {"label_left": 1} and p["volume"].shape == (3, 4, 4, 2) and p["brain"].all()
    assert preprocess.load_patient(tmp_path, "sub-0002")["meta"] == p["meta"]   # the module function reads the same
    with pytest.raises(ValueError):
        store.patient_file("../outside", ".npz")
    store.cohort_dir.mkdir()
    np.save(store.hemispheres_npy, np.zeros((2, 3, 26, 8, 4), np.float16))
    pd.DataFrame({"row": [0, 1], "patient_id": ["sub-0002"] * 2}).to_csv(store.index_csv, index=False)
    store.cohort_json.write_text('{"key": "k"}')
    arr, index = preprocess.load_hemispheres(tmp_path)
    assert store.assembled() and arr.shape == (2, 3, 26, 8, 4) and list(index["row"]) == [0, 1]
    assert store.cohort_meta() == {"key": "k"}
