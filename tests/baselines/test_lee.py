"""Lee et al. (2020) baseline: ADC, threshold ROI, ratio maps, radiomics, classifier choice, run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from skimage.feature import graycomatrix, graycoprops

from tss.baselines import lee

VOX_ML = 0.0066  # the registered grid's voxel (0.88 x 1.04 x 7.27 mm)
SHAPE = (48, 40, 6)


def _brain(shape=SHAPE) -> np.ndarray:
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    return (x / 0.9) ** 2 + (y / 0.9) ** 2 + (z / 1.5) ** 2 < 1


def _blob(shape=SHAPE, centre=(14, 20, 3), radius=5.0) -> np.ndarray:
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return ((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (3 * (z - centre[2])) ** 2) < radius ** 2


def _volume(lesion: np.ndarray | None, seed: int = 0, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """(DWI b1000, b0, FLAIR), brain: parenchyma ADC 0.8, a CSF strip ADC 3, lesion ADC 0.45."""
    rng = np.random.default_rng(seed)
    brain = _brain(shape)
    adc = np.full(shape, 0.8) + rng.normal(0, 0.04, shape)
    adc[22:26] = 3.0  # midline CSF
    b0 = 1000 + rng.normal(0, 20, shape)
    flair = 600 + rng.normal(0, 20, shape)
    if lesion is not None:
        adc[lesion] = 0.45 + rng.normal(0, 0.03, lesion.sum())
        flair[lesion] *= 1.2
    dwi = b0 * np.exp(-adc)
    vol = np.stack([dwi, b0, flair]) * brain
    return vol.astype(np.float32), brain


def _dice(a, b) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


# ------------------------------------------------------------------------------------------------
# maps and ROI


def test_adc_recovers_known_values():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.2, 3.0, (8, 8, 3))
    b0 = rng.uniform(200, 2000, truth.shape)
    b1000 = b0 * np.exp(-1000 * truth * 1e-3)
    np.testing.assert_allclose(lee.adc_map(b0, b1000, 1000), truth, rtol=1e-5)
    b0[0, 0, 0], b1000[1, 1, 1] = 0, 0  # no signal: undefined, not inf
    adc = lee.adc_map(b0, b1000)
    assert np.isnan(adc[0, 0, 0]) and np.isnan(adc[1, 1, 1]) and np.isfinite(adc).sum() == adc.size - 2


def test_roi_finds_planted_lesion_and_nothing_in_healthy_brain():
    blob = _blob()
    vol, brain = _volume(blob)
    f = lee.patient_features(vol, brain, left=True, right=False, lesion=blob, vox_ml=VOX_ML)
    assert f["roi_dice"] > 0.8
    assert f["roi_ml"] == pytest.approx(blob.sum() * VOX_ML, rel=0.25)
    healthy, brain = _volume(None, seed=2)
    adc = lee.adc_map(healthy[1], healthy[0])
    for left, right in ((True, False), (False, True), (False, False)):
        roi, _ = lee.infarct_roi(healthy[0], adc, brain, lee.hemisphere_mask(brain.shape, left, right), VOX_ML)
        assert not roi.any()
    assert np.isnan(lee.patient_features(healthy, brain, True, False, vox_ml=VOX_ML)["dwi_mean"])


def test_roi_stays_in_the_stroke_hemisphere():
    blob = _blob()  # left (x < 24)
    vol, brain = _volume(blob)
    assert lee.patient_features(vol, brain, left=False, right=True, vox_ml=VOX_ML)["roi_ml"] == 0


def test_ratio_map_of_symmetric_volume_is_one():
    rng = np.random.default_rng(3)
    half = rng.uniform(100, 200, (3, 24, 40, 6)).astype(np.float32)
    vol = np.concatenate([half, half[:, ::-1]], axis=1)  # x mirrored about the midline
    brain = np.ones(SHAPE, bool)
    roi = _blob()
    ratio, fallback = lee.ratio_maps(vol, roi, brain)
    assert not fallback
    for c in range(3):
        assert ratio[c][roi].mean() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(ratio[c], vol[c] / vol[c][lee.mirror(roi)].mean(), rtol=1e-5)
    smooth = np.stack([np.full(SHAPE, v, np.float32) for v in (300.0, 0.8, 500.0)])
    np.testing.assert_allclose(lee.ratio_maps(smooth, roi, brain)[0], 1.0, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# features


def test_first_order_matches_numpy():
    rng = np.random.default_rng(4)
    v = rng.gamma(3, 0.3, 500)
    f = lee.first_order(v)
    assert f["mean"] == pytest.approx(v.mean()) and f["sd"] == pytest.approx(v.std())
    assert f["p25"] == pytest.approx(np.percentile(v, 25)) and f["p90"] == pytest.approx(np.percentile(v, 90))
    assert f["skewness"] == pytest.approx(stats.skew(v))
    assert f["kurtosis"] == pytest.approx(stats.kurtosis(v, fisher=False))
    assert f["energy"] == pytest.approx((v ** 2).sum())
    hist = np.histogram(np.clip(v, 0, 3.2 - 1e-9), bins=lee.N_LEVELS, range=lee.RATIO_RANGE)[0] / v.size
    hist = hist[hist > 0]
    assert f["entropy"] == pytest.approx(-(hist * np.log2(hist)).sum())
    assert lee.first_order(np.full(10, 2.0))["skewness"] == 0.0


def test_glcm_matches_skimage_on_toy_roi():
    rng = np.random.default_rng(5)
    img = rng.integers(1, 9, (12, 10, 2)).astype(np.uint8)
    full = np.ones(img.shape, bool)
    f = lee.glcm_features(img, full, n_levels=8)
    P = sum(graycomatrix(img[:, :, z] - 1, [1], list(lee.ANGLES), levels=8, symmetric=True) for z in range(2))
    for prop in lee.GLCM_PROPS:
        assert f[prop.lower()] == pytest.approx(graycoprops(P, prop).mean())
    # a masked ROI counts only pairs inside it: the ROI is a rectangle, so crop and compare
    mask = np.zeros(img.shape, bool)
    mask[2:9, 3:8, 0] = True
    f = lee.glcm_features(img, mask, n_levels=8)
    P = graycomatrix(img[2:9, 3:8, 0] - 1, [1], list(lee.ANGLES), levels=8, symmetric=True)
    for prop in lee.GLCM_PROPS:
        assert f[prop.lower()] == pytest.approx(graycoprops(P, prop).mean())


def test_glrlm_toy_image_known_runs():
    img = np.array([[1, 1, 1, 1],
                    [2, 2, 3, 3],
                    [1, 2, 3, 4],
                    [4, 4, 4, 4]])[:, :, None]  # index [x, y]: runs "along y" are these rows
    full = np.ones(img.shape, bool)
    R = lee.glrlm_matrix(img, full, direction=2, n_levels=4)
    # rows: one run of 4 (level 1), two of 2 (levels 2, 3), four of 1, one of 4 (level 4): 8 runs
    assert R.sum() == 8 and R[0, 3] == 1 and R[3, 3] == 1 and R[1, 1] == 1 and R[2, 1] == 1
    s = lee.glrlm_stats(R)
    assert s["sre"] == pytest.approx((1 / 16 + 2 / 4 + 4 + 1 / 16) / 8)
    assert s["lre"] == pytest.approx((16 + 2 * 4 + 4 + 16) / 8)
    assert s["rp"] == pytest.approx(8 / 16)
    assert s["gln"] == pytest.approx((2 ** 2 + 2 ** 2 + 2 ** 2 + 2 ** 2) / 8)
    assert s["rln"] == pytest.approx((4 ** 2 + 2 ** 2 + 2 ** 2) / 8)
    # columns (along x): 4 + 3 + 3 + 3 runs, ten of length 1 and three of length 2
    assert lee.glrlm_stats(lee.glrlm_matrix(img, full, direction=0, n_levels=4))["sre"] == pytest.approx(
        (10 + 3 / 4) / 13)
    # a run does not continue outside the ROI
    mask = full.copy()
    mask[0, 1] = False
    R = lee.glrlm_matrix(img, mask, direction=2, n_levels=4)
    assert R[0, 0] == 2 and R[0, 1] == 1 and R[0, 3] == 0  # row 0 split in two; row 2 holds a 1 too
    # diagonal of a constant image: runs of 1, 2, 3, 4, 3, 2, 1
    R = lee.glrlm_matrix(np.ones((4, 4, 1), int), np.ones((4, 4, 1), bool), direction=1, n_levels=2)
    assert R[0].tolist() == [2, 2, 2, 1]


def test_lbp_histogram_is_a_distribution_over_roi_pixels():
    blob = _blob()
    vol, brain = _volume(blob)
    f = lee.patient_features(vol, brain, True, False, vox_ml=VOX_ML)
    lbp = [f[f"dwi_lbp{i}"] for i in range(lee.LBP_POINTS + 2)]
    assert sum(lbp) == pytest.approx(1.0) and min(lbp) >= 0
    assert set(lee.feature_names()) <= set(f)
    assert all(np.isfinite(f[n]) for n in lee.feature_names())


# ------------------------------------------------------------------------------------------------
# classifiers


def _band(seed: int = 0, n: int = 120):
    """Positive inside a band of one feature: univariately visible (the filter keeps it) but not
    monotone, so a forest separates it and a linear model only partly."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    y = ((X[:, 0] > -0.2) & (X[:, 0] < 1.2)).astype(int)
    split = np.array(["train", "val", "test"])[np.arange(n) % 3]
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(8)]), y, split


