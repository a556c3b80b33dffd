"""Render one synthetic patient: lesion in MNI space, then 'acquire' DWI b0/b1000 and FLAIR.

For each native voxel we map its slice profile (``subslices`` planes through the slice) into
MNI space through the patient's head pose, head size and smooth deformation, sample tissue
fractions there (``torch.nn.functional.grid_sample``: trilinear, fast, and it never builds the
warped volume), and turn fractions into signal with the MR signal equations. Bias field and
Rician noise follow, in the native grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial.transform import Rotation

from tss.synth.cohort import TERRITORY_BOXES, adc_ratio
from tss.synth.params import param
from tss.template import CHANNELS, Anatomy

# ------------------------------------------------------------------------------------------------
# lesion


def _lesion_centre(rng, anat: Anatomy, territory: str, hemi: int) -> np.ndarray:
    box = TERRITORY_BOXES[territory]
    for _ in range(200):
        c = np.array([hemi * rng.uniform(*box[0]), rng.uniform(*box[1]), rng.uniform(*box[2])])
        v = np.round(anat.mm_to_voxel(c)).astype(int)
        if anat.parenchyma[tuple(v)] > 0.6:
            return c
    raise RuntimeError(f"no parenchyma found in territory {territory}")


def _blob(rng, anat: Anatomy, centre_mm: np.ndarray, volume_ml: float, hemi: int, out: np.ndarray):
    """Grow an irregular blob of ``volume_ml`` of parenchyma around a centre (adds into ``out``)."""
    r = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    half = int(np.ceil(2.2 * r + 6))
    c = np.round(anat.mm_to_voxel(centre_mm)).astype(int)
    lo = np.maximum(c - half, 0)
    hi = np.minimum(c + half + 1, anat.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    grid = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij"), -1)
    d = (grid - c).astype(np.float32)
    aniso = rng.uniform(0.7, 1.4, 3)
    field = -np.sum((d / aniso) ** 2, -1) / (2 * r**2)
    noise = ndimage.gaussian_filter(rng.standard_normal(d.shape[:3]).astype(np.float32), max(r / 3, 1.0))
    field += 1.2 * noise / (noise.std() + 1e-6)
    allowed = anat.parenchyma[sl] > 0.3
    if hemi != 0:
        mm_x = anat.voxel_to_mm(grid.reshape(-1, 3).astype(float))[:, 0].reshape(d.shape[:3])
        allowed &= hemi * mm_x > 1.0  # a unilateral lesion stays on its side of the midline
    target = int(round(volume_ml * 1000))
    vals = np.where(allowed, field, -np.inf).ravel()
    k = min(target, int(allowed.sum()))
    if k <= 0:
        return
    thr = np.partition(vals, -k)[-k]
    blob = (field >= thr) & allowed
    out[sl] = np.maximum(out[sl], ndimage.gaussian_filter(blob.astype(np.float32), 0.6))


def render_lesion(rng, anat: Anatomy, territory: str, side: str, volume_ml: float):
    """Lesion fraction on the 1 mm grid, cropped: returns (values, offset voxel index)."""
    full = np.zeros(anat.shape, np.float32)
    if territory == "embolic":
        k = int(rng.integers(2, 5))
        sides = [-1, 1] + list(rng.choice([-1, 1], size=k - 2))
        parts = rng.dirichlet(np.ones(k)) * volume_ml
        for hemi, v in zip(sides, parts):
            terr = str(rng.choice(["MCA", "PCA", "MCA", "ACA"]))
            _blob(rng, anat, _lesion_centre(rng, anat, terr, hemi), max(v, 0.1), hemi, full)
    else:
        hemi = -1 if side == "left" else 1  # RAS: left hemisphere is x < 0
        _blob(rng, anat, _lesion_centre(rng, anat, territory, hemi), volume_ml, hemi, full)
    full *= anat.parenchyma > 0  # no lesion outside parenchyma
    nz = np.argwhere(full > 0)
    lo, hi = nz.min(0) - 2, nz.max(0) + 3
    lo, hi = np.maximum(lo, 0), np.minimum(hi, anat.shape)
    return full[tuple(slice(a, b) for a, b in zip(lo, hi))].copy(), lo, float(full.sum() / 1000)


# ------------------------------------------------------------------------------------------------
# geometry


def _rotation(rng, sd_deg, limit_deg: float = 15.0) -> np.ndarray:
    angles = np.clip(rng.normal(0, sd_deg), -limit_deg, limit_deg)
    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def native_grid(rng, inplane_range, centre_world: np.ndarray):
    """A scanner-axis-aligned axial stack: shape and voxel->world affine."""
    v = rng.uniform(*inplane_range)
    th = rng.uniform(*param("slice_thickness_mm"))
    n_xy = int(round(rng.uniform(*param("fov_mm")) / v / 2) * 2)
    n_z = int(round(rng.uniform(*param("slab_mm")) / th))
    shape = (n_xy, n_xy, n_z)
    aff = np.diag([v, v, th, 1.0])
    aff[:3, 3] = centre_world - aff[:3, :3] @ ((np.array(shape) - 1) / 2)
    return shape, aff


def reorient_storage(data: np.ndarray, affine: np.ndarray, code: str):
    """Store the same image in another voxel order (RAS, LAS or LPS), keeping world positions."""
    data, affine = data.copy(), affine.copy()
    flips = {"RAS": (), "LAS": (0,), "LPS": (0, 1)}[code]
    for ax in flips:
        data = np.flip(data, ax)
        affine[:3, 3] += affine[:3, ax] * (data.shape[ax] - 1)
        affine[:3, ax] *= -1
    return np.ascontiguousarray(data), affine


class Deformation:
    """native world mm -> template mm: inverse head pose, head size, ventricles, smooth warp."""

    def __init__(self, rng, anat: Anatomy, age: float):
        self.anat = anat
        self.scale = 1 + param("head_scale_sd") * rng.standard_normal()
        a = np.clip(param("atrophy_per_year") * (age - 50), 0, 0.2)
        self.atrophy = float(a)
        self.vent_k = param("ventricle_expansion") * a / 0.2
        coarse = rng.normal(0, param("elastic_sd_mm"), (3, 8, 8, 8)).astype(np.float32)
        self.warp = Sampler(coarse)
        self.warp_scale = (np.array(coarse.shape[1:]) - 1) / (np.array(anat.shape) - 1)

    def __call__(self, mm: np.ndarray) -> np.ndarray:
        src = mm / self.scale
        c = np.array([0.0, -10.0, 15.0])  # centre of the lateral ventricles (MNI)
        rel = src - c
        w = np.exp(-np.sum(rel**2, -1, keepdims=True) / (2 * 25.0**2))
        src = c + rel * (1 - self.vent_k * w)
        disp = self.warp(self.anat.mm_to_voxel(src) * self.warp_scale)  # (3, N), mm
        return src + disp.T


class Sampler:
    """Trilinear sampling of a (C, X, Y, Z) volume at voxel coordinates.

    The tensor is kept in (Z, X, Y) memory order: axial native planes walk along template x/y,
    and with y fastest in memory grid_sample reads nearly contiguous rows (2x faster).
    """

    def __init__(self, volume: np.ndarray):
        self.shape = np.array(volume.shape[1:], dtype=np.float64)
        self.t = torch.from_numpy(np.ascontiguousarray(volume.transpose(0, 3, 1, 2)))[None]

    def __call__(self, vox: np.ndarray) -> np.ndarray:
        norm = 2 * vox / (self.shape - 1) - 1  # align_corners=True convention
        # grid_sample wants (W, H, D) = (y, x, z) for a (D, H, W) = (Z, X, Y) tensor
        g = torch.from_numpy(norm[:, [1, 0, 2]].astype(np.float32)).view(1, 1, 1, -1, 3)
        out = F.grid_sample(self.t, g, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out.view(self.t.shape[1], -1).numpy()


def _coarse_axis(n: int, step: int = 4) -> np.ndarray:
    return np.linspace(0, n - 1, int(np.ceil((n - 1) / step)) + 1)


def sample_fractions(anat_s: Sampler, anat: Anatomy, lesion_s: Sampler, lesion_lo, shape, affine,
                     to_template, deform: Deformation):
    """Tissue fractions and lesion fraction on a native grid, averaged over the slice profile.

    The native->template map (pose, head size, ventricles, smooth warp) is smooth, so it is
    evaluated on a coarse in-plane grid (every 4th voxel) and interpolated bilinearly.
    """
    n_sub = param("subslices")
    offs = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    ci, cj = _coarse_axis(shape[0]), _coarse_axis(shape[1])
    ii, jj = np.meshgrid(ci, cj, indexing="ij")
    out = np.zeros((len(CHANNELS) + 1,) + tuple(shape), np.float32)
    for k in range(shape[2]):
        ijk = np.stack([np.broadcast_to(ii, (n_sub,) + ii.shape), np.broadcast_to(jj, (n_sub,) + ii.shape),
                        (k + offs)[:, None, None] * np.ones_like(ii)], -1).reshape(-1, 3)
        world = ijk @ affine[:3, :3].T + affine[:3, 3]
        vox = anat.mm_to_voxel(deform(to_template(world)))
        coarse = torch.from_numpy(vox.reshape(n_sub, *ii.shape, 3).transpose(0, 3, 1, 2).astype(np.float32))
        fine = F.interpolate(coarse, size=tuple(shape[:2]), mode="bilinear", align_corners=True)
        vox = fine.permute(0, 2, 3, 1).reshape(-1, 3).numpy().astype(np.float64)
        tissue = anat_s(vox)
        les = lesion_s(vox - lesion_lo)
        both = np.concatenate([tissue, les]).reshape(len(CHANNELS) + 1, n_sub, *shape[:2]).mean(1)
        out[:, :, :, k] = both
    return out


_SAMPLERS: dict[int, Sampler] = {}


def anatomy_sampler(anat: Anatomy) -> Sampler:
    """One Sampler per process for the shared anatomy (the transposed copy costs ~0.5 s)."""
    key = id(anat.fractions)
    if key not in _SAMPLERS:
        _SAMPLERS.clear()
        _SAMPLERS[key] = Sampler(anat.fractions)
    return _SAMPLERS[key]


# ------------------------------------------------------------------------------------------------
# physics


def tissue_table(field_T: float) -> dict[str, tuple[float, float, float, float]]:
    rows = param("tissues_1p5T") if field_T < 2 else param("tissues_3T")
    return {name: (pd, t1, t2, adc) for name, pd, t1, t2, adc in rows}


def se_epi(pd, t1, t2, adc, tr, te, b):
    """Spin-echo EPI: b0 = PD (1 - e^(-TR/T1)) e^(-TE/T2); DWI = b0 e^(-b ADC)."""
    b0 = pd * (1 - np.exp(-tr / t1)) * np.exp(-te / t2)
    return b0, b0 * np.exp(-b * adc)


def flair_signal(pd, t1, t2, tr, te, ti):
    """Inversion recovery, magnitude: PD |1 - 2 e^(-TI/T1) + e^(-TR/T1)| e^(-TE/T2)."""
    return pd * np.abs(1 - 2 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def lesion_tissue(base, t2_increase: float, adc_rel: float):
    pd, t1, t2, adc = base
    return (pd * (1 + param("pd_per_t2_increase") * t2_increase), t1, t2 * (1 + t2_increase), adc * adc_rel)


def bias_field(rng, shape) -> np.ndarray:
    """Smooth multiplicative field: exp of a random degree-3 polynomial (torchio's is ~3 s/volume)."""
    axes = [np.linspace(-1, 1, n) for n in shape]
    X, Y, Z = np.meshgrid(*axes, indexing="ij", sparse=True)
    log = np.zeros(shape, np.float32)
    for a in range(4):
        for b in range(4 - a):
            for c in range(4 - a - b):
                if a + b + c == 0:
                    continue
                log += rng.normal(0, param("bias_field_sd")) * X**a * Y**b * Z**c
    return np.exp(log).astype(np.float32)


def rician(rng, signal: np.ndarray, sd: float) -> np.ndarray:
    re = signal + rng.normal(0, sd, signal.shape)
    im = rng.normal(0, sd, signal.shape)
    return np.sqrt(re**2 + im**2).astype(np.float32)


def mix(frac: np.ndarray, per_tissue: dict[str, float], lesion: dict[str, float] | None) -> np.ndarray:
    """Partial-volume signal: sum of tissue fractions times tissue signal; lesion replaces GM/WM."""
    les = frac[len(CHANNELS)] if lesion is not None else 0.0
    s = np.zeros(frac.shape[1:], np.float32)
    for ci, name in enumerate(CHANNELS):
        if lesion is not None and name in lesion:
            s += frac[ci] * ((1 - les) * per_tissue[name] + les * lesion[name])
        else:
            s += frac[ci] * per_tissue[name]
    return s


def _ratio(frac, noisy, healthy_noiseless) -> float:
    """Lesion/healthy signal ratio weighted by lesion fraction (partial volume included)."""
    w = frac[len(CHANNELS)]
    den = float(np.sum(w * healthy_noiseless))
    return float(np.sum(w * noisy) / den) if den > 0 else float("nan")


# ------------------------------------------------------------------------------------------------
# one patient


def render_patient(row: dict, seed: int, index: int, anat: Anatomy) -> dict:
    """All images of one patient and the truth about how they were made.

    Returns a dict with ``images`` (name -> (array, affine)), ``truth`` (JSON-able dict).
    Torch runs on one thread here: its kernels round differently with more threads, and the
    same seed must give the same images in a worker process and in a notebook.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _render_patient(row, seed, index, anat)
    finally:
        torch.set_num_threads(threads)


@dataclass
class Geometry:
    """How one patient's head sits in the scanner and how it differs from the template."""

    lesion: np.ndarray  # lesion fraction, cropped 1 mm template grid
    lesion_lo: np.ndarray  # voxel offset of the crop
    lesion_ml: float
    deform: Deformation  # patient MNI mm -> template mm
    R: np.ndarray  # DWI/b0 pose: world = R @ patient_mni + t
    t: np.ndarray
    Rf: np.ndarray  # FLAIR pose (the patient moved between sequences)
    tf: np.ndarray

    def world_to_template(self, world: np.ndarray, flair: bool = False) -> np.ndarray:
        """Scanner-world mm (RAS) -> template mm, through the true pose and deformation."""
        R, t = (self.Rf, self.tf) if flair else (self.R, self.t)
        return self.deform((world - t) @ R)


def _geometry(rng, row: dict, anat: Anatomy) -> Geometry:
    lesion, lo, lesion_ml = render_lesion(rng, anat, row["territory"], row["stroke_side"],
                                         row["lesion_ml_planned"])
    deform = Deformation(rng, anat, row["age"])
    R = _rotation(rng, param("head_rotation_deg"))
    t = rng.normal(0, param("head_translation_mm"), 3)
    deg, mm = param("flair_motion")
    Rf = _rotation(rng, (deg, deg, deg)) @ R
    tf = t + rng.normal(0, mm, 3)
    return Geometry(lesion, lo, lesion_ml, deform, R, t, Rf, tf)


def _patient_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, 2, index])


