"""Lee et al. (2020, Stroke 51:860, "Machine learning approach to identify stroke within 4.5 hours"):
a threshold ROI, radiomic features, classical classifiers. The paper (section 3) applies it to its
cohort and notes that only 221 of 422 patients had an ROI large enough for features.

Per patient, on the registered, bias-corrected (not histogram-normalised) volume of
:func:`tss.preprocess.load_patient`:

1. ADC = ln(S_b0 / S_b) / b, in 1e-3 mm²/s (NaN where a signal is not positive);
2. infarct ROI = brain ∩ stroke hemisphere(s) ∩ {ADC < 0.62} ∩ {DWI > mean + k·sd of the normal
   parenchyma of the other hemisphere}, components under :data:`MIN_COMPONENT_ML` removed. The
   lesion mask is never used to build it (only to report its Dice as a check);
3. ratio maps: DWI, ADC and FLAIR divided by their mean over the mirrored ROI (contralateral tissue);
4. radiomics inside the ROI on each ratio map: first-order statistics, GLCM (scikit-image), GLRLM,
   uniform LBP histogram (scikit-image), and the ROI volume;
5. a univariate filter (SelectKBest, f_classif, k by cross-validation on train) before logistic
   regression, an RBF SVM and a random forest; the one with the best validation AUC is reported;
6. patients whose ROI is under :data:`MIN_ROI_ML` are "not usable": they get no prediction.

:func:`run` writes ``features.csv``, ``predictions.csv``, ``models.csv`` and ``summary.json``;
a rerun with the same content key reads them back.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tss import manifest, stats
from tss.atomic import atomic_path, cached, content_key, write_text
from tss.parallel import Failed, map_patients
from tss.preprocess import PreprocessCache, target_affine
from tss.task import Task

LEE_VERSION = "1"
B_VALUE = 1000                 # s/mm², the DWI b-value of the cohorts here
ADC_THRESHOLD = 0.62           # 1e-3 mm²/s: Lee et al.'s infarct threshold (620e-6 mm²/s)
TISSUE_ADC_MAX = 1.5           # 1e-3 mm²/s: parenchyma for the DWI reference statistics (CSF is ~3)
K_DWI = 1.0                    # DWI hyperintense: > mean + K_DWI sd of contralateral parenchyma
MIN_COMPONENT_ML = 0.1         # ROI components smaller than this are noise (~15 voxels of 6.6 mm³)
MIN_ROI_ML = 1.0               # usable: texture matrices need >= ~150 voxels (1 mL / 6.6 mm³ each)
MIN_REF_VOXELS = 20            # mirrored ROI smaller than this: use the contralateral parenchyma
RATIO_RANGE = (0.0, 3.2)       # discretisation of ratio maps: fixed bin width 0.05 (IBSI "FBS")
N_LEVELS = 64
LBP_POINTS, LBP_RADIUS = 8, 1  # uniform LBP: LBP_POINTS + 2 codes
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
GLRLM_FEATURES = ("sre", "lre", "gln", "rln", "rp")
ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
MAPS = ("dwi", "adc", "flair")
K_GRID = (5, 10, 20, 40)       # + "all": the univariate filter's candidate sizes
N_TREES = 300                  # random forest size
MODELS = ("logistic", "svm", "random_forest")  # ties in validation AUC go to the earlier one
META_COLUMNS = ("patient_id", "error", "roi_sides", "ref_fallback", "lesion_ml", "roi_dice")


def voxel_ml() -> float:
    """Volume of one voxel of the registered grid (:func:`tss.preprocess.target_affine`), in mL."""
    return float(abs(np.linalg.det(target_affine()[:3, :3])) / 1000)


# ------------------------------------------------------------------------------------------------
# maps and ROI


def adc_map(b0: np.ndarray, dwi: np.ndarray, b_value: float = B_VALUE) -> np.ndarray:
    """ADC = ln(S_0 / S_b) / b in 1e-3 mm²/s (b in s/mm²); NaN where either signal is not a
    positive finite number (background, masked voxels)."""
    b0, dwi = np.asarray(b0, np.float64), np.asarray(dwi, np.float64)
    ok = np.isfinite(b0) & np.isfinite(dwi) & (b0 > 0) & (dwi > 0)
    out = np.full(b0.shape, np.nan)
    out[ok] = np.log(b0[ok] / dwi[ok]) / b_value * 1e3
    return out.astype(np.float32)


def mirror(a: np.ndarray) -> np.ndarray:
    """Left-right mirror of an (X, Y, Z) RAS array about the grid's mid-sagittal plane (between
    x = X/2 - 1 and X/2, as in :func:`tss.preprocess.hemispheres`)."""
    return a[::-1]


def hemisphere_mask(shape, left: bool, right: bool) -> np.ndarray:
    """Voxels of the named hemispheres (RAS: x < X/2 is left); neither named: the whole grid."""
    m = np.zeros(shape, bool)
    mid = shape[0] // 2
    m[:mid] = left
    m[mid:] = right
    return m if m.any() else np.ones(shape, bool)


def infarct_roi(dwi: np.ndarray, adc: np.ndarray, brain: np.ndarray, region: np.ndarray,
                vox_ml: float, k: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lee's threshold ROI inside ``brain & region`` (the stroke hemisphere(s)).

    A voxel is infarct when ADC < :data:`ADC_THRESHOLD` and DWI > mean + k·sd of the reference
    parenchyma (brain voxels outside ``region`` with ADC < :data:`TISSUE_ADC_MAX`; the whole brain's
    parenchyma when ``region`` covers it); 3D components (26-connected) under
    :data:`MIN_COMPONENT_ML` are dropped. Returns (roi, reference parenchyma mask)."""
    from scipy import ndimage as ndi

    brain = brain.astype(bool)
    tissue = brain & (adc < TISSUE_ADC_MAX)  # NaN compares False
    ref = tissue & ~region
    if ref.sum() < MIN_REF_VOXELS:
        ref = tissue
    d = dwi[ref].astype(np.float64)
    k = K_DWI if k is None else k
    roi = brain & region & (adc < ADC_THRESHOLD) & (dwi > d.mean() + k * d.std())
    lab, n = ndi.label(roi, np.ones((3, 3, 3), bool))
    if n:
        sizes = np.bincount(lab.ravel())[1:] * vox_ml
        roi = np.isin(lab, 1 + np.flatnonzero(sizes >= MIN_COMPONENT_ML))
    return roi, ref


