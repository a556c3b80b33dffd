"""The clock's audit: each step's ratio recovers a known contrast, the probe picks its setting on
validation, the table's AUC is scikit-learn's."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tss import audit
from tss.preprocess import hemispheres


def _rotation(deg_z: float, deg_x: float) -> np.ndarray:
    a, b = np.deg2rad(deg_z), np.deg2rad(deg_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _scan(tmp_path, name, R, t, shape, voxel, gain, lesion_centre, radius=12.0):
    """A head symmetric about its x = 0 plane (signal varies with |x|, y and z), posed by (R, t) in
    the scanner, with a lesion ball of signal x ``gain`` at ``lesion_centre`` (head frame, mm)."""
    aff = np.diag([*voxel, 1.0])
    aff[:3, 3] = -(np.array(shape) - 1) / 2 * np.array(voxel)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    q = (world - t) @ R
    signal = 100 + 20 * np.cos(q[:, 0] / 15) + 0.3 * q[:, 1] + 0.5 * q[:, 2]
    ball = np.linalg.norm(q - lesion_centre, axis=1) < radius
    signal[ball] *= gain
    path = tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(signal.reshape(shape).astype(np.float32), aff), path)
    mask_path = tmp_path / f"{name}_mask.nii.gz"
    nib.save(nib.Nifti1Image(ball.reshape(shape).astype(np.uint8), aff), mask_path)
    return path, mask_path


def test_native_ratios_find_the_mirror_through_each_series_own_pose(tmp_path):
    # DWI and b0 share a pose; FLAIR was acquired after the head moved: each ratio must still
    # compare the lesion with its mirror image in the head, not in the scanner
    R, t = _rotation(12, -8), np.array([4.0, -6.0, 3.0])
    Rf, tf = _rotation(20, 5), np.array([-3.0, 2.0, 1.0])
    centre = np.array([-30.0, 10.0, 5.0])
    shape, vox = (72, 72, 30), (2.0, 2.0, 3.0)
    dwi, mask = _scan(tmp_path, "dwi", R, t, shape, vox, 1.6, centre)
    b0, _ = _scan(tmp_path, "b0", R, t, shape, vox, 1.2, centre)
    flair, _ = _scan(tmp_path, "flair", Rf, tf, (96, 96, 30), (1.5, 1.5, 3.0), 1.35, centre)
    truth = {"head_rotation_world_from_mni": R.tolist(), "head_translation_mm": t.tolist(),
             "flair_rotation_world_from_mni": Rf.tolist(), "flair_translation_mm": tf.tolist()}
    r = audit.native_ratios(dwi, b0, flair, mask, truth)
    assert r["dwi"] == pytest.approx(1.6, abs=0.06)
    assert r["b0"] == pytest.approx(1.2, abs=0.05)
    assert r["flair"] == pytest.approx(1.35, abs=0.06)
    # with the wrong pose the mirror lands elsewhere, and the ratio is off
    wrong = {**truth, "head_rotation_world_from_mni": np.eye(3).tolist()}
    assert abs(audit.native_ratios(dwi, b0, flair, mask, wrong)["dwi"] - 1.6) > 0.1


def _template_case(gains=(1.5, 1.1, 1.3)):
    rng = np.random.default_rng(0)
    X, Y, Z = 224, 224, 26
    base = rng.uniform(0.4, 0.6, (3, X // 2, Y, Z))
    vol = np.concatenate([base, base[:, ::-1]], axis=1)  # mirror-symmetric about the mid-sagittal plane
    brain = np.ones((X, Y, Z), bool)
    lesion = np.zeros((X, Y, Z), bool)
    lesion[40:60, 100:132, 10:14] = True  # left hemisphere; edges on multiples of 4
    for c, g in enumerate(gains):
        vol[c][lesion] *= g
    return vol, brain, lesion


def test_template_ratios_compare_the_lesion_with_its_mirror():
    vol, brain, lesion = _template_case()
    r = audit.template_ratios(vol, brain, lesion)
    assert [r[c] for c in audit.CHANNELS] == pytest.approx([1.5, 1.1, 1.3], rel=1e-6)


def test_tensor_ratios_see_the_lesion_through_the_pooling_and_the_hemisphere_split():
    vol, brain, lesion = _template_case()
    hemis = hemispheres(vol)
    masks = hemispheres(np.stack([lesion, brain]).astype(np.float32))
    r = audit.tensor_ratios(hemis, masks[:, 0] > 0.5, masks[:, 1], np.array([True, False]))
    for d in audit.POOLINGS:  # the lesion's edges are multiples of 4: pooling mixes nothing
        assert r[f"mirror_flair_{d}x"] == pytest.approx(1.3, rel=1e-6)
        assert r[f"alone_dwi_{d}x"] == pytest.approx(1.5 * 0.5 / hemis[0, 0][~(masks[0, 0] > 0.5)].mean(), rel=0.02)
    # a stroke marked on the other hemisphere sees no lesion there
    none = audit.tensor_ratios(hemis, masks[:, 0] > 0.5, masks[:, 1], np.array([False, True]))
    assert np.isnan(none["mirror_flair_1x"])


def test_a_probe_chooses_its_regularisation_on_validation_and_never_fits_test():
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 2, n)
    X = np.c_[y + rng.normal(0, 1.0, n), rng.normal(0, 1, (n, 5))]
    split = np.array(["train"] * 150 + ["val"] * 75 + ["test"] * 75)
    prob, c, val_auc = audit.fit_probe(X, y, split)
    assert c in audit.C_GRID
    assert val_auc == pytest.approx(roc_auc_score(y[split == "val"], prob[split == "val"]))
    # relabelling the test rows changes nothing: they take no part in fitting or choosing
    y2 = y.copy()
    y2[split == "test"] = 1 - y2[split == "test"]
    prob2, c2, _ = audit.fit_probe(X, y2, split)
    assert c2 == c and np.allclose(prob2, prob)


def test_the_table_scores_each_step_on_test_with_scikit_learns_auc(tmp_path):
    rng = np.random.default_rng(2)
    n = 90
    man = pd.DataFrame({"patient_id": [f"p{i}" for i in range(n)], "split": ["train", "val", "test"] * 30,
                        "onset_to_mri_min": rng.uniform(30, 900, n)})
    late = (man["onset_to_mri_min"] >= 270).to_numpy()
    nat = pd.DataFrame({"patient_id": man["patient_id"], "dwi": 1.3 + 0.1 * rng.normal(size=n),
                        "b0": 1.0 + 0.1 * late + 0.05 * rng.normal(size=n),
                        "flair": 1.0 + 0.3 * late + 0.1 * rng.normal(size=n), "lesion_voxels": 50})
    nat.to_csv(tmp_path / "native.csv", index=False)
    sc = audit.scores(tmp_path, man, latent=None)
    t = audit.table(sc, n_boot=50)
    row = t[t["measure"] == "FLAIR lesion / contralateral"].iloc[0]
    test = man["split"] == "test"
    y = (man.loc[test, "onset_to_mri_min"] < 270).astype(int)
    assert row["auc"] == pytest.approx(roc_auc_score(y, -nat.loc[test, "flair"]))
    assert row["n"] == test.sum() and row["lo"] <= row["auc"] <= row["hi"]
    assert list(t["step"].unique()) == ["native"]
    assert t.loc[t["measure"] == "the three ratios, logistic", "auc"].iloc[0] > 0.8


def test_features_of_the_2d_model_pool_over_slices_before_the_head():
    from tss.models import SliceAttentionNet

    torch.manual_seed(0)
    m = SliceAttentionNet(n_slices=6)
    x = torch.rand(4, 3, 6, 28, 14)
    audit.recalibrate_bn(m, x)
    f = audit.features(m, x, chunk=3)
    assert f.shape == (4, 2 * (512 + 256))
    # the same hemisphere gives the same features whatever else is in its chunk
    assert np.allclose(audit.features(m, x[:1]), f[:1], atol=1e-5)


def test_the_audit_command_measures_a_processed_synthetic_cohort(small, tmp_path):
    from tss import preprocess

    root, _ = small
    cache = tmp_path / "prep"
    ids = sorted(pd.read_csv(root / "manifest.csv")["patient_id"])[:3]  # three are enough, and cheaper
    preprocess.preprocess_cohort(root, cache, jobs=2, progress=False, ids=ids)
    preprocess.assemble(cache, root, progress=False)
    files = audit.run(cache, root, tmp_path / "audit", progress=False)
    nat, ten = pd.read_csv(files["native"]), pd.read_csv(files["tensors"])
    assert sorted(ten["patient_id"]) == ids
    latent = pd.read_csv(root / "latent.csv") if (root / "latent.csv").exists() else None
    assert len(nat) == 10 and set(ten["patient_id"]) <= set(nat["patient_id"])
    # the generator's own DWI ratio (lesion against the same voxels' healthy signal) and ours, from
    # the images against the mirror, agree in rank: the measurement reads the lesion it was given
    if latent is not None:
        m = nat.merge(latent[["patient_id", "dwi_ratio"]], on="patient_id").dropna()
        assert np.corrcoef(m["dwi"], m["dwi_ratio"])[0, 1] > 0.5
    mtime = files["native"].stat().st_mtime_ns
    audit.run(cache, root, tmp_path / "audit", progress=False)  # cached: read back, not recomputed
    assert files["native"].stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / "audit" / "images.json").read_text())["patients"] == len(ten)


def test_probes_of_the_networks_here_are_written_and_those_of_another_machine_kept(tmp_path, monkeypatch):
    from tss.models import build
    from tss.train import Hemispheres
    from tss.train.planted import planted_cohort

    c = planted_cohort(30, (6, 28, 14), seed=0, flair_gain=1.0)
    monkeypatch.setattr(Hemispheres, "load", classmethod(lambda cls, cache, d, device: c))
    out = tmp_path / "audit"
    out.mkdir()
    # a row measured elsewhere, where the 3D detector's weights were
    pd.DataFrame({"patient_id": ["P000"], "probe": ["3D, phase 1 stroke detector"], "prob": [0.5], "C": [1.0],
                  "val_auc": [0.7]}).to_csv(out / "probes.csv", index=False)
    clock_root = tmp_path / "clock" / "seed0" / "2d-stroke-random"  # the detector, in the second tree
    clock_root.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save({"model": build("2d", n_slices=6).state_dict()}, clock_root / "best.pt")
    pr = audit.run_probes(None, (tmp_path / "runs", tmp_path / "clock"), out, "quick", archs=("2d",), progress=False)
    assert set(pr["probe"]) == {"2D, random weights (floor)", "2D, phase 1 stroke detector", "3D, phase 1 stroke detector"}
    floor = pr[pr["probe"] == "2D, random weights (floor)"]
    assert len(floor) == 30 and floor["prob"].between(0, 1).all() and floor["C"].iloc[0] in audit.C_GRID
    assert pd.read_csv(out / "probes.csv").shape == pr.shape


def test_lesion_pooling_weights_a_feature_map_by_the_mask_on_its_grid():
    from tss.models import SliceAttentionNet

    torch.manual_seed(0)
    m = SliceAttentionNet(n_slices=6)
    x = torch.rand(3, 3, 6, 28, 14)
    audit.recalibrate_bn(m, x)
    masks = torch.zeros(3, 6, 28, 14)
    masks[0, 2, 4:8, 0:3] = 1.0  # inside one cell of layer1's 7 x 4 grid (rows 4-7, columns 0-3)
    masks[1] = 1.0               # the whole hemisphere; hemisphere 2 has no lesion
    out = audit.pooled_features(m, x, masks, "layer1", chunk=2)
    with torch.no_grad():
        f = m.layer1(m._stage("stem", m._slices(x))).view(3, 6, 64, 7, 4)
    assert np.allclose(out["lesion"][0], f[0, 2, :, 1, 0].numpy(), atol=1e-5)
    assert np.allclose(out["hemisphere"][0], f[0].mean((0, 2, 3)).numpy(), atol=1e-5)
    assert np.allclose(out["lesion"][1], out["hemisphere"][1], atol=1e-5)
    assert np.isnan(out["lesion"][2]).all() and np.isfinite(out["hemisphere"][2]).all()


def test_lesion_probes_over_a_mask_that_covers_the_hemisphere_equal_the_hemisphere_probes(tmp_path):
    from tss.train.planted import planted_cohort

    c = planted_cohort(30, (6, 28, 14), seed=0, flair_gain=1.0)
    stroke = np.flatnonzero((c.index["label"] == 1).to_numpy())
    out = tmp_path / "audit"
    pr = audit.run_lesion_probes(None, tmp_path / "runs", out, "quick", cohort=c,
                                 masks=torch.ones(len(stroke), *c.x.shape[2:]), progress=False)
    label = audit.LESION_PROBED[0][0]  # only the random floor: no detector's weights here
    assert set(pr["probe"]) == {f"{label}: {layer} {how}" for layer in audit.LESION_LAYERS
                                for how in audit.POOLED_OVER.values()}
    for layer in audit.LESION_LAYERS:
        a, b = (pr[pr["probe"] == f"{label}: {layer} {audit.POOLED_OVER[k]}"] for k in ("lesion", "hemisphere"))
        assert len(a) == 30 and np.allclose(a["prob"].to_numpy(), b["prob"].to_numpy(), atol=1e-4)
    assert pd.read_csv(out / "lesion_probes.csv").shape == pr.shape