def true_geometry(row: dict, seed: int, index: int, anat: Anatomy) -> Geometry:
    """Replay a patient's draws to recover its true geometry (for registration QC)."""
    return _geometry(_patient_rng(seed, index), row, anat)


def _tissue_fractions(rng, row: dict, anat: Anatomy) -> dict:
    """Where the head lies in each scanner's frame, the native DWI and FLAIR grids, and the tissue
    (and lesion) fractions of every native voxel, with cortical thinning applied."""
    g = _geometry(rng, row, anat)
    lesion_s = Sampler(g.lesion[None])
    anat_s = anatomy_sampler(anat)
    head_centre = np.array([0.0, -18.0, 10.0])
    dwi_shape, dwi_aff = native_grid(rng, param("dwi_inplane_mm"), g.R @ head_centre + g.t + rng.normal(0, 4, 3))
    fl_shape, fl_aff = native_grid(rng, param("flair_inplane_mm"), g.Rf @ head_centre + g.tf + rng.normal(0, 4, 3))

    def fracs(shape, aff, Rm, tv):
        f = sample_fractions(anat_s, anat, lesion_s, g.lesion_lo, shape, aff, lambda w: (w - tv) @ Rm, g.deform)
        a = g.deform.atrophy  # cortical thinning: part of GM becomes CSF
        f[CHANNELS.index("CSF")] += a * f[0]
        f[0] *= 1 - a
        return f

    return {"g": g, "dwi_shape": dwi_shape, "dwi_aff": dwi_aff, "fl_shape": fl_shape, "fl_aff": fl_aff,
            "f_dwi": fracs(dwi_shape, dwi_aff, g.R, g.t), "f_fl": fracs(fl_shape, fl_aff, g.Rf, g.tf)}