def ratio_maps(maps: np.ndarray, roi: np.ndarray, brain: np.ndarray,
               fallback: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Each map (C, X, Y, Z) divided by its mean over the mirrored ROI (inside the brain, outside
    the ROI): relative signal against the contralateral homologous tissue. When that region holds
    fewer than :data:`MIN_REF_VOXELS` usable voxels, ``fallback`` (normal parenchyma) is the
    reference. Returns (ratio maps float32, whether the fallback was used)."""
    ref = mirror(roi) & brain.astype(bool) & ~roi
    out = np.empty(maps.shape, np.float32)
    used_fallback = False
    for c, m in enumerate(maps):
        vals = m[ref]
        vals = vals[np.isfinite(vals)]
        if vals.size < MIN_REF_VOXELS and fallback is not None:
            vals = m[fallback]
            vals = vals[np.isfinite(vals)]
            used_fallback = True
        mean = float(vals.mean()) if vals.size else float("nan")
        out[c] = m / mean if mean > 0 else np.nan
    return out, used_fallback


# ------------------------------------------------------------------------------------------------
# features


def quantise(x: np.ndarray, n_levels: int = N_LEVELS, lo: float = RATIO_RANGE[0],
             hi: float = RATIO_RANGE[1]) -> np.ndarray:
    """Fixed-bin-width grey levels 1..n_levels of ``x`` over [lo, hi] (values outside are clipped;
    NaN becomes level 1). Level 0 is left free to mark voxels outside the ROI."""
    width = (hi - lo) / n_levels
    q = np.floor((np.nan_to_num(x, nan=lo) - lo) / width).astype(np.int64)
    return (np.clip(q, 0, n_levels - 1) + 1).astype(np.uint8)


def first_order(values: np.ndarray) -> dict[str, float]:
    """Intensity statistics of the ROI values: mean, sd (population), percentiles, skewness,
    kurtosis (Pearson, normal = 3), entropy (bits, of the :func:`quantise` histogram) and energy
    (sum of squares, as pyradiomics). A constant ROI gets skewness 0 and kurtosis 3 (those of a
    normal distribution; its moments are undefined); an empty one gives NaN."""
    from scipy import stats

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return dict.fromkeys(("mean", "sd", "p10", "p25", "p50", "p75", "p90", "skewness", "kurtosis",
                              "entropy", "energy"), float("nan"))
    p = np.bincount(quantise(v).ravel(), minlength=N_LEVELS + 1)[1:] / v.size
    p = p[p > 0]
    flat = v.std() == 0
    out = {"mean": v.mean(), "sd": v.std()}
    out.update({f"p{q}": np.percentile(v, q) for q in (10, 25, 50, 75, 90)})
    out["skewness"] = 0.0 if flat else stats.skew(v)
    out["kurtosis"] = 3.0 if flat else stats.kurtosis(v, fisher=False)
    out["entropy"] = -(p * np.log2(p)).sum()
    out["energy"] = (v ** 2).sum()
    return {k: float(x) for k, x in out.items()}


def _slices(q: np.ndarray, mask: np.ndarray, margin: int = 0):
    """(quantised slice, mask slice) cropped to the ROI's bounding box in each axial slice."""
    for z in np.flatnonzero(mask.any(axis=(0, 1))):
        xs, ys = np.nonzero(mask[:, :, z])
        x0, x1 = max(xs.min() - margin, 0), xs.max() + 1 + margin
        y0, y1 = max(ys.min() - margin, 0), ys.max() + 1 + margin
        yield q[x0:x1, y0:y1, z], mask[x0:x1, y0:y1, z]


def glcm_matrix(q: np.ndarray, mask: np.ndarray, n_levels: int = N_LEVELS) -> np.ndarray:
    """Grey-level co-occurrence counts (levels, levels, 1, angles) of the ROI: per axial slice
    (2D, distance 1, the four :data:`ANGLES`, symmetric), pairs with both voxels in the ROI,
    summed over slices (IBSI "2D, merged over slices")."""
    from skimage.feature import graycomatrix

    total = np.zeros((n_levels, n_levels, 1, len(ANGLES)), np.float64)
    for qs, ms in _slices(q, mask):
        img = np.where(ms, qs, 0).astype(np.uint8)
        total += graycomatrix(img, [1], list(ANGLES), levels=n_levels + 1, symmetric=True)[1:, 1:]
    return total


def glcm_features(q: np.ndarray, mask: np.ndarray, n_levels: int = N_LEVELS) -> dict[str, float]:
    """scikit-image ``graycoprops`` of :func:`glcm_matrix`, averaged over the angles that have pairs."""
    from skimage.feature import graycoprops

    P = glcm_matrix(q, mask, n_levels)
    has = P.sum(axis=(0, 1, 2)) > 0
    if not has.any():
        return dict.fromkeys((p.lower() for p in GLCM_PROPS), float("nan"))
    return {p.lower(): float(graycoprops(P[..., has], p).mean()) for p in GLCM_PROPS}


# No maintained library installable here computes GLRLM (pyradiomics does not build; mirp drags ITK).
def glrlm_matrix(q: np.ndarray, mask: np.ndarray, direction: int, n_levels: int = N_LEVELS) -> np.ndarray:
    """Grey-level run-length counts R[level - 1, length - 1] of the ROI in one in-plane direction
    (0: along x, 1: diagonal, 2: along y, 3: anti-diagonal), per axial slice, summed over slices.
    A run is a maximal line of equal grey level inside the ROI."""
    runs_level, runs_len = [], []
    for qs, ms in _slices(q, mask):
        img = np.where(ms, qs, 0).astype(np.int64)
        if direction == 0:
            lines = list(img.T)
        elif direction == 2:
            lines = list(img)
        else:
            a = img if direction == 1 else img[:, ::-1]
            lines = [np.diagonal(a, o) for o in range(-a.shape[0] + 1, a.shape[1])]
        seq = np.concatenate([np.append(line, 0) for line in lines])  # 0 separates the lines
        edges = np.flatnonzero(np.diff(np.concatenate(([-1], seq))) != 0)
        lengths = np.diff(np.append(edges, seq.size))
        levels = seq[edges]
        keep = levels > 0
        runs_level.append(levels[keep])
        runs_len.append(lengths[keep])
    size = max(q.shape[:2])
    R = np.zeros((n_levels, size), np.float64)
    if runs_level:
        np.add.at(R, (np.concatenate(runs_level) - 1, np.concatenate(runs_len) - 1), 1)
    return R


def glrlm_stats(R: np.ndarray) -> dict[str, float]:
    """Run-length features of one matrix (IBSI definitions): short/long run emphasis, grey-level
    and run-length non-uniformity (normalised by the number of runs), run percentage."""
    n_runs = R.sum()
    if n_runs == 0:
        return dict.fromkeys(GLRLM_FEATURES, float("nan"))
    j = np.arange(1, R.shape[1] + 1, dtype=np.float64)
    return {"sre": float((R / j ** 2).sum() / n_runs), "lre": float((R * j ** 2).sum() / n_runs),
            "gln": float((R.sum(axis=1) ** 2).sum() / n_runs), "rln": float((R.sum(axis=0) ** 2).sum() / n_runs),
            "rp": float(n_runs / (R * j).sum())}


def glrlm_features(q: np.ndarray, mask: np.ndarray, n_levels: int = N_LEVELS) -> dict[str, float]:
    """:func:`glrlm_stats` per direction, averaged over the four directions."""
    per = [glrlm_stats(glrlm_matrix(q, mask, d, n_levels)) for d in range(4)]
    return {k: float(np.mean([p[k] for p in per])) for k in GLRLM_FEATURES}


def lbp_features(q: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Histogram (fractions) of rotation-invariant uniform LBP codes (scikit-image) at ROI pixels,
    per axial slice of the quantised map (neighbours outside the ROI count: the lesion border)."""
    from skimage.feature import local_binary_pattern

    n_codes = LBP_POINTS + 2
    hist = np.zeros(n_codes)
    for qs, ms in _slices(q, mask, margin=LBP_RADIUS):
        codes = local_binary_pattern(qs, LBP_POINTS, LBP_RADIUS, method="uniform")
        hist += np.bincount(codes[ms].astype(np.int64), minlength=n_codes)
    total = hist.sum()
    return {f"lbp{i}": float(h / total) if total else float("nan") for i, h in enumerate(hist)}


def texture_features(ratio: np.ndarray, roi: np.ndarray) -> dict[str, float]:
    """First-order, GLCM, GLRLM and LBP features of one ratio map (X, Y, Z) inside ``roi``."""
    q = quantise(ratio)
    out = first_order(ratio[roi])
    out.update({f"glcm_{k}": v for k, v in glcm_features(q, roi).items()})
    out.update({f"glrlm_{k}": v for k, v in glrlm_features(q, roi).items()})
    out.update(lbp_features(q, roi))
    return out


@functools.lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    one = list(texture_features(np.ones((4, 4, 1), np.float32), np.ones((4, 4, 1), bool)))
    return ("roi_ml",) + tuple(f"{m}_{k}" for m in MAPS for k in one)


def feature_names() -> list[str]:
    """The model's inputs, in column order."""
    return list(_names())


def patient_features(volume: np.ndarray, brain: np.ndarray, left: bool, right: bool,
                     lesion: np.ndarray | None = None, b_value: float = B_VALUE,
                     vox_ml: float | None = None) -> dict:
    """Features of one registered volume (3: DWI b, b0, FLAIR; X, Y, Z) whose stroke lies in the
    named hemisphere(s) (neither named: both are searched). Returns a flat dict: ``roi_ml``, the
    features of :func:`feature_names` (NaN when the ROI is empty) and checks (``roi_sides``,
    ``ref_fallback``, ``lesion_ml`` and ``roi_dice`` against ``lesion`` when given)."""
    vox_ml = voxel_ml() if vox_ml is None else vox_ml
    vol = np.asarray(volume, np.float32)
    brain = np.asarray(brain, bool)
    dwi, b0, flair = vol
    adc = adc_map(b0, dwi, b_value)
    region = hemisphere_mask(brain.shape, left, right)
    roi, ref = infarct_roi(dwi, adc, brain, region, vox_ml)
    out = {"roi_sides": "".join(s for s, on in (("L", left), ("R", right)) if on) or "LR",
           "ref_fallback": False, "roi_ml": float(roi.sum() * vox_ml)}
    if lesion is not None:
        lesion = np.asarray(lesion, bool)
        out["lesion_ml"] = float(lesion.sum() * vox_ml)
        denom = roi.sum() + lesion.sum()
        out["roi_dice"] = float(2 * (roi & lesion).sum() / denom) if denom else float("nan")
    names = feature_names()[1:]
    if not roi.any():
        out.update(dict.fromkeys(names, float("nan")))
        return out
    ratios, out["ref_fallback"] = ratio_maps(np.stack([dwi, adc, flair]), roi, brain, fallback=ref)
    for name, r in zip(MAPS, ratios):
        out.update({f"{name}_{k}": v for k, v in texture_features(r, roi).items()})
    return out


def extract_features(cache_dir, pid: str, b_value: float = B_VALUE) -> dict:
    """Features of one preprocessed patient of ``cache_dir`` (see :func:`patient_features`).

    Raises ValueError naming the patient when its data are missing or not finite, or when ``pid``
    is not a safe file name (:func:`tss.paths.id_path`: nothing outside the cache is read)."""
    store = PreprocessCache(cache_dir)
    if not store.has_patient(pid):
        raise ValueError(f"patient {pid}: not preprocessed (no {pid}.npz/.json in the cache)")
    p = store.load_patient(pid)
    vol, brain, meta = p.get("volume"), p.get("brain"), p["meta"]
    if vol is None or brain is None:
        raise ValueError(f"patient {pid}: cache lacks {'volume' if vol is None else 'brain'}")
    if vol.ndim != 4 or vol.shape[0] != 3 or vol.shape[1:] != brain.shape:
        raise ValueError(f"patient {pid}: volume {vol.shape} / brain {brain.shape} are not (3, X, Y, Z) / (X, Y, Z)")
    counts = (~np.isfinite(vol)).sum(axis=(1, 2, 3))
    bad = [f"{n} ({int(c)} voxels)" for n, c in zip(("DWI b1000", "b0", "FLAIR"), counts) if c]
    if bad:
        raise ValueError(f"patient {pid}: non-finite (NaN/inf) voxels in {', '.join(bad)}")
    if not brain.any():
        raise ValueError(f"patient {pid}: empty brain mask")
    out = patient_features(vol, brain, bool(meta.get("label_left")), bool(meta.get("label_right")),
                           lesion=p.get("lesion"), b_value=b_value)
    return {"patient_id": pid, **out}


def _extract_safe(cache_dir: str, pid: str, b_value: float) -> dict:
    try:
        return {**extract_features(cache_dir, pid, b_value), "error": ""}
    except ValueError as e:
        return {"patient_id": pid, "error": str(e)}
    except Exception as e:  # noqa: BLE001 - one patient's failure must not stop the others
        where = traceback.extract_tb(e.__traceback__)[-1]
        return {"patient_id": pid, "error": f"patient {pid}: {type(e).__name__}: {e} "
                                            f"({Path(where.filename).name}:{where.lineno})"}


def feature_table(cache_dir, manifest_table: pd.DataFrame, jobs: int = -1, progress: bool = True,
                  b_value: float = B_VALUE) -> pd.DataFrame:
    """Features of every patient of the manifest (parallel over patients), in manifest order.
    A patient that fails keeps its row with the reason in ``error`` and NaN features; the failures
    are also warned about, and the others continue."""
    pids = list(manifest_table["patient_id"])
    done = map_patients(functools.partial(_extract_safe, str(cache_dir), b_value=b_value), pids, jobs=jobs, desc="Lee features",
                        progress=progress)
    rows = [{"patient_id": r.item, "error": f"patient {r.item}: {r.error}"} if isinstance(r, Failed) else r for r in done]
    cols = list(META_COLUMNS) + feature_names()
    table = pd.DataFrame(rows).reindex(columns=cols)
    table["error"] = table["error"].fillna("")
    for msg in table["error"][table["error"] != ""]:
        warnings.warn(msg, stacklevel=2)
    return table


# ------------------------------------------------------------------------------------------------
# classifiers


def _estimator(name: str, seed: int):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    if name == "logistic":
        return LogisticRegression(C=1.0, max_iter=5000)
    if name == "svm":  # Platt-scaled probabilities (SVC(probability=True) is deprecated in sklearn 1.9)
        return CalibratedClassifierCV(SVC(kernel="rbf", C=1.0, random_state=seed), method="sigmoid", cv=3,
                                      ensemble=False)
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=N_TREES, random_state=seed, n_jobs=1)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def pipeline(name: str, seed: int = 0):
    """median imputation -> drop constant features -> StandardScaler -> SelectKBest(f_classif) -> model."""
    from sklearn.feature_selection import SelectKBest, VarianceThreshold, f_classif
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("impute", SimpleImputer(strategy="median")), ("variance", VarianceThreshold()),
                     ("scale", StandardScaler()), ("select", SelectKBest(f_classif, k="all")),
                     ("model", _estimator(name, seed))])