@pytest.fixture
def few_trees(monkeypatch):
    monkeypatch.setattr(lee, "N_TREES", 25)  # speed: the choice logic does not depend on forest size


def test_classifier_picked_by_validation_auc_and_deterministic(few_trees):
    X, y, split = _band()
    models, chosen, model, by = lee.fit_and_select(X, y, split, seed=0)
    auc = models.set_index("model")["val_auc"]
    assert by == "val_auc" and list(models["model"]) == list(lee.MODELS) and models["chosen"].sum() == 1
    assert chosen == "random_forest" == auc.idxmax() and auc["logistic"] < auc.max() - 0.2
    again, _, model2, _ = lee.fit_and_select(X, y, split, seed=0)
    pd.testing.assert_frame_equal(models, again)
    np.testing.assert_array_equal(model.predict_proba(X.to_numpy())[:, 1], model2.predict_proba(X.to_numpy())[:, 1])
    # the same training data with inverted validation labels: the choice follows validation AUC
    y_flip = np.where(split == "val", 1 - y, y)
    flipped, chosen_flip, _, _ = lee.fit_and_select(X, y_flip, split, seed=0)
    pd.testing.assert_series_equal(flipped["cv_auc"], models["cv_auc"])
    assert chosen_flip == flipped.loc[flipped["val_auc"].idxmax(), "model"] != "random_forest"
    # no two-class validation set: chosen by cross-validated AUC on train
    _, _, _, by = lee.fit_and_select(X, np.where(split == "val", 0, y), split, seed=0, models=("logistic",))
    assert by == "cv_auc"