def _dwi_contrast(rng, tissues: dict, les_t: dict) -> dict:
    """Spin-echo EPI signal (b0 and b1000) of each tissue and of the lesion, at a drawn TR and TE."""
    b = param("b_value")
    fatsat = param("epi_fat_suppression")
    (tr_lo, tr_hi), (te_lo, te_hi) = param("dwi_tr_te_ms")
    tr, te = rng.uniform(tr_lo, tr_hi), rng.uniform(te_lo, te_hi)
    b0_t, dwi_t = {}, {}
    for name, v in tissues.items():
        b0_t[name], dwi_t[name] = se_epi(*v, tr, te, b)
        if name == "fat":
            b0_t[name] *= fatsat
            dwi_t[name] *= fatsat
    b0_l, dwi_l = {}, {}
    for name, v in les_t.items():
        b0_l[name], dwi_l[name] = se_epi(*v, tr, te, b)
    return {"tr": tr, "te": te, "b0_t": b0_t, "dwi_t": dwi_t, "b0_l": b0_l, "dwi_l": dwi_l}


def _flair_contrast(rng, tissues: dict, les_t: dict) -> dict:
    """FLAIR signal of each tissue and of the lesion, at a drawn TR and TE and the TI that nulls CSF."""
    (ftr_lo, ftr_hi), (fte_lo, fte_hi) = param("flair_tr_te_ms")
    ftr, fte = rng.uniform(ftr_lo, ftr_hi), rng.uniform(fte_lo, fte_hi)
    t1_csf = tissues["CSF"][1]
    ti = t1_csf * np.log(2 / (1 + np.exp(-ftr / t1_csf)))  # nulls CSF
    fl_t = {name: flair_signal(pd, t1, t2, ftr, fte, ti) for name, (pd, t1, t2, _) in tissues.items()}
    fl_l = {name: flair_signal(pd, t1, t2, ftr, fte, ti) for name, (pd, t1, t2, _) in les_t.items()}
    return {"ftr": ftr, "fte": fte, "ti": ti, "fl_t": fl_t, "fl_l": fl_l}


