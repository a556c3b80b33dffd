"""The MNI152 head the generator renders and preprocessing registers to (tss.template)."""

from __future__ import annotations

import numpy as np
import pytest

from tss.template import CHANNELS, PAD_BELOW_MM, _ramp, load_anatomy


def test_the_ramp_is_a_soft_indicator_with_half_value_edges():
    d = np.array([-5.0, 1.0, 2.0, 3.0, 6.0, 8.0, 12.0])
    r = _ramp(d, 2.0, 8.0)
    assert r[0] == 0 and r[-1] == 0              # well outside
    assert r[3] == 1 and r[4] == 1               # well inside
    assert r[2] == pytest.approx(0.5) and r[5] == pytest.approx(0.5)  # on an edge: half a voxel in
    assert r.dtype == np.float32


@pytest.fixture(scope="module")
def anatomy():
    return load_anatomy()


def test_tissue_fractions_are_fractions_and_lesions_grow_only_in_parenchyma(anatomy):
    f = anatomy.fractions
    assert f.shape[0] == len(CHANNELS) and anatomy.shape == f.shape[1:]
    assert f.min() >= -1e-6 and f.max() <= 1 + 1e-5  # (float rounding of 1 - GM - WM)
    assert f.sum(0).max() <= 1 + 1e-4  # no voxel holds more than itself
    gm, wm = f[CHANNELS.index("GM")], f[CHANNELS.index("WM")]
    np.testing.assert_allclose(anatomy.parenchyma, gm + wm, atol=1e-6)
    skull = f[CHANNELS.index("skull")]
    assert skull[anatomy.parenchyma > 0.5].max() == 0  # no bone inside the brain


def test_the_padding_keeps_mni_coordinates_and_the_neck_is_below_the_brain(anatomy):
    from nilearn import datasets

    gm = datasets.load_mni152_gm_template(resolution=1)
    origin = np.zeros((1, 3))
    v_ours, v_theirs = anatomy.mm_to_voxel(origin)[0], np.linalg.inv(gm.affine)[:3, 3]
    np.testing.assert_allclose(v_ours, v_theirs + [0, 0, PAD_BELOW_MM], atol=1e-6)  # same point, shifted voxels
    vox = np.array([[10.0, 20.0, 30.0], [90.5, 100.0, 5.0]])
    np.testing.assert_allclose(anatomy.mm_to_voxel(anatomy.voxel_to_mm(vox)), vox, atol=1e-9)
    muscle = anatomy.fractions[CHANNELS.index("muscle")]
    z_muscle = np.nonzero(muscle.sum((0, 1)) > 0)[0]
    z_brain = np.nonzero(anatomy.parenchyma.sum((0, 1)) > 0)[0]
    assert len(z_muscle) and z_muscle.min() < z_brain.min()


def test_outward_from_the_brain_come_csf_then_skull_then_scalp_fat(anatomy):
    f = anatomy.fractions
    x, y, _ = (np.array(anatomy.shape) // 2)
    column = anatomy.parenchyma[x, y, :]
    top = int(np.nonzero(column > 0.5)[0].max())  # the vertex: walk straight up from the brain's top
    first = {}
    for name in ("CSF", "skull", "fat"):
        c = f[CHANNELS.index(name), x, y, top + 1:]
        hits = np.nonzero(c > 0.5)[0]
        assert len(hits), f"no {name} above the vertex"
        first[name] = int(hits[0])
    assert first["CSF"] < first["skull"] < first["fat"]
