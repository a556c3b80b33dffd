"""Preprocessing steps (tss.preprocess.steps): registration to the template, the registration
metric, the sanity check, the target grid, the template without the generator."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from tss.preprocess import steps


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


def test_a_misregistration_fails_the_sanity_check():
    tpl = steps.load_template()
    good = steps.to_array(sitk.Resample(tpl.t2w, tpl.target, sitk.Transform(), sitk.sitkLinear, 0.0))
    assert steps.template_correlation(good, tpl) > 0.95
    rot = sitk.Euler3DTransform((0, -18, 0), 0, np.deg2rad(35), 0, (20, 0, 15))
    bad = steps.to_array(sitk.Resample(tpl.t2w, tpl.target, rot, sitk.sitkLinear, 0.0))
    assert steps.template_correlation(bad, tpl) < steps.MIN_TEMPLATE_CORRELATION


def test_target_grid_and_midline():
    aff = steps.target_affine()
    x_mid = aff[0, 0] * 111.5 + aff[0, 3]  # between voxels 111 and 112
    assert abs(x_mid) < 1e-9
    assert steps.TARGET_SHAPE == (224, 224, 26)


def test_preprocessing_builds_its_template_without_the_synthetic_generator():
    import subprocess
    import sys

    code = ("import sys; from tss import preprocess; from tss.preprocess import steps; steps.load_template(); "
            "print(sorted(m for m in sys.modules if m.startswith('tss.synth')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
