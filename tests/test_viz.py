"""Figure helpers (tss.viz): radiological orientation and the lesion slice of a case."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from tss import viz


def test_radiological_display_puts_anterior_up_and_the_patients_right_on_the_viewers_left():
    a = np.zeros((4, 3))  # RAS+ axial slice: axis 0 left -> Right, axis 1 posterior -> Anterior
    a[3, 0] = 1           # the patient's right, posterior
    a[0, 2] = 2           # the patient's left, anterior
    r = viz._radiological(a)
    assert r.shape == (3, 4)
    assert r[-1, 0] == 1  # bottom (posterior), viewer's left (patient's right)
    assert r[0, -1] == 2  # top (anterior), viewer's right (patient's left)


def _case(tmp_path):
    """A DWI grid of 12 x 10 x 6 (2 mm) with its lesion largest on slice 4, and a FLAIR on a finer grid."""
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.zeros((12, 10, 6), np.uint8)
    mask[3:5, 3:5, 1] = 1
    mask[2:9, 2:8, 4] = 1  # the largest area
    dwi = np.random.default_rng(0).uniform(0, 1, mask.shape) + 2 * mask
    paths = {}
    for key, data, a in (("b1000", dwi, aff), ("b0", dwi * 0.5, aff), ("lesion_mask", mask, aff)):
        paths[key] = tmp_path / f"{key}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), a), paths[key])
    flair = np.ones((24, 20, 12), np.float32)  # 1 mm: resampled onto the DWI grid for the panel
    flair[:, :, 8:10] = 5.0                    # bright at z = 8-9 mm, the DWI's slice 4
    paths["flair"] = tmp_path / "flair.nii.gz"
    nib.save(nib.Nifti1Image(flair, np.diag([1.0, 1.0, 1.0, 1.0])), paths["flair"])
    return paths, mask


def test_the_lesion_panel_shows_the_slice_with_the_largest_lesion_on_one_grid(tmp_path):
    paths, mask = _case(tmp_path)
    p = viz.lesion_slice_panel(paths)
    assert p["slice"] == 4
    assert p["b1000"].shape == p["b0"].shape == p["flair"].shape == p["mask"].shape == (10, 12)
    assert p["mask"].sum() == mask[:, :, 4].sum()
    np.testing.assert_array_equal(p["mask"], viz._radiological(mask[:, :, 4] > 0))
    assert p["flair"].mean() > 2  # the FLAIR's bright slab, not its dark background, at that slice