def _acquire(rng, geo: dict, dwi: dict, fl: dict) -> dict:
    """Mix the tissue signals by their fractions, apply each scanner's bias field and Rician noise;
    the lesion-to-healthy signal ratios are measured here, noise included."""
    f_dwi, f_fl = geo["f_dwi"], geo["f_fl"]
    bias_dwi = bias_field(rng, geo["dwi_shape"])
    bias_fl = bias_field(rng, geo["fl_shape"])
    b0_clean = mix(f_dwi, dwi["b0_t"], dwi["b0_l"]) * bias_dwi
    dwi_clean = mix(f_dwi, dwi["dwi_t"], dwi["dwi_l"]) * bias_dwi
    fl_clean = mix(f_fl, fl["fl_t"], fl["fl_l"]) * bias_fl

    sd_b0 = dwi["b0_t"]["WM"] / rng.uniform(*param("snr_b0"))
    sd_dwi = sd_b0 / np.sqrt(param("dwi_trace_averages"))
    sd_fl = fl["fl_t"]["WM"] / rng.uniform(*param("snr_flair"))
    out = {"b0": rician(rng, b0_clean, sd_b0), "dwi": rician(rng, dwi_clean, sd_dwi), "fl": rician(rng, fl_clean, sd_fl),
           "sd_b0": sd_b0, "sd_fl": sd_fl}
    out["ratios"] = {
        "dwi_ratio": _ratio(f_dwi, out["dwi"], mix(f_dwi, dwi["dwi_t"], None) * bias_dwi),
        "b0_ratio": _ratio(f_dwi, out["b0"], mix(f_dwi, dwi["b0_t"], None) * bias_dwi),
        "flair_ratio": _ratio(f_fl, out["fl"], mix(f_fl, fl["fl_t"], None) * bias_fl),
    }
    return out


