"""Quality control against the synthetic cohort's known truth.

The generator can replay each patient's geometry (head pose in the scanner, head size, ventricles,
smooth deformation: :func:`tss.synth.acquire.true_geometry`). That gives, for any point of the
patient's head, where it truly lies in the template. We measure:

- registration error (mm): for points of the brain, the distance between the template position
  the registration assigns them and their true template position. This includes the non-affine
  part of the anatomy (the smooth deformation an affine cannot follow);
- skull-stripping Dice: the brain mask the pipeline propagated into the patient's native b0 grid
  against the true brain mask on that grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from tss.preprocess.pipeline import load_patient
from tss.preprocess.steps import load_template
from tss.synth.acquire import true_geometry
from tss.template import CHANNELS, load_anatomy

LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS (SimpleITK's physical space)


def _truth_for(cohort_dir: Path, pid: str):
    gen = json.loads((cohort_dir / "generator.json").read_text())
    latent = pd.read_csv(cohort_dir / "latent.csv").set_index("patient_id")
    index = int(pid.split("-")[1]) - 1
    return true_geometry(latent.loc[pid].to_dict() | {"patient_id": pid}, gen["seed"], index, load_anatomy())


def _brain_points(anat, n_points: int, seed: int) -> np.ndarray:
    """Random parenchyma points of the template head (mm): where the errors are measured."""
    brain = np.argwhere(anat.parenchyma > 0.5)
    rng = np.random.default_rng(seed)
    return anat.voxel_to_mm(brain[rng.choice(len(brain), n_points, replace=False)].astype(float))


def registration_error(cohort_dir, cache_dir, pid: str, n_points: int = 4000, seed: int = 0) -> dict:
    """Mean and 95th-percentile error (mm) of the b0/b1000 and FLAIR registrations for one patient."""
    cohort_dir = Path(cohort_dir)
    g = _truth_for(cohort_dir, pid)
    anat = load_anatomy()
    meta = load_patient(cache_dir, pid)["meta"]
    q = _brain_points(anat, n_points, seed)
    out = {"patient_id": pid}
    for name, M, R, t, flair in (("dwi", meta["tx_template_to_dwi_lps"], g.R, g.t, False),
                                 ("flair", meta["tx_template_to_flair_lps"], g.Rf, g.tf, True)):
        world = q @ R.T + t  # patient head point -> scanner (RAS)
        true_tpl = g.world_to_template(world, flair=flair)
        inv = np.linalg.inv(np.asarray(M))  # patient LPS -> template LPS
        est = ((world @ LPS.T) @ inv[:3, :3].T + inv[:3, 3]) @ LPS.T
        d = np.linalg.norm(est - true_tpl, axis=1)
        out[f"{name}_error_mean_mm"] = float(d.mean())
        out[f"{name}_error_p95_mm"] = float(np.percentile(d, 95))
    return out


def skull_strip_dice(cohort_dir, cache_dir, pid: str) -> dict:
    """Dice of the propagated brain mask and the true brain mask on the native b0 grid, and the
    fraction of the synthetic scalp/skull shell left inside the mask."""
    from torchio.data.io import sitk_to_nib

    cohort_dir = Path(cohort_dir)
    g = _truth_for(cohort_dir, pid)
    anat = load_anatomy()
    p = load_patient(cache_dir, pid)
    mask, aff = p["mask_native"].astype(bool), p["mask_native_affine"]
    ijk = np.argwhere(np.ones(mask.shape, bool)).astype(float)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    tpl_mm = g.world_to_template(world)
    # true brain: the template's brain mask (what the pipeline propagates) at the true position
    m, m_aff = sitk_to_nib(load_template().mask_1mm)
    mvox = (tpl_mm - m_aff[:3, 3]) @ np.linalg.inv(m_aff[:3, :3]).T
    truth = ndimage.map_coordinates(m[0].astype(np.float32), mvox.T, order=1).reshape(mask.shape) > 0.5
    shell = (anat.fractions[CHANNELS.index("skull")] + anat.fractions[CHANNELS.index("fat")]
             + anat.fractions[CHANNELS.index("muscle")])
    shell_nat = ndimage.map_coordinates(shell, anat.mm_to_voxel(tpl_mm).T, order=1).reshape(mask.shape) > 0.5
    dice = 2 * (mask & truth).sum() / max(mask.sum() + truth.sum(), 1)
    return {"patient_id": pid, "brain_dice": float(dice),
            "shell_voxels_in_mask_fraction": float((mask & shell_nat).sum() / max(shell_nat.sum(), 1))}


def affine_floor(cohort_dir, pid: str, n_points: int = 4000, seed: int = 0) -> float:
    """Mean error (mm) of the best affine any registration could find: a least-squares affine fit
    of the true scanner -> template mapping over brain points. What remains is the smooth
    anatomical deformation, which an affine registration cannot follow."""
    g = _truth_for(Path(cohort_dir), pid)
    anat = load_anatomy()
    q = _brain_points(anat, n_points, seed)
    world = q @ g.R.T + g.t
    true = g.world_to_template(world)
    X = np.c_[world, np.ones(len(world))]
    A, *_ = np.linalg.lstsq(X, true, rcond=None)
    return float(np.linalg.norm(X @ A - true, axis=1).mean())


def qc_table(cohort_dir, cache_dir, ids) -> pd.DataFrame:
    """Registration error, affine floor and skull-stripping Dice for synthetic patients."""
    rows = []
    for pid in ids:
        rows.append(registration_error(cohort_dir, cache_dir, pid) | skull_strip_dice(cohort_dir, cache_dir, pid)
                    | {"affine_floor_mm": affine_floor(cohort_dir, pid)})
    return pd.DataFrame(rows)


# column -> (label, target, worse direction): what the QC summary shows
QC_COLUMNS = {
    "dwi_error_mean_mm": ("b0/b1000 error (mm)", "< 2", "max"),
    "flair_error_mean_mm": ("FLAIR error (mm)", "< 2", "max"),
    "dwi_error_p95_mm": ("b0/b1000 error p95 (mm)", "", "max"),
    "affine_floor_mm": ("affine floor (mm)", "", "max"),
    "brain_dice": ("brain Dice", ">= 0.95", "min"),
    "shell_voxels_in_mask_fraction": ("shell left in mask", "0", "max"),
}


def summarise(qct: pd.DataFrame) -> pd.DataFrame:
    """One row per QC measure: mean, std, median, min, max, the worst patient (largest error,
    smallest Dice) with that value, and the target."""
    rows = {}
    for col, (label, target, worse) in QC_COLUMNS.items():
        v = qct[col]
        at = v.idxmax() if worse == "max" else v.idxmin()
        rows[label] = {"mean": v.mean(), "std": v.std(), "median": v.median(), "min": v.min(), "max": v.max(),
                       "worst patient": f"{qct.at[at, 'patient_id']} ({v[at]:.2f})", "target": target}
    return pd.DataFrame.from_dict(rows, orient="index")
