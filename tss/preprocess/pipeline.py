"""Per-patient preprocessing with a content-addressed cache, and the assembled hemisphere tensors.

``preprocess_cohort(cohort_dir, cache_dir)`` runs every patient (in parallel), caches each one's
registered volumes under ``cache_dir/patients/`` keyed by the hashes of its input files and the
pipeline version, records failures with patient, step and reason, then assembles
``cache_dir/cohort/hemispheres.npy``: a memory-mappable float16 array of shape
(hemispheres, 3, 26, 224, 112), channels DWI b1000, b0, FLAIR in [0, 1], right hemispheres
flipped onto the left, with ``index.csv`` giving patient, side and label of each row.

The manifest is untrusted: before any work :func:`preprocess_cohort` refuses a manifest whose ids
are not safe file names or whose path cells leave the data roots (:func:`tss.manifest.require_safe`),
and every per-patient file name goes through :func:`patient_file` (:func:`tss.paths.inside`).
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from tss import manifest
from tss.atomic import atomic_path, cached, content_key, write_text
from tss.parallel import Failed, map_patients
from tss.preprocess import steps
from tss.preprocess.cache import PreprocessCache
from tss.preprocess.steps import PatientError

# 1.3: registration seeded (0 meant the wall clock); an affine stage that ends worse than it started is not kept
PIPELINE_VERSION = "1.3"
CHANNELS = ("b1000", "b0", "flair")
SCALE_CAP = 150.0  # standardised intensities (0-100 between the 1st and 99th percentile) / 150 -> [0, 1]
MIN_LESION_FRACTION = 0.05  # a hemisphere is positive if it holds >= 5% of the lesion (and >= 3 voxels)


@dataclass
class Outcome:
    patient_id: str
    ok: bool
    cached: bool = False
    step: str = ""
    reason: str = ""
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def _file_hash(path) -> str:
    if path is None or (isinstance(path, float) and np.isnan(path)):
        return "-"
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return "missing"
    return h.hexdigest()


def _cache_key(row: dict) -> str:
    parts = [PIPELINE_VERSION, str(row.get("stroke_side"))]
    parts += [_file_hash(row.get(k)) for k in ("b1000", "b0", "flair", "lesion_mask", "adc")]
    return content_key("|".join(parts))


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v)) and str(v) != ""


def hemisphere_labels(lesion: np.ndarray | None, side: str) -> tuple[int, int, str]:
    """(left, right, source): from the lesion mask on the target grid when known, else the side."""
    if lesion is not None and lesion.any():
        n_left, n_right = int(lesion[:steps.MIDLINE].sum()), int(lesion[steps.MIDLINE:].sum())
        total = n_left + n_right
        pos = [n >= max(3, MIN_LESION_FRACTION * total) for n in (n_left, n_right)]
        return int(pos[0]), int(pos[1]), "lesion mask"
    side = str(side).lower()
    return int(side in ("left", "both")), int(side in ("right", "both")), "manifest stroke_side"


def _load_inputs(row: dict) -> dict:
    """Step 0: the patient's images (b0 derived from b1000 and ADC when only those were acquired)."""
    out = {"b1000": steps.load_volume(row["b1000"], "b1000", pick="b1000")}
    if _present(row.get("b0")):
        out["b0"], out["b0_source"] = steps.load_volume(row["b0"], "b0", pick="b0"), "acquired"
    elif _present(row.get("adc")):
        adc_img = steps.load_volume(row["adc"], "adc")
        b = steps.sidecar_b_value(Path(row["b1000"]))
        out["b0"] = steps.derive_b0(out["b1000"], adc_img, b)
        out["b0_source"] = f"derived: b1000 * exp({b:g} s/mm2 * ADC)"
    else:
        raise PatientError("load", "no b0 and no adc to derive it from")
    out["flair"] = steps.load_volume(row["flair"], "flair")
    if out["b0"].shape != out["b1000"].shape:
        raise PatientError("load", f"b0 grid {out['b0'].shape} differs from b1000 grid {out['b1000'].shape}")
    out["lesion"] = steps.load_volume(row["lesion_mask"], "lesion_mask") if _present(row.get("lesion_mask")) else None
    return out


