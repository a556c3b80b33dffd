"""Physics-based synthetic stroke cohort on MNI152 anatomy (see ``../shared/DESIGN.md``).

``generate(out, n, seed)`` writes a cohort folder in the manifest layout::

    out/manifest.csv                     the cohort manifest (tss.manifest schema)
    out/generator.json                   every generator parameter, seed, n, timings, oracle AUC
    out/latent.csv                       the generator's truth per patient (not for models)
    out/sub-0001/dwi/sub-0001_acq-b1000_dwi.nii.gz, ..._acq-b0_dwi.nii.gz
    out/sub-0001/anat/sub-0001_FLAIR.nii.gz
    out/sub-0001/sub-0001_synth.json     per-patient truth (pose, grids, measured ratios) + cache key
    out/derivatives/lesion_masks/sub-0001_space-dwi_mask.nii.gz

Deterministic for a seed whatever the number of workers; a patient whose files and cache key
exist is not generated again, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from tss import manifest as mf
from tss import paths as safe_paths
from tss.atomic import atomic_path, cached, content_key, write_text
from tss.parallel import Failed, map_patients
from tss.profiles import DEFAULT_VARIANT
from tss.synth.acquire import render_patient
from tss.synth.cohort import (
    oracle_scores,
    population_oracle_auc,
    sample_patients,
    simulate_readers,
)
from tss.synth.params import GENERATOR_VERSION, NEUTRAL, PARAMS, as_records, overrides, param, using
from tss.template import load_anatomy

__all__ = ["generate", "GenerateResult", "load_latent", "patient_paths", "PARAMS", "param",
           "GENERATOR_VERSION"]

_PLAN_COLUMNS = ["patient_id", "onset_to_mri_min", "age", "territory", "stroke_side", "lesion_ml_planned",
                 "adc_drop", "field_T", "latent_t2_increase"]


@dataclass(frozen=True)
class GenerateResult:
    root: Path
    n_patients: int
    n_generated: int
    n_cached: int
    seconds: float


def patient_paths(pid: str) -> dict[str, str]:
    """Manifest-relative paths of one synthetic patient's files (ValueError for an id that is not
    a safe file name, :func:`tss.paths.check_id`)."""
    safe_paths.check_id(pid)
    return {
        "b1000": f"{pid}/dwi/{pid}_acq-b1000_dwi.nii.gz",
        "b0": f"{pid}/dwi/{pid}_acq-b0_dwi.nii.gz",
        "flair": f"{pid}/anat/{pid}_FLAIR.nii.gz",
        "lesion_mask": f"derivatives/lesion_masks/{pid}_space-dwi_mask.nii.gz",
        "truth": f"{pid}/{pid}_synth.json",
    }


def _cache_key(plan: dict, seed: int, index: int) -> str:
    image_params = [r for r in as_records() if r["group"] != "readers"  # readers don't touch images
                    and not (r["name"] in NEUTRAL and r["value"] == NEUTRAL[r["name"]])]
    return content_key({"v": GENERATOR_VERSION, "seed": seed, "index": index, "params": image_params, "plan": plan})


def _save_nifti(arr: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(arr, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)  # scanner coordinates
    img.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _render_indexed(item: tuple[int, dict], seed: int, root: str, variant: dict | None = None) -> tuple[dict, bool]:
    index, plan = item
    with using(variant or {}):  # a worker process starts with the default parameters: it gets the variant's
        return _render_one(plan, seed, index, root)


def _render_one(plan: dict, seed: int, index: int, root: str) -> tuple[dict, bool]:
    """Worker: render and write one patient unless its cached output is complete."""
    root = Path(root)
    pid = plan["patient_id"]
    paths = {k: safe_paths.inside(root, v) for k, v in patient_paths(pid).items()}
    key = _cache_key({k: plan[k] for k in _PLAN_COLUMNS}, seed, index)
    images = [paths[k] for k in ("b1000", "b0", "flair", "lesion_mask")]
    if (truth := cached(paths["truth"], key, images, field="cache_key")) is not None:
        return truth, True

    anat = load_anatomy()
    t0 = time.perf_counter()
    out = render_patient(plan, seed, index, anat)
    for name in ("b1000", "b0", "flair", "lesion_mask"):
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        _save_nifti(*out["images"][name], paths[name])
    truth = dict(out["truth"], cache_key=key, render_seconds=round(time.perf_counter() - t0, 3))
    write_text(paths["truth"], json.dumps(truth, indent=1))  # written last: marks completion
    return truth, False


def cohort_variant(root: str | Path) -> str | None:
    """The variant (:data:`tss.synth.params.VARIANTS`) a synthetic cohort folder was generated as;
    None where the folder holds no generated cohort. Cohorts written before variants existed are the
    first one, "loud"."""
    meta = Path(root) / "generator.json"
    return json.loads(meta.read_text()).get("variant", "loud") if meta.exists() else None


def generate(out: str | Path, n: int = 422, seed: int = 0, jobs: int = -1, progress: bool = True,
             variant: str = DEFAULT_VARIANT) -> GenerateResult:
    """Generate (or resume) a synthetic cohort of ``n`` patients in ``out``.

    Each patient is cached by its plan, the seed, the generator version and the parameters of its
    variant: a rerun renders only what is missing or changed. A folder holds one variant: generating
    another into it raises ``FileExistsError``.

    Args:
        out: the cohort folder: ``manifest.csv``, ``latent.csv``, ``generator.json`` and one folder
            of NIfTI images per patient (BIDS-like).
        n: number of patients (the paper's cohort: 422).
        seed: fixes every draw: patients, lesions, splits, readers.
        jobs: worker processes (-1: all cores).
        progress: show a progress bar.
        variant: which named cohort (:data:`tss.synth.params.VARIANTS`): the parameters it replaces.

    Returns:
        A :class:`GenerateResult`: the folder, how many patients were rendered and how many reused,
        and the wall time.
    """
    root = Path(out)
    if (root / mf.MANIFEST_NAME).exists() and not (root / "generator.json").exists():
        raise FileExistsError(f"{root} holds a cohort this generator did not write ({mf.MANIFEST_NAME} without "
                              "generator.json): refusing to write synthetic patients into it and replace its manifest")
    replaced = overrides(variant)  # ValueError for an unknown variant, before anything is written
    if (there := cohort_variant(root)) not in (None, variant):
        raise FileExistsError(f"{root} holds the {there!r} cohort: refusing to render the {variant!r} one over it "
                              "(give each variant its own folder)")
    with using(replaced):
        return _generate(root, n, seed, jobs, progress, variant, replaced)


def _generate(root: Path, n: int, seed: int, jobs: int, progress: bool, variant: str, replaced: dict) -> GenerateResult:
    t0 = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    plans = sample_patients(n, seed)
    records = plans.to_dict("records")

    render = partial(_render_indexed, seed=seed, root=str(root), variant=replaced)
    done = map_patients(render, list(enumerate(records)), jobs=jobs,
                        desc="synthetic patients", progress=progress)
    failed = [r for r in done if isinstance(r, Failed)]
    if failed:  # the others are written and cached: a rerun renders only these
        raise RuntimeError("; ".join(f"patient {f.item[1]['patient_id']}: rendering failed ({f.error})" for f in failed))
    truths = {truth["patient_id"]: truth for truth, _ in done}
    n_cached = sum(cached for _, cached in done)

    measured = pd.DataFrame([{k: truths[pid][k] for k in
                              ("patient_id", "lesion_ml", "lesion_voxels_dwi", "dwi_ratio", "b0_ratio",
                               "flair_ratio", "storage_orientation", "head_scale", "atrophy")}
                             for pid in plans["patient_id"]])
    latent = plans.merge(measured, on="patient_id")
    latent["oracle_score"] = oracle_scores(latent)
    readers = simulate_readers(latent, seed)
    latent = pd.concat([latent, readers], axis=1)

    rows = []
    for r in latent.itertuples():
        p = patient_paths(r.patient_id)
        rows.append({"patient_id": r.patient_id, "b1000": p["b1000"], "b0": p["b0"], "flair": p["flair"],
                     "lesion_mask": p["lesion_mask"], "onset_to_mri_min": r.onset_to_mri_min,
                     "stroke_side": r.stroke_side, "split": r.split, "reader1": r.reader1,
                     "reader2": r.reader2, "reader3": r.reader3, "age": r.age, "sex": r.sex,
                     "nihss": r.nihss})
    mf.write_manifest(pd.DataFrame(rows), root / mf.MANIFEST_NAME)
    with atomic_path(root / "latent.csv") as tmp:
        latent.to_csv(tmp, index=False)

    seconds = time.perf_counter() - t0
    meta = {
        "generator_version": GENERATOR_VERSION, "variant": variant, "n": n, "seed": seed,
        "jobs": jobs if jobs > 0 else os.cpu_count(), "seconds": round(seconds, 1),
        "n_generated": n - n_cached, "n_cached": n_cached,
        # core-seconds to render and write one patient (from each patient's truth; survives cache reuse)
        "render_seconds_per_patient_median": float(np.median([t.get("render_seconds", np.nan) for t in truths.values()])),
        "render_core_seconds_total": float(np.nansum([t.get("render_seconds", np.nan) for t in truths.values()])),
        "population_oracle_auc_tss_lt_4_5h": round(population_oracle_auc(), 4),
        "parameters": as_records(),
    }
    write_text(root / "generator.json", json.dumps(meta, indent=1, default=list))
    return GenerateResult(root, n, n - n_cached, n_cached, seconds)


def load_latent(root: str | Path) -> pd.DataFrame:
    """The generator's per-patient truth table (``latent.csv``)."""
    return pd.read_csv(Path(root) / "latent.csv")
