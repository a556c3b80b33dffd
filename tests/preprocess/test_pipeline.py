"""The preprocessing pipeline (tss.preprocess.pipeline): hemispheres and their labels, the cohort
run and its cache, assembly, bad inputs, the real case, the Models Genesis figure's cube."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from preprocessed import GOOD
from small_cohort import SHARED

from tss import manifest, preprocess
from tss.cli import main as cli


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
    manifest_csv = Path(__file__).resolve().parents[2] / "data_manifest" / "isles22-sample.csv"
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
