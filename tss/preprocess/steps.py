"""The preprocessing steps of paper section 2.1, each a small function on SimpleITK images.

Physical space is SimpleITK's (LPS); images come in through nibabel and torchio's
``nib_to_sitk`` so that every orientation a converter may write is handled by one code path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from torchio.data.io import nib_to_sitk, sitk_to_nib

from tss.template import CHANNELS, load_anatomy

# target grid: the MNI152 template's field of view resampled to 224 x 224 x 26 (paper 2.1)
TARGET_SHAPE = (224, 224, 26)
MIDLINE = TARGET_SHAPE[0] // 2  # x index of the mid-sagittal plane: hemispheres are [:112] and [112:]


class PatientError(Exception):
    """A problem with one patient's input or processing: names the step and the reason."""

    def __init__(self, step: str, reason: str):
        super().__init__(f"{step}: {reason}")
        self.step, self.reason = step, reason


# ------------------------------------------------------------------------------------------------
# template


# T2-weighted signal of each tissue, PD * exp(-TE/T2) at TE = 100 ms and long TR (1.5 T values);
# skull has no signal and scalp fat is suppressed in EPI (as on a b0 image)
T2W_TISSUE = {"GM": 0.80 * np.exp(-100 / 100), "WM": 0.69 * np.exp(-100 / 80), "CSF": 1.00 * np.exp(-100 / 2000),
              "skull": 0.0, "fat": 0.1 * 0.90 * np.exp(-100 / 80), "muscle": 0.80 * np.exp(-100 / 45)}


def t2w_template() -> sitk.Image:
    """A T2-weighted MNI152 head template at 2 mm.

    The paper registers b0 to the T2w MNI152 atlas; nilearn ships only the (skull-stripped) T1
    one. We synthesise a T2w head from nilearn's GM/WM maps and brain mask plus a modelled
    extra-cerebral CSF, skull and scalp (:mod:`tss.template`). A brain-only template would
    pull the bright CSF around the brain into the template's brain and inflate it.
    """
    anat = load_anatomy()
    t2w = sum(anat.fractions[i] * T2W_TISSUE[name] for i, name in enumerate(CHANNELS)).astype(np.float32)
    head = nib_to_sitk(t2w[None], anat.affine)
    ref = sitk.Image([int(np.ceil(n / 2)) for n in head.GetSize()], sitk.sitkFloat32)
    ref.SetSpacing([2.0] * 3)
    ref.SetOrigin(head.GetOrigin())
    ref.SetDirection(head.GetDirection())
    return sitk.Resample(sitk.SmoothingRecursiveGaussian(head, 0.8), ref, sitk.Transform(), sitk.sitkLinear, 0.0)


@dataclass(frozen=True)
class Template:
    t2w: sitk.Image  # 2 mm T2-weighted MNI152 head (registration target; see t2w_template)
    mask_2mm: sitk.Image  # its brain mask (uint8)
    mask_1mm: sitk.Image  # 1 mm brain mask (propagated for skull stripping)
    target: sitk.Image  # empty image defining the 224 x 224 x 26 grid
    target_affine: np.ndarray  # RAS voxel -> mm of the target grid
    target_mask: np.ndarray  # brain mask on the target grid, (224, 224, 26) bool, RAS voxel order
    target_t2w: np.ndarray  # the T2w template on the target grid (for the registration sanity check)


def target_affine() -> np.ndarray:
    """RAS affine of the 224 x 224 x 26 grid spanning the 1 mm template's field of view.

    The 1 mm template (197 x 233 x 189 voxels, centres -98..98, -134..98, -72..116 mm) covers
    [-98.5, 98.5] x [-134.5, 98.5] x [-72.5, 116.5] mm; the mid-sagittal plane x = 0 falls exactly
    between voxels 111 and 112, so the hemispheres are the halves [:112] and [112:].
    """
    lo = np.array([-98.5, -134.5, -72.5])
    extent = np.array([197.0, 233.0, 189.0])
    spacing = extent / np.array(TARGET_SHAPE)
    aff = np.diag(list(spacing) + [1.0])
    aff[:3, 3] = lo + spacing / 2
    return aff


def to_sitk(img: nib.Nifti1Image, dtype=np.float32) -> sitk.Image:
    data = np.asanyarray(img.dataobj).astype(dtype)
    return nib_to_sitk(data[None], img.affine)