def _register(b0, flair, tpl) -> tuple:
    """Steps 3-4: b0 (T2w) to the T2w MNI head template (affine), the template's brain mask carried
    back into b0's space, and FLAIR's own affine into the same space. Returns (tx, M, mask, M_flair)."""
    step = "register"
    try:
        tx = steps.register_to_template(b0, tpl)
        M = steps.affine_matrix(tx)
        step = "skull_strip"
        mask = steps.skull_strip(b0, tpl, tx)
        steps.check_registration(M, _volume_ml(mask))
        # b1000 shares b0's acquisition: same transform. FLAIR has its own grid and pose: its own
        # affine registration into the registered b0's (template) space, started from b0's
        # transform. (A rigid FLAIR -> b0 registration had a biased optimum, 2-8 mm off.)
        step = "coregister"
        M_flair = steps.affine_matrix(steps.register_to_template(flair, tpl, initial=M))
    except PatientError:
        raise
    except Exception as e:  # ITK raises RuntimeError on divergence or empty overlap
        raise PatientError(step, f"registration failed: {e}".splitlines()[0]) from None
    return tx, M, mask, M_flair


def _mask_brain(vols: dict, tpl) -> np.ndarray:
    """The second brain masking, on the registered volumes (zeroes everything outside it, in place)."""
    brain = tpl.target_mask & (vols["b0"] > 0.05 * np.percentile(vols["b0"][tpl.target_mask], 50))
    for k in vols:
        vols[k] = np.where(brain, np.clip(vols[k], 0, None), 0).astype(np.float32)
        if not vols[k][brain].any():
            raise PatientError("mask", f"{k} is empty inside the brain after registration")
    return brain