def fit_and_select(X: pd.DataFrame, y: np.ndarray, split: np.ndarray, seed: int = 0,
                   models: tuple[str, ...] = MODELS, jobs: int = 1) -> tuple[pd.DataFrame, str, object, str]:
    """Fit every model on the ``train`` rows, its k chosen by stratified CV AUC on train, and pick
    the model with the best ``val`` AUC (ties: the earlier in ``models``; no two-class validation
    set: the best CV AUC). Returns (table of models with k, cv/val/test AUC, chosen model name,
    its fitted pipeline, what the choice was based on)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    X = X.to_numpy(np.float64) if isinstance(X, pd.DataFrame) else np.asarray(X, np.float64)
    y, split = np.asarray(y).astype(int), np.asarray(split)
    tr = split == "train"
    counts = np.bincount(y[tr], minlength=2)
    if counts.min() == 0:
        raise ValueError(f"Lee baseline: the usable training patients hold one class only ({counts.tolist()})")
    with np.errstate(all="ignore"):
        n_var = int((np.nanstd(X[tr], axis=0) > 0).sum())
    grid = [k for k in K_GRID if k < n_var] + ["all"]
    rows, fitted = [], {}
    for name in models:
        if counts.min() >= 2:
            cv = StratifiedKFold(n_splits=min(5, int(counts.min())), shuffle=True, random_state=seed)
            search = GridSearchCV(pipeline(name, seed), {"select__k": grid}, scoring="roc_auc", cv=cv,
                                  n_jobs=jobs, error_score=np.nan)
            search.fit(X[tr], y[tr])
            model, k, cv_auc = search.best_estimator_, search.best_params_["select__k"], float(search.best_score_)
        else:  # too few of one class to cross-validate: keep every feature
            model, k, cv_auc = pipeline(name, seed).fit(X[tr], y[tr]), "all", float("nan")
        fitted[name] = model
        p = model.predict_proba(X)[:, 1]
        rows.append({"model": name, "k": k, "cv_auc": cv_auc,
                     **{f"{s}_auc": stats.auc_or_nan(y[split == s], p[split == s]) for s in ("train", "val", "test")},
                     **{f"n_{s}": int((split == s).sum()) for s in ("train", "val", "test")}})
    table = pd.DataFrame(rows)
    by = "val_auc" if table["val_auc"].notna().any() else "cv_auc"
    score = table[by].fillna(-np.inf).to_numpy()
    chosen = models[int(np.argmax(score))]  # argmax: first of ties
    table["chosen"] = table["model"] == chosen
    return table, chosen, fitted[chosen], by


# ------------------------------------------------------------------------------------------------
# the whole baseline


def _key(cache_dir, table: pd.DataFrame, seed: int, b_value: float) -> str:
    meta = PreprocessCache(cache_dir).cohort_json
    if not meta.exists():
        raise ValueError(f"no {meta.name} in {Path(cache_dir).name}/cohort: assemble the cohort first "
                         "(tss.preprocess.assemble)")
    labels = table[["patient_id", "split", "onset_to_mri_min"]].astype(str).to_numpy().tolist()
    constants = {k: v for k, v in globals().items() if k.isupper() and k != "META_COLUMNS"}  # as now set
    obj = [json.loads(meta.read_text())["key"], LEE_VERSION, constants, seed, b_value, labels]
    return content_key(obj)


def stored(out_dir) -> dict:
    """The summary of a finished run of :func:`run` in ``out_dir``, read back from its files alone
    (a clone with the committed results but without the processed images)."""
    out_dir = Path(out_dir)
    missing = [n for n in ("predictions.csv", "models.csv", "summary.json") if not (out_dir / n).exists()]
    if missing:
        raise FileNotFoundError(f"no stored Lee et al. baseline in {out_dir}: {', '.join(missing)} missing; "
                                f"run it where the processed cohort is (tss.baselines.lee.run)")
    return json.loads((out_dir / "summary.json").read_text())


def run(cache_dir, cohort_dir, out_dir, seed: int = 0, jobs: int = -1, progress: bool = True,
        b_value: float = B_VALUE) -> dict:
    """Lee et al.'s method on a preprocessed cohort. Writes to ``out_dir``:

    - ``features.csv``: one row per patient (checks, ``usable``, features);
    - ``predictions.csv``: patient_id, split, target (TSS < 4.5 h), prob (NaN where not usable),
      usable, model;
    - ``models.csv``: each classifier's k, CV / train / validation / test AUC on usable patients;
    - ``summary.json``: chosen model, its validation and test AUC, usable counts, runtime, ``key``.

    A ``summary.json`` with the same key (cohort cache key, code version and constants, seed, the
    manifest's splits and onset times) is read back instead of recomputing. Only these fixed names
    are written; a manifest whose patient ids are not safe file names is refused (ValueError)
    before anything is read or written.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    manifest.require_safe(cohort_dir, check_roots=False, action="the Lee baseline")
    table = manifest.load_cohort(cohort_dir, check=False).table
    key = _key(cache_dir, table, seed, b_value)
    files = {n: out_dir / n for n in ("features.csv", "predictions.csv", "models.csv", "summary.json")}
    if (summary := cached(files["summary.json"], key, files.values())) is not None:
        return summary
    out_dir.mkdir(parents=True, exist_ok=True)

    feats = feature_table(cache_dir, table, jobs=jobs, progress=progress, b_value=b_value)
    t_feat = time.perf_counter() - t0
    info = table.set_index("patient_id")
    feats.insert(1, "split", feats["patient_id"].map(info["split"]))
    feats.insert(2, "target", Task.TSS45.label(feats["patient_id"].map(info["onset_to_mri_min"])))
    feats.insert(3, "usable", (feats["error"] == "") & (feats["roi_ml"] >= MIN_ROI_ML))
    use = feats[feats["usable"]]
    names = feature_names()
    models, chosen, model, by = fit_and_select(use[names], use["target"].to_numpy(), use["split"].to_numpy(),
                                               seed=seed, jobs=jobs)
    prob = np.full(len(feats), np.nan)
    prob[feats["usable"].to_numpy()] = model.predict_proba(use[names].to_numpy(np.float64))[:, 1]
    preds = pd.DataFrame({"patient_id": feats["patient_id"], "split": feats["split"], "target": feats["target"],
                          "prob": prob, "usable": feats["usable"], "model": chosen})
    best = models.set_index("model").loc[chosen]
    splits = ("train", "val", "test")
    dice = feats.loc[feats["usable"], "roi_dice"].dropna()
    summary = {
        "key": key, "method": "Lee et al. 2020 (threshold ROI + radiomics + classical ML)", "version": LEE_VERSION,
        "seed": seed, "chosen_model": chosen, "selected_by": by,
        "k_features": best["k"] if best["k"] == "all" else int(best["k"]),
        **{f"{s}_auc": float(best[f"{s}_auc"]) for s in ("val", "test", "cv")},
        "n_usable": {s: int(use["split"].eq(s).sum()) for s in splits},
        "n_patients": {s: int(feats["split"].eq(s).sum()) for s in splits},
        "n_usable_positive": {s: int(use.loc[use["split"] == s, "target"].sum()) for s in splits},
        "min_roi_ml": MIN_ROI_ML, "adc_threshold": ADC_THRESHOLD, "k_dwi": K_DWI,
        "n_features": len(names), "roi_dice_median_usable": float(dice.median()) if len(dice) else None,
        "failures": [e for e in feats["error"] if e],
        "features_s": round(t_feat, 1), "runtime_s": round(time.perf_counter() - t0, 1),
    }
    for name, df in (("features.csv", feats), ("predictions.csv", preds), ("models.csv", models)):
        with atomic_path(files[name]) as tmp:
            df.to_csv(tmp, index=False)
    write_text(files["summary.json"], json.dumps(summary, indent=1, default=str))  # last: marks completion
    return summary


def settings_table(summary: dict) -> pd.DataFrame:
    """The baseline's run (``summary.json``) as a table a reader can scan: each setting and result
    with its name, rounded, and the usable patients per split; the cache key and version are left
    out (they are for the cache)."""
    usable, every = summary.get("n_usable", {}), summary.get("n_patients", {})
    rows = [("classifier chosen", f"{summary.get('chosen_model')} (best {summary.get('selected_by', 'val_auc')})"),
            ("features kept by the univariate filter", f"{summary.get('k_features')} of {summary.get('n_features')}"),
            ("ADC threshold of the ROI (x 10^-3 mm^2/s)", f"{summary.get('adc_threshold', np.nan):g}"),
            ("smallest usable ROI (mL)", f"{summary.get('min_roi_ml', np.nan):g}"),
            ("cross-validated AUC (train)", f"{summary.get('cv_auc', np.nan):.2f}"),
            ("validation AUC", f"{summary.get('val_auc', np.nan):.2f}"),
            ("test AUC", f"{summary.get('test_auc', np.nan):.2f}"),
            ("usable patients (train / val / test)", " / ".join(f"{usable.get(s, 0)} of {every.get(s, 0)}"
                                                                for s in ("train", "val", "test"))),
            ("ROI Dice with the true lesion (median, usable)", f"{summary.get('roi_dice_median_usable', np.nan):.2f}"),
            ("patients that failed", str(len(summary.get("failures", [])))),
            ("run time (s)", f"{summary.get('runtime_s', np.nan):.0f}")]
    return pd.DataFrame(rows, columns=["setting", "Lee et al. 2020, ours"])