@lru_cache(maxsize=1)
def load_template() -> Template:
    from nilearn import datasets

    t2w = t2w_template()
    m2 = (datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0.5).astype(np.uint8)
    mask_2mm = sitk.Resample(nib_to_sitk(m2[None], datasets.load_mni152_brain_mask(resolution=2).affine), t2w,
                             sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    m1img = datasets.load_mni152_brain_mask(resolution=1)
    mask_1mm = nib_to_sitk((m1img.get_fdata() > 0.5).astype(np.uint8)[None], m1img.affine)
    aff = target_affine()
    target = nib_to_sitk(np.zeros((1,) + TARGET_SHAPE, np.float32), aff)
    tm = sitk.Resample(sitk.Cast(mask_1mm, sitk.sitkFloat32), target, sitk.Transform(), sitk.sitkLinear, 0.0)
    target_mask = sitk_to_nib(tm)[0][0] > 0.5
    target_t2w = to_array(sitk.Resample(t2w, target, sitk.Transform(), sitk.sitkLinear, 0.0))
    return Template(t2w, mask_2mm, mask_1mm, target, aff, target_mask, target_t2w)


# ------------------------------------------------------------------------------------------------
# loading and checks


def _bvals(path: Path) -> np.ndarray | None:
    """b-values of a 4D DWI from an FSL ``.bval`` file beside it, if any."""
    stem = path.name[:-7] if path.name.endswith(".nii.gz") else path.stem
    f = path.with_name(stem + ".bval")
    return np.loadtxt(f).ravel() if f.exists() else None


def sidecar_b_value(path: Path, default: float = 1000.0) -> float:
    """DiffusionBValue from a BIDS JSON sidecar beside a DWI file, else ``default``."""
    stem = path.name[:-7] if path.name.endswith(".nii.gz") else path.stem
    f = path.with_name(stem + ".json")
    if f.exists():
        b = json.loads(f.read_text()).get("DiffusionBValue")
        if b:
            return float(b)
    return default


def load_volume(path: Path, name: str, pick: str | None = None) -> nib.Nifti1Image:
    """Read a NIfTI fully and check it: readable, finite, not all zero, 3D (or 4D with b-values).

    ``pick`` ('b0' or 'b1000') selects a volume of a 4D DWI using its ``.bval`` file.
    """
    if path is None:
        raise PatientError("load", f"{name}: no file given")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise PatientError("load", f"{name}: file not found ({Path(path).name})") from None
    except Exception as e:  # noqa: BLE001 - truncated gzip, bad header, ...
        raise PatientError("load", f"{name}: corrupt or truncated NIfTI ({type(e).__name__}: {e})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        bvals = _bvals(Path(path))
        if bvals is None or pick is None or len(bvals) != data.shape[3]:
            raise PatientError("load", f"{name}: 4D image with {data.shape[3]} volumes and no matching .bval "
                                       "file: cannot tell b0 from b1000")
        idx = np.flatnonzero(bvals < 50) if pick == "b0" else np.flatnonzero(np.abs(bvals - 1000) < 200)
        if idx.size == 0:
            raise PatientError("load", f"{name}: no {pick} volume among b-values {sorted(set(bvals))}")
        data = data[..., idx].mean(axis=3)
    if data.ndim != 3:
        raise PatientError("load", f"{name}: expected a 3D image, got shape {data.shape}")
    data = data.astype(np.float32)
    bad = ~np.isfinite(data)
    if bad.any():
        raise PatientError("load", f"{name}: {int(bad.sum())} NaN or Inf voxels")
    if not np.any(data):
        raise PatientError("load", f"{name}: all voxels are zero")
    return nib.Nifti1Image(data, img.affine)


def derive_b0(dwi: nib.Nifti1Image, adc: nib.Nifti1Image, b: float) -> nib.Nifti1Image:
    """b0 = S_b * exp(b * ADC), ADC in 1e-3 mm^2/s (negative ADC clipped to 0, exponent capped)."""
    if dwi.shape != adc.shape or not np.allclose(dwi.affine, adc.affine, atol=1e-3):
        raise PatientError("derive_b0", f"ADC grid {adc.shape} differs from DWI grid {dwi.shape}")
    a = np.clip(adc.get_fdata(dtype=np.float32), 0, 4.0) * 1e-3
    s = np.clip(dwi.get_fdata(dtype=np.float32), 0, None)
    return nib.Nifti1Image((s * np.exp(np.minimum(b * a, 6.0))).astype(np.float32), dwi.affine)


# ------------------------------------------------------------------------------------------------
# N4, reorientation


def n4(img: sitk.Image, fit_size: int = 32, iterations=(30, 20)) -> tuple[sitk.Image, sitk.Image]:
    """N4 bias-field correction: the field is fitted on a copy shrunk in-plane to about
    ``fit_size`` voxels (slices are thick: no shrink across them) and, being smooth, evaluated
    there and resampled linearly to full resolution (full-resolution evaluation costs ~10x more)."""
    img = sitk.Cast(img, sitk.sitkFloat32)
    mask = sitk.OtsuThreshold(img, 0, 1, 200)
    factors = [max(1, int(round(img.GetSize()[d] / fit_size))) for d in range(2)] + [1]
    small, small_mask = sitk.Shrink(img, factors), sitk.Shrink(mask, factors)
    f = sitk.N4BiasFieldCorrectionImageFilter()
    f.SetMaximumNumberOfIterations(list(iterations))
    f.Execute(small, small_mask)
    log_bias = sitk.Resample(f.GetLogBiasFieldAsImage(small), img, sitk.Transform(), sitk.sitkLinear, 0.0)
    return img / sitk.Exp(log_bias), log_bias


def apply_bias(img: sitk.Image, log_bias: sitk.Image) -> sitk.Image:
    """Correct an image of the same acquisition with an already estimated field (b1000 uses b0's:
    same receive coil, same grid)."""
    return sitk.Cast(img, sitk.sitkFloat32) / sitk.Exp(log_bias)


def reorient(img: sitk.Image) -> sitk.Image:
    """Voxel axes to the template's orientation (RAS+), without interpolation."""
    data, affine = sitk_to_nib(img)
    canon = nib.as_closest_canonical(nib.Nifti1Image(data[0], affine))
    return nib_to_sitk(np.asanyarray(canon.dataobj)[None].astype(np.float32), canon.affine)


# ------------------------------------------------------------------------------------------------
# registration


def affine_matrix(tx: sitk.Transform) -> np.ndarray:
    """4x4 matrix (LPS mm -> LPS mm) of an affine-family SimpleITK transform."""
    tx = tx.GetNthTransform(0) if isinstance(tx, sitk.CompositeTransform) else tx
    A = np.array(tx.GetMatrix()).reshape(3, 3)
    c, t = np.array(tx.GetCenter()), np.array(tx.GetTranslation())
    M = np.eye(4)
    M[:3, :3] = A
    M[:3, 3] = t + c - A @ c
    return M


def matrix_transform(M: np.ndarray) -> sitk.AffineTransform:
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(M[:3, :3].ravel().tolist())
    tx.SetTranslation(M[:3, 3].tolist())
    return tx


def _method(bins=32, sampling=0.25, seed=2, metric="mi") -> sitk.ImageRegistrationMethod:
    # seed 0 is sitk.sitkWallClock: the sampled points, and so the result, changed from run to run
    R = sitk.ImageRegistrationMethod()
    if metric == "mi":
        R.SetMetricAsMattesMutualInformation(bins)
    else:
        R.SetMetricAsCorrelation()
    R.SetMetricSamplingStrategy(R.RANDOM)
    R.SetMetricSamplingPercentage(sampling, seed)
    R.SetInterpolator(sitk.sitkLinear)
    # smaller, slowly shrinking steps run to convergence; the older 1.0/0.6/150 stopped at the
    # iteration cap and landed 0.5-2 mm apart from run to run (threaded metric sums differ in order)
    R.SetOptimizerAsRegularStepGradientDescent(learningRate=0.5, minStep=1e-3, numberOfIterations=300,
                                               relaxationFactor=0.8)
    R.SetOptimizerScalesFromPhysicalShift()
    R.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return R


def register_to_template(img: sitk.Image, tpl: Template, moving_mask: sitk.Image | None = None,
                         metric: str = "mi", initial: np.ndarray | None = None) -> sitk.AffineTransform:
    """Affine registration of an image to the T2w MNI152 head template, Mattes mutual information
    (also copes with FLAIR's dark CSF), restricted to the template's brain plus a CSF and skull
    margin. Without ``initial`` a similarity stage from the images' centres of mass comes first;
    with it (a 4x4 template -> image matrix, e.g. b0's result for the FLAIR) only the affine stage
    runs. Returns the template -> image transform (SimpleITK's fixed -> moving convention)."""
    moving = sitk.Cast(img, sitk.sitkFloat32)
    fixed_mask = sitk.BinaryDilate(tpl.mask_2mm, [5, 5, 5])  # brain plus CSF and skull edge
    if initial is None:
        init_src = moving if moving_mask is None else sitk.Mask(moving, moving_mask)
        init = sitk.CenteredTransformInitializer(tpl.t2w, init_src, sitk.Similarity3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.MOMENTS)
        R = _method(metric=metric)
        R.SetMetricFixedMask(fixed_mask)
        if moving_mask is not None:
            R.SetMetricMovingMask(moving_mask)
        R.SetShrinkFactorsPerLevel([4, 2])
        R.SetSmoothingSigmasPerLevel([4.0, 2.0])
        R.SetInitialTransform(init, inPlace=True)
        R.Execute(tpl.t2w, moving)
        initial = affine_matrix(init)
    R = _method(seed=1, metric=metric)
    R.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        R.SetMetricMovingMask(moving_mask)
    R.SetShrinkFactorsPerLevel([2, 1])
    R.SetSmoothingSigmasPerLevel([2.0, 1.0])
    aff = matrix_transform(initial)
    R.SetInitialTransform(aff, inPlace=True)
    R.Execute(tpl.t2w, moving)
    # the affine stage can end worse than it started (seen: one synthetic b0 from 2.7 mm to 6.1 mm,
    # brain Dice 0.91, passing every sanity check): keep its start unless it improved the metric,
    # judged on points of its own (neither stage's sample) at full resolution
    M = affine_matrix(aff)
    if _metric_at(initial, tpl, moving, fixed_mask, moving_mask, metric) < _metric_at(M, tpl, moving, fixed_mask,
                                                                                       moving_mask, metric):
        return matrix_transform(initial)
    return aff


def _metric_at(M: np.ndarray, tpl: Template, moving: sitk.Image, fixed_mask: sitk.Image,
               moving_mask: sitk.Image | None, metric: str) -> float:
    """The registration metric of the template -> image matrix ``M`` (lower is better), on a fixed
    50% sample of the template's masked voxels at full resolution."""
    R = _method(sampling=0.5, seed=7, metric=metric)
    R.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        R.SetMetricMovingMask(moving_mask)
    R.SetInitialTransform(matrix_transform(M), inPlace=False)
    return R.MetricEvaluate(tpl.t2w, moving)


def template_correlation(b0_target: np.ndarray, tpl: Template) -> float:
    """Correlation of a registered b0 (target grid) with the T2w template inside the brain."""
    m = tpl.target_mask
    return float(np.corrcoef(b0_target[m], tpl.target_t2w[m])[0, 1])


MIN_TEMPLATE_CORRELATION = 0.25  # good: ~0.8-0.9 synthetic, 0.37 on the real (skull-stripped, derived-b0) ISLES case


def check_registration(M: np.ndarray, brain_ml: float) -> None:
    """Sanity check of a template -> patient affine: plausible scaling and brain volume."""
    det = float(np.linalg.det(M[:3, :3]))
    if not 0.6 < det < 1.7:
        raise PatientError("register", f"implausible volume change {det:.2f} (template -> patient)")
    if not 900 < brain_ml < 2600:
        raise PatientError("register", f"propagated brain mask of {brain_ml:.0f} mL is implausible")


def resample(img: sitk.Image, reference: sitk.Image, tx: sitk.Transform, nearest: bool = False) -> sitk.Image:
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.Resample(img, reference, tx, interp, 0.0, sitk.sitkFloat32)


def to_array(img: sitk.Image) -> np.ndarray:
    """Voxel data of an image on the target grid, in RAS voxel order (x, y, z)."""
    return sitk_to_nib(img)[0][0]


def skull_strip(img: sitk.Image, tpl: Template, tx_template_to_img: sitk.Transform) -> sitk.Image:
    """Brain mask in the image's own space: the template's brain mask propagated through the
    inverse of the registration (FSL BET cannot be installed here)."""
    inv = matrix_transform(np.linalg.inv(affine_matrix(tx_template_to_img)))
    m = sitk.Resample(sitk.Cast(tpl.mask_1mm, sitk.sitkFloat32), img, inv, sitk.sitkLinear, 0.0)
    return sitk.Cast(m > 0.5, sitk.sitkUInt8)