def process_patient(row: dict) -> dict:
    """Steps 1-5 and the second brain masking for one patient. Returns arrays and metadata."""
    t0 = time.perf_counter()
    tpl = steps.load_template()
    img = _load_inputs(row)

    # step 1, N4: b1000 is corrected with b0's field (same acquisition, same coil); step 2, reorient
    b0, log_bias = steps.n4(steps.to_sitk(img["b0"]))
    b1000 = steps.apply_bias(steps.to_sitk(img["b1000"]), log_bias)
    flair, _ = steps.n4(steps.to_sitk(img["flair"]))
    b0, b1000, flair = steps.reorient(b0), steps.reorient(b1000), steps.reorient(flair)
    tx, M, mask, M_flair = _register(b0, flair, tpl)

    # step 5: resample onto the 224 x 224 x 26 target grid
    vols = {
        "b1000": steps.to_array(steps.resample(b1000, tpl.target, tx)),
        "b0": steps.to_array(steps.resample(b0, tpl.target, tx)),
        "flair": steps.to_array(steps.resample(flair, tpl.target, steps.matrix_transform(M_flair))),
    }
    lesion = None
    if img["lesion"] is not None:
        les = steps.reorient(steps.to_sitk(img["lesion"]))
        lesion = steps.to_array(steps.resample(les, tpl.target, tx)) > 0.5
    corr = steps.template_correlation(vols["b0"], tpl)
    if corr < steps.MIN_TEMPLATE_CORRELATION:
        raise PatientError("register", f"registered b0 correlates {corr:.2f} with the template "
                                       f"(< {steps.MIN_TEMPLATE_CORRELATION}): registration failed its sanity check")
    brain = _mask_brain(vols, tpl)

    left, right, label_source = hemisphere_labels(lesion, row.get("stroke_side", ""))
    meta = {
        "b0_source": img["b0_source"],
        "tx_template_to_dwi_lps": M.tolist(),
        "tx_template_to_flair_lps": M_flair.tolist(),
        "brain_ml_native": _volume_ml(mask),
        "template_correlation": corr,
        "brain_ml_target": float(brain.sum() * abs(np.linalg.det(tpl.target_affine[:3, :3])) / 1000),
        "label_left": left, "label_right": right, "label_source": label_source,
        "lesion_voxels_left": int(lesion[:steps.MIDLINE].sum()) if lesion is not None else None,
        "lesion_voxels_right": int(lesion[steps.MIDLINE:].sum()) if lesion is not None else None,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    arrays = {"volume": np.stack([vols[k] for k in CHANNELS]).astype(np.float16), "brain": brain}
    if lesion is not None:
        arrays["lesion"] = lesion
    # native masks for skull-stripping QC (small, uint8)
    arrays["mask_native"] = steps.to_array(mask).astype(np.uint8)
    arrays["mask_native_affine"] = _ras_affine(mask)
    return {"arrays": arrays, "meta": meta}


def _volume_ml(mask) -> float:
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(mask)
    return float(arr.sum() * np.prod(mask.GetSpacing()) / 1000)


def _ras_affine(img) -> np.ndarray:
    from torchio.data.io import sitk_to_nib

    return sitk_to_nib(img)[1]


def patient_file(cache_dir, pid: str, suffix: str) -> Path:
    """``cache_dir/patients/<pid><suffix>``; ValueError for an unsafe id or a path leaving that folder."""
    return PreprocessCache(cache_dir).patient_file(pid, suffix)


def run_patient(row: dict, cache_dir: str) -> Outcome:
    """Worker: process one patient unless its cache is complete; never raises (an unsafe id is a
    failure at step ``manifest``, and nothing is written)."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # one patient per core
    pid = row["patient_id"]
    try:
        npz, meta_path = patient_file(cache_dir, pid, ".npz"), patient_file(cache_dir, pid, ".json")
    except ValueError as e:
        return Outcome(str(pid), False, step="manifest", reason=str(e))
    npz.parent.mkdir(parents=True, exist_ok=True)
    key = _cache_key(row)
    if (meta := cached(meta_path, key, [npz], field="cache_key")) is not None:
        return Outcome(pid, True, cached=True, seconds=meta.get("seconds", 0.0), meta=meta)
    t0 = time.perf_counter()
    try:
        out = process_patient(row)
    except PatientError as e:
        return Outcome(pid, False, step=e.step, reason=e.reason, seconds=time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - an unexpected failure must not stop the cohort
        where = traceback.extract_tb(e.__traceback__)[-1]
        return Outcome(pid, False, step="internal", seconds=time.perf_counter() - t0,
                       reason=f"{type(e).__name__}: {e} ({Path(where.filename).name}:{where.lineno})")
    meta = dict(out["meta"], cache_key=key, patient_id=pid, pipeline_version=PIPELINE_VERSION)
    with atomic_path(npz) as tmp:
        np.savez_compressed(tmp, **out["arrays"])
    write_text(meta_path, json.dumps(meta, indent=1))  # written last: marks completion
    return Outcome(pid, True, seconds=meta["seconds"], meta=meta)


@dataclass
class CohortRun:
    outcomes: list[Outcome]
    seconds: float

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def summary(self) -> str:
        ok = [o for o in self.outcomes if o.ok]
        cached = sum(o.cached for o in ok)
        lines = [f"preprocessed {len(ok)}/{len(self.outcomes)} patients ({cached} from cache) in {self.seconds:.0f} s"]
        if self.failures:
            lines.append(f"{len(self.failures)} failed:")
            lines += [f"  patient {o.patient_id}, step {o.step}: {o.reason}" for o in self.failures]
        return "\n".join(lines)


def preprocess_cohort(cohort_dir, cache_dir, jobs: int = -1, progress: bool = True,
                      ids: list[str] | None = None, data_roots=()) -> CohortRun:
    """Preprocess every patient of a cohort (or those in ``ids``); failures do not stop the others.

    Each patient is cached by content (its images, stroke side and the pipeline version) and skipped
    when its cache is current, so an interrupted run resumes where it stopped.

    Args:
        cohort_dir: a cohort folder holding ``manifest.csv``, or a manifest CSV.
        cache_dir: where the processed patients (``patients/<id>.npz`` and ``.json``) and
            ``failures.csv`` are written.
        jobs: worker processes (-1: all cores).
        progress: show a progress bar.
        ids: only these patients (default: all).
        data_roots: folders the manifest's image paths may point into besides its own folder.

    Returns:
        A :class:`CohortRun`: one outcome per patient (ok, cached, or the step and reason it failed).

    Raises:
        ValueError: before any work, listing patient and problem, when a patient id is not a safe
            file name or a path cell leads outside the data roots (:func:`tss.manifest.require_safe`).
            The images themselves are checked per patient as they load.
    """
    t0 = time.perf_counter()
    manifest.require_safe(cohort_dir, data_roots, action="preprocessing")
    cohort = manifest.load_cohort(cohort_dir, check=False)
    rows = cohort.table.to_dict("records")
    if ids is not None:
        rows = [r for r in rows if r["patient_id"] in set(ids)]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    done = map_patients(partial(run_patient, cache_dir=str(cache_dir)), rows, jobs=jobs, desc="preprocessing",
                        progress=progress)
    # run_patient reports a patient's failure itself; a worker that died anyway is one more failure
    outcomes = [Outcome(r.item["patient_id"], ok=False, step="worker", reason=r.error) if isinstance(r, Failed) else r
                for r in done]
    fails = pd.DataFrame([{"patient_id": o.patient_id, "step": o.step, "reason": o.reason}
                          for o in outcomes if not o.ok], columns=["patient_id", "step", "reason"])
    fails.to_csv(PreprocessCache(cache_dir).failures_csv, index=False)
    return CohortRun(outcomes, time.perf_counter() - t0)


def load_patient(cache_dir, pid: str) -> dict:
    """One patient's cached arrays (volume float16 (3, 224, 224, 26) RAS order, brain, lesion)."""
    return PreprocessCache(cache_dir).load_patient(pid)


# ------------------------------------------------------------------------------------------------
# normalisation and hemispheres


def learn_landmarks(volume: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """Histogram-standardisation landmarks (torchio, Nyul & Udupa) of a reference study, per channel."""
    import tempfile

    import nibabel as nib
    import torchio as tio

    out = {}
    with tempfile.TemporaryDirectory() as d:
        mpath = Path(d) / "mask.nii.gz"
        nib.save(nib.Nifti1Image(brain.astype(np.uint8), np.eye(4)), mpath)
        for c, name in enumerate(CHANNELS):
            ipath = Path(d) / f"{name}.nii.gz"
            nib.save(nib.Nifti1Image(volume[c].astype(np.float32), np.eye(4)), ipath)
            out[name] = tio.HistogramStandardization.train([ipath], mask_path=[mpath], progress=False)
    return out


def normalise(volume: np.ndarray, brain: np.ndarray, landmarks: dict[str, np.ndarray]) -> np.ndarray:
    """Histogram-match each channel to the reference landmarks (torchio), then scale to [0, 1]."""
    import torch
    import torchio as tio

    affine = np.eye(4)
    subject = tio.Subject(
        brain=tio.LabelMap(tensor=torch.from_numpy(brain[None].astype(np.uint8)), affine=affine),
        **{n: tio.ScalarImage(tensor=torch.from_numpy(volume[c][None].astype(np.float32)), affine=affine)
           for c, n in enumerate(CHANNELS)})
    std = tio.HistogramStandardization(landmarks, masking_method="brain")(subject)
    out = np.stack([std[n].data[0].numpy() for n in CHANNELS])
    out = np.clip(out / SCALE_CAP, 0, 1) * brain[None]
    return out.astype(np.float32)


def hemispheres(volume: np.ndarray) -> np.ndarray:
    """(3, X=224, Y=224, Z=26) RAS volume -> (2, 3, 26, 224, 112): [left, right flipped onto left].

    Channel, slice (z), anterior-posterior (y), left-right half (x): both halves run from the
    lateral edge (index 0) to the midline (index 111), so mirrored structures share positions.
    """
    left = volume[:, :steps.MIDLINE]  # x from -98 mm (lateral) to the midline
    right = volume[:, steps.MIDLINE:][:, ::-1]  # flipped: lateral first
    return np.stack([h.transpose(0, 3, 2, 1) for h in (left, right)])


def assemble(cache_dir, cohort_dir, reference: str | None = None, progress: bool = True) -> Path:
    """Normalise every preprocessed patient to a reference study and write the hemisphere array.

    Cached by the patients' cache keys, the reference and the pipeline version.

    Args:
        cache_dir: the folder :func:`preprocess_cohort` wrote.
        cohort_dir: the cohort folder or manifest CSV (for the splits and stroke sides).
        reference: patient id whose histogram landmarks every patient is matched to (default: the
            first training patient).
        progress: show a progress bar.

    Returns:
        The path of ``cohort/hemispheres.npy`` (N x 3 x 26 x 224 x 112, float16) under ``cache_dir``;
        its index table lies beside it (:func:`load_hemispheres` reads both).

    Raises:
        ValueError: the manifest's ids are not safe file names (its image paths are not read here).
    """
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    manifest.require_safe(cohort_dir, check_roots=False, action="assembling")
    table = manifest.load_cohort(cohort_dir, check=False).table
    done = [pid for pid in table["patient_id"] if patient_file(cache_dir, pid, ".json").exists()]
    if not done:
        raise RuntimeError("no preprocessed patient to assemble")
    keys = {pid: json.loads(patient_file(cache_dir, pid, ".json").read_text())["cache_key"] for pid in done}
    if reference is None:  # the first training patient (sorted ids), else the first patient
        train = sorted(p for p in done if table.set_index("patient_id").at[p, "split"] == "train")
        reference = (train or sorted(done))[0]
    key = content_key([PIPELINE_VERSION, reference, keys])
    store = PreprocessCache(cache_dir)
    store.cohort_dir.mkdir(exist_ok=True)
    arr_path, index_path, meta_path = store.hemispheres_npy, store.index_csv, store.cohort_json
    if cached(meta_path, key, [arr_path]) is not None:
        return arr_path

    ref = load_patient(cache_dir, reference)
    landmarks = learn_landmarks(ref["volume"].astype(np.float32), ref["brain"])
    rows = []
    info = table.set_index("patient_id")
    with atomic_path(arr_path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(2 * len(done), 3, 26, 224, 112))
        for i, pid in enumerate(tqdm(done, desc="normalising", unit="patient", disable=not progress)):
            p = load_patient(cache_dir, pid)
            arr[2 * i:2 * i + 2] = hemispheres(normalise(p["volume"].astype(np.float32), p["brain"], landmarks))
            m = p["meta"]
            for h, side in enumerate(("left", "right")):
                rows.append({"row": 2 * i + h, "patient_id": pid, "hemisphere": side,
                             "label": m[f"label_{side}"], "label_source": m["label_source"],
                             "split": info.at[pid, "split"], "onset_to_mri_min": info.at[pid, "onset_to_mri_min"]})
        arr.flush()
        del arr
    with atomic_path(index_path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    write_text(meta_path, json.dumps({"key": key, "reference": reference, "pipeline_version": PIPELINE_VERSION,
                                         "landmarks": {k: v.tolist() for k, v in landmarks.items()},
                                         "scale_cap": SCALE_CAP, "channels": CHANNELS}, indent=1))
    return arr_path


def load_hemispheres(cache_dir, mmap: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """The assembled cohort: (array (n_hemispheres, 3, 26, 224, 112) float16, index table)."""
    return PreprocessCache(cache_dir).load_hemispheres(mmap)
