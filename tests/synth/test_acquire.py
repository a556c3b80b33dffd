"""Rendering a patient (tss.synth.acquire): geometry of the written images, contrast physics,
lesion signal, measured ratios."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import spearmanr
from small_cohort import N_SMALL
from synth_files import _load, _truth

from tss import synth
from tss.synth import acquire, cohort
from tss.synth.params import param
from tss.template import CHANNELS, load_anatomy


def test_affines_match_stated_voxel_sizes_and_paper_ranges(small):
    root, _ = small
    for pid in [f"sub-{i:04d}" for i in range(1, N_SMALL + 1)]:
        t = _truth(root, pid)
        for key, stated, inplane in (("b1000", t["dwi_voxel_mm"], param("dwi_inplane_mm")),
                                     ("b0", t["dwi_voxel_mm"], param("dwi_inplane_mm")),
                                     ("flair", t["flair_voxel_mm"], param("flair_inplane_mm"))):
            img = _load(root, pid, key)
            sizes = nib.affines.voxel_sizes(img.affine)
            np.testing.assert_allclose(sizes, stated, rtol=1e-5)
            np.testing.assert_allclose(img.header.get_zooms()[:3], stated, rtol=1e-5)
            assert inplane[0] - 1e-6 <= sizes[0] <= inplane[1] + 1e-6
            assert 6.0 - 1e-6 <= sizes[2] <= 6.5 + 1e-6
        # b0 and b1000 share one acquisition grid; FLAIR has its own
        np.testing.assert_array_equal(_load(root, pid, "b0").affine, _load(root, pid, "b1000").affine)
        assert _load(root, pid, "flair").shape != _load(root, pid, "b1000").shape or \
            not np.allclose(_load(root, pid, "flair").affine, _load(root, pid, "b1000").affine)


def _native_values(img, mni_points, R, t):
    """Image values at MNI points carried into the scanner by the stated pose (nearest voxel)."""
    world = mni_points @ np.asarray(R).T + np.asarray(t)
    ijk = np.round(nib.affines.apply_affine(np.linalg.inv(img.affine), world)).astype(int)
    data = np.asanyarray(img.dataobj).astype(float)
    ok = np.all((ijk >= 0) & (ijk < data.shape), axis=1)
    return data[tuple(ijk[ok].T)]


def test_csf_dark_on_dwi_and_flair_bright_on_b0(small):
    """Ventricular CSF vs deep white matter, located through the stated head pose: this checks the
    contrast physics and that the written affines and pose agree."""
    root, _ = small
    anat = load_anatomy()
    csf = ndimage.binary_erosion(anat.fractions[CHANNELS.index("CSF")] > 0.95, iterations=1)
    wm = ndimage.binary_erosion(anat.fractions[CHANNELS.index("WM")] > 0.95, iterations=3)
    pts = {k: anat.voxel_to_mm(np.argwhere(m).astype(float)) for k, m in (("csf", csf), ("wm", wm))}
    x, y, z = pts["csf"].T  # lateral ventricles: CSF deep in the brain, far from the shell
    pts["csf"] = pts["csf"][(np.abs(x) < 25) & (y > -40) & (y < 25) & (z > 5) & (z < 30)]
    assert len(pts["csf"]) > 200 and len(pts["wm"]) > 2000
    for pid in ("sub-0001", "sub-0005", "sub-0009"):
        t = _truth(root, pid)
        pose = {"b1000": ("head_rotation_world_from_mni", "head_translation_mm"),
                "b0": ("head_rotation_world_from_mni", "head_translation_mm"),
                "flair": ("flair_rotation_world_from_mni", "flair_translation_mm")}
        med = {}
        for key, (rk, tk) in pose.items():
            img = _load(root, pid, key)
            med[key] = {k: np.median(_native_values(img, p, t[rk], t[tk])) for k, p in pts.items()}
        assert med["b0"]["csf"] > 1.5 * med["b0"]["wm"], (pid, med)
        # noiseless ~0.45; the Rician noise floor lifts dark CSF
        assert med["b1000"]["csf"] < 0.8 * med["b1000"]["wm"], (pid, med)
        assert med["flair"]["csf"] < 0.6 * med["flair"]["wm"], (pid, med)


def test_lesion_brighter_than_contralateral_on_dwi(small):
    """Lesion voxels vs their mirror image across the midline, on the written DWI."""
    root, _ = small
    latent = synth.load_latent(root)
    checked = 0
    for r in latent[latent["stroke_side"] != "both"].itertuples():
        t = _truth(root, r.patient_id)
        mask_img = _load(root, r.patient_id, "lesion_mask")
        mask = np.asanyarray(mask_img.dataobj) > 0
        if mask.sum() < 5:
            continue
        dwi = _load(root, r.patient_id, "b1000")
        R, tr = np.asarray(t["head_rotation_world_from_mni"]), np.asarray(t["head_translation_mm"])
        world = nib.affines.apply_affine(mask_img.affine, np.argwhere(mask))
        mni = (world - tr) @ R  # inverse pose
        assert np.all(np.sign(np.median(mni[:, 0])) == (-1 if r.stroke_side == "left" else 1))
        mirrored = mni * np.array([-1, 1, 1])
        lesion = np.asanyarray(dwi.dataobj)[mask].astype(float)
        contra = _native_values(dwi, mirrored, R, tr)
        assert lesion.mean() > 1.1 * contra.mean(), r.patient_id
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("field", [1.5, 3.0])
def test_dwi_lesion_bright_at_every_tss_and_flair_rises(field):
    tissues = acquire.tissue_table(field)
    times = np.array([15, 30, 60, 120, 180, 270, 360, 720, 1440, 4320, 10080], float)
    t2inc = cohort.flair_latent(times, midpoint=240.0, width=60.0, amplitude=0.3)
    adc = cohort.adc_ratio(times, 0.4)
    ti = tissues["CSF"][1] * np.log(2 / (1 + np.exp(-9000 / tissues["CSF"][1])))
    dwi_r, fl_r = [], []
    for inc, a in zip(t2inc, adc):
        for tissue in ("GM", "WM"):
            healthy, lesion = tissues[tissue], acquire.lesion_tissue(tissues[tissue], inc, a)
            dwi_r.append(acquire.se_epi(*lesion, 6000, 100, 1000)[1] / acquire.se_epi(*healthy, 6000, 100, 1000)[1])
        fl_r.append(acquire.flair_signal(*lesion[:3], 9000, 110, ti) / acquire.flair_signal(*healthy[:3], 9000, 110, ti))
    assert min(dwi_r) > 1.0
    assert np.all(np.diff(fl_r) >= -1e-9) and fl_r[-1] > 1.2 and fl_r[0] < 1.02
    # CSF is nulled on FLAIR
    assert (acquire.flair_signal(*tissues["CSF"][:3], 9000, 110, ti)
            < 0.01 * acquire.flair_signal(*tissues["WM"][:3], 9000, 110, ti))


def test_measured_ratios_follow_the_latent_signal(small):
    root, _ = small
    lat = synth.load_latent(root)
    assert (lat["dwi_ratio"] > 1).all()
    assert spearmanr(lat["flair_ratio"], lat["latent_t2_increase"]).statistic > 0.7


def test_the_calibrated_variants_edema_keeps_dwi_near_flat_while_flair_rises():
    """Its ADC rises with the lesion's T2 (vasogenic edema): part of the T2 shine-through that makes the
    first cohort's DWI a clock is offset, FLAIR is untouched, and the ADC stays below its ceiling."""
    from tss.synth.params import using

    tissues = acquire.tissue_table(1.5)
    t2inc = np.linspace(0.0, 0.6, 13)
    ti = tissues["CSF"][1] * np.log(2 / (1 + np.exp(-9000 / tissues["CSF"][1])))

    def ratios(variant):
        with using(variant):
            adc = cohort.adc_ratio(np.full_like(t2inc, 720.0), 0.4, t2inc)
        dwi, fl = [], []
        for inc, a in zip(t2inc, adc):
            healthy, lesion = tissues["WM"], acquire.lesion_tissue(tissues["WM"], inc, a)
            dwi.append(acquire.se_epi(*lesion, 6000, 100, 1000)[1] / acquire.se_epi(*healthy, 6000, 100, 1000)[1])
            fl.append(acquire.flair_signal(*lesion[:3], 9000, 110, ti) / acquire.flair_signal(*healthy[:3], 9000, 110, ti))
        return np.log(dwi), np.log(fl), adc

    (dwi_l, fl_l, adc_l), (dwi_c, fl_c, adc_c) = ratios("loud"), ratios("calibrated")
    assert np.allclose(fl_l, fl_c)  # FLAIR does not see the ADC
    assert dwi_c[0] == pytest.approx(dwi_l[0])  # no edema, no change
    rise_l, rise_c = dwi_l[6] - dwi_l[0], dwi_c[6] - dwi_c[0]  # at a 30% T2 increase
    assert rise_l > 0.3 and 0 < rise_c < 0.85 * rise_l
    with using("calibrated"):
        ceiling = param("adc_edema_ceiling")
    assert np.all(np.diff(adc_c) >= 0) and adc_c.max() == pytest.approx(ceiling) and np.allclose(adc_l, adc_l[0])
    assert min(np.exp(dwi_c)) > 1.0  # the lesion stays DWI-bright
