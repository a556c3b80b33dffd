"""The MNI152 head: tissue fractions of the brain and of a head around it, on a 1 mm grid.

nilearn ships the MNI152 2009a template at 1 mm with GM and WM probability maps and a brain
mask, but the T1 template is skull-stripped. We add what a scanner sees outside the brain:
a thin CSF layer, a skull, scalp fat and a neck. Two users: preprocessing builds its T2-weighted
registration target from it (:func:`tss.preprocess.steps.t2w_template`), for real and synthetic
data alike, and the synthetic generator (:mod:`tss.synth`) renders its patients on it, so that
skull stripping has work to do. It depends on neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

# tissue channel order in Anatomy.fractions
CHANNELS = ("GM", "WM", "CSF", "skull", "fat", "muscle")
PAD_BELOW_MM = 40  # room below the template for the neck
# (layer, from, to): mm outward from a smoothed brain hull (an assumption; listed with the generator's parameters)
SHELL_MM = (("CSF", 0, 2), ("skull", 2, 8), ("scalp fat", 8, 14))


@dataclass(frozen=True)
class Anatomy:
    fractions: np.ndarray  # (6, X, Y, Z) float32, tissue fractions on a 1 mm MNI grid
    affine: np.ndarray  # voxel -> MNI mm
    parenchyma: np.ndarray  # (X, Y, Z) float32 GM + WM, where lesions may grow

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.fractions.shape[1:]

    def mm_to_voxel(self, mm: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.affine)
        return mm @ inv[:3, :3].T + inv[:3, 3]

    def voxel_to_mm(self, vox: np.ndarray) -> np.ndarray:
        return vox @ self.affine[:3, :3].T + self.affine[:3, 3]


def _ramp(d: np.ndarray, lo: float, hi: float, soft: float = 1.0) -> np.ndarray:
    """Soft indicator of lo <= d < hi with linear edges of width ``soft`` (partial volume)."""
    up = np.clip((d - lo) / soft + 0.5, 0, 1)
    down = np.clip((hi - d) / soft + 0.5, 0, 1)
    return (up * down).astype(np.float32)


@lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    """Build the 1 mm anatomy once per process (about 5 s)."""
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    gm = gm_img.get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    mask = datasets.load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32) > 0.5
    affine = gm_img.affine.copy()

    # pad below for the neck; shift the affine so MNI coordinates stay right
    pad = PAD_BELOW_MM
    padw = ((0, 0), (0, 0), (pad, 0))
    gm, wm = np.pad(gm, padw), np.pad(wm, padw)
    mask = np.pad(mask, padw)
    affine[:3, 3] -= affine[:3, 2] * pad

    gm = np.where(mask, gm, 0)
    wm = np.where(mask, wm, 0)
    total = gm + wm
    scale = np.maximum(total, 1.0)  # a few voxels sum slightly above 1
    gm, wm = gm / scale, wm / scale
    csf = np.where(mask, 1.0 - gm - wm, 0).astype(np.float32)

    # distance (mm) outward from a smoothed brain hull
    hull = ndimage.gaussian_filter(mask.astype(np.float32), 4.0) > 0.3
    d = ndimage.distance_transform_edt(~hull).astype(np.float32)
    layers = {name: (lo, hi) for name, lo, hi in SHELL_MM}
    outside = (~mask).astype(np.float32)
    csf += outside * _ramp(d, -0.5, layers["CSF"][1])
    skull = outside * _ramp(d, *layers["skull"])
    fat = outside * _ramp(d, *layers["scalp fat"])

    # neck: an elliptic cylinder of muscle below the cerebellum, inside the scalp
    X, Y, Z = np.meshgrid(*(np.arange(n) for n in mask.shape), indexing="ij", sparse=True)
    mm = [affine[a, a] * v + affine[a, 3] for a, v in enumerate((X, Y, Z))]
    ell = (mm[0] / 48.0) ** 2 + ((mm[1] + 22.0) / 52.0) ** 2
    below = np.clip((-38.0 - mm[2]) / 6.0, 0, 1)  # fades in below z = -38 mm
    muscle = (np.clip((1.0 - ell) * 8, 0, 1) * below).astype(np.float32)
    occupied = gm + wm + csf + skull + fat
    muscle = np.minimum(muscle, np.clip(1 - occupied, 0, 1))
    neck_fat = (np.clip((1.12 - ell) * 8, 0, 1) * below).astype(np.float32)
    fat = np.maximum(fat, np.minimum(neck_fat - muscle, np.clip(1 - occupied - muscle, 0, 1)))

    fractions = np.stack([gm, wm, csf, skull, fat, muscle]).astype(np.float32)
    return Anatomy(fractions=fractions, affine=affine, parenchyma=(gm + wm).astype(np.float32))