def _store(rng, geo: dict, sig: dict) -> tuple[dict, str, np.ndarray]:
    """Scanner units (one gain per acquisition: b0 and b1000 share it) as int16, the lesion mask, and
    a drawn on-disk voxel order; returns the images (name -> (array, affine)), that order and the mask."""
    gain_dwi = rng.uniform(800, 3000) / np.percentile(sig["b0"], 99.5)
    gain_fl = rng.uniform(800, 3000) / np.percentile(sig["fl"], 99.5)
    to16 = lambda x, g: np.clip(np.round(x * g), 0, 32767).astype(np.int16)  # noqa: E731
    mask = (geo["f_dwi"][len(CHANNELS)] >= 0.5).astype(np.uint8)
    orient = str(rng.choice(param("storage_orientations")))
    dwi_aff, fl_aff = geo["dwi_aff"], geo["fl_aff"]
    images = {}
    for name, arr, aff in (("b1000", to16(sig["dwi"], gain_dwi), dwi_aff), ("b0", to16(sig["b0"], gain_dwi), dwi_aff),
                           ("lesion_mask", mask, dwi_aff), ("flair", to16(sig["fl"], gain_fl), fl_aff)):
        images[name] = reorient_storage(arr, aff, orient)
    return images, orient, mask


def _render_patient(row: dict, seed: int, index: int, anat: Anatomy) -> dict:
    # the stages draw from one generator in this order; reordering them changes every patient
    rng = _patient_rng(seed, index)
    geo = _tissue_fractions(rng, row, anat)
    tissues = tissue_table(row["field_T"])
    adc_rel = float(adc_ratio(row["onset_to_mri_min"], row["adc_drop"], row["latent_t2_increase"]))
    les_t = {k: lesion_tissue(tissues[k], float(row["latent_t2_increase"]), adc_rel) for k in ("GM", "WM")}
    dwi = _dwi_contrast(rng, tissues, les_t)
    fl = _flair_contrast(rng, tissues, les_t)
    sig = _acquire(rng, geo, dwi, fl)
    images, orient, mask = _store(rng, geo, sig)
    g, dwi_aff, fl_aff = geo["g"], geo["dwi_aff"], geo["fl_aff"]
    truth = {
        "patient_id": row["patient_id"],
        "lesion_ml": g.lesion_ml,
        "lesion_voxels_dwi": int(mask.sum()),
        **sig["ratios"],
        "adc_ratio": adc_rel,
        "storage_orientation": orient,
        "head_rotation_world_from_mni": g.R.tolist(),
        "head_translation_mm": g.t.tolist(),
        "flair_rotation_world_from_mni": g.Rf.tolist(),
        "flair_translation_mm": g.tf.tolist(),
        "head_scale": float(g.deform.scale),
        "atrophy": g.deform.atrophy,
        "dwi_voxel_mm": [float(x) for x in np.abs(np.diag(dwi_aff)[:3])],
        "flair_voxel_mm": [float(x) for x in np.abs(np.diag(fl_aff)[:3])],
        "dwi_shape": list(geo["dwi_shape"]),
        "flair_shape": list(geo["fl_shape"]),
        "dwi_tr_te_ms": [float(dwi["tr"]), float(dwi["te"])],
        "flair_tr_te_ti_ms": [float(fl["ftr"]), float(fl["fte"]), float(fl["ti"])],
        "snr_b0": float(dwi["b0_t"]["WM"] / sig["sd_b0"]),
        "snr_flair": float(fl["fl_t"]["WM"] / sig["sd_fl"]),
    }
    return {"images": images, "truth": truth}