# ------------------------------------------------------------------------------------------------
# per-patient extraction from a cache, failures, and the whole run


def _write_cache(root, pids, nan_pid=None):
    pdir = root / "patients"
    pdir.mkdir(parents=True)
    rows = []
    for i, pid in enumerate(pids):
        blob = _blob(centre=(14 if i % 2 else 34, 20, 3), radius=5.0 + (i % 3))
        vol, brain = _volume(blob, seed=10 + i)
        if pid == nan_pid:
            vol[1, 20, 20, 3] = np.nan
        np.savez_compressed(pdir / f"{pid}.npz", volume=vol.astype(np.float16), brain=brain, lesion=blob)
        side = "left" if i % 2 else "right"
        (pdir / f"{pid}.json").write_text(json.dumps({"label_left": int(side == "left"),
                                                       "label_right": int(side == "right")}))
        rows.append({"patient_id": pid, "split": ("train", "train", "val", "test")[i % 4],
                     "onset_to_mri_min": (120.0, 400.0)[(i // 4) % 2]})
    return pd.DataFrame(rows)


def test_nan_patient_named_while_others_finish(tmp_path):
    table = _write_cache(tmp_path, ["p1", "p2", "p3"], nan_pid="p2")
    with pytest.raises(ValueError, match="patient p2: non-finite.*b0"):
        lee.extract_features(tmp_path, "p2")
    with pytest.raises(ValueError, match="patient nope: not preprocessed"):
        lee.extract_features(tmp_path, "nope")
    with pytest.warns(UserWarning, match="patient p2"):
        feats = lee.feature_table(tmp_path, table, jobs=1, progress=False)
    assert feats["patient_id"].tolist() == ["p1", "p2", "p3"]
    assert feats.set_index("patient_id").at["p2", "error"].startswith("patient p2: non-finite")
    ok = feats[feats["error"] == ""]
    assert len(ok) == 2 and (ok["roi_ml"] > 0).all() and ok["dwi_mean"].notna().all()


def test_run_writes_outputs_and_reads_back(tmp_path, monkeypatch, few_trees):
    cache, cohort = tmp_path / "cache", tmp_path / "cohort"
    table = _write_cache(cache, [f"s{i:02d}" for i in range(16)])
    (cache / "cohort").mkdir()
    (cache / "cohort" / "cohort.json").write_text(json.dumps({"key": "abc"}))
    cohort.mkdir()
    table.to_csv(cohort / "manifest.csv", index=False)
    monkeypatch.setattr(lee, "voxel_ml", lambda: VOX_ML)  # the toy grid's voxels (jobs=1: same process)
    out = tmp_path / "out"
    s = lee.run(cache, cohort, out, seed=0, jobs=1, progress=False)
    preds = pd.read_csv(out / "predictions.csv")
    assert list(preds.columns) == ["patient_id", "split", "target", "prob", "usable", "model"]
    assert preds["target"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0] * 2
    usable = preds["usable"].to_numpy()
    assert usable.sum() == sum(s["n_usable"].values()) > 8
    assert preds["prob"][usable].between(0, 1).all() and preds["prob"][~usable].isna().all()
    feats = pd.read_csv(out / "features.csv")
    assert ((feats["roi_ml"] >= lee.MIN_ROI_ML) == feats["usable"]).all()
    assert len(pd.read_csv(out / "models.csv")) == len(lee.MODELS) and s["chosen_model"] in lee.MODELS
    mtime = (out / "summary.json").stat().st_mtime_ns
    assert lee.run(cache, cohort, out, seed=0, jobs=1, progress=False) == s  # read back, not recomputed
    assert (out / "summary.json").stat().st_mtime_ns == mtime
    assert lee._key(cache, lee.manifest.load_cohort(cohort, check=False).table, 1, 1000) != s["key"]
    # a clone with the committed files and no processed images reads the same summary back
    assert lee.stored(out) == s
    (out / "models.csv").unlink()
    with pytest.raises(FileNotFoundError, match="models.csv missing"):
        lee.stored(out)
