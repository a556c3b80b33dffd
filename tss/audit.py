"""Where the clock goes: how well TSS < 4.5 h can be told at each step of the data flow.

The same patients (the test split; every probe fits on train and picks its setting on validation)
are scored at each step, from the generator's truth to the trained models:

1. ``latent``: the generator's own lesion T2 increase (the oracle) and its lesion/healthy ratios,
   which compare the lesion with the same voxels' healthy signal (no observer has that).
2. ``native``: the generated NIfTI files, inside the true lesion mask, against the mirrored
   contralateral tissue. The mirror is found with the true head pose of each series (the FLAIR has
   its own pose): a measurement of the images, not a reading of the latent table.
3. ``template``: the preprocessed volumes (N4, registration to the template), inside the warped
   lesion mask against its mirror about the template's mid-sagittal plane.
4. ``tensors``: the normalised hemisphere tensors the models see, pooled in-plane 1x, 2x and 4x:
   the lesion against the rest of the same hemisphere (what a model that sees one hemisphere has),
   and against the mirrored hemisphere at the same place.
5. ``probe``: logistic regression on the frozen features of a network (a trained detector or
   pretraining, or a randomly initialised one as the floor).
6. ``trained``: the trained TSS models' own test predictions.

A single ratio is a score with a fixed direction (a higher ratio means a later scan: FLAIR and T2
rise with time, and the DWI ratio falls back towards 1 less than it rises here), so it is not fitted;
the three ratios of a step together are a logistic regression fitted on train. Per-patient values go
to ``results/<profile>/audit/`` (small CSVs, committed); :func:`table` and :func:`plot` read them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import manifest, profiles, results, stats
from .atomic import atomic_path, cached, content_key, write_text
from .models import SliceAttentionNet, build, load_matching
from .preprocess import PreprocessCache, hemispheres
from .runtree import RunTree
from .task import Task
from .train import Hemispheres
from .train.data import pool_in_plane

AUDIT_VERSION = "1"
CHANNELS = ("dwi", "b0", "flair")   # the order of the hemisphere tensors' channels (b1000, b0, FLAIR)
POOLINGS = (1, 2, 4)
MIN_VOXELS = 3                      # fewer lesion (or mirror) voxels than this: no ratio
STEPS = ("latent", "native", "template", "tensors", "probe", "trained")
STEP_TITLE = {"latent": "1. generator's truth", "native": "2. native images", "template": "3. template space",
              "tensors": "4. model input", "probe": "5. frozen features", "trained": "6. trained models"}
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)  # logistic regressions' inverse regularisation


# ------------------------------------------------------------------------------------------------
# 2. native images


def _mirror_points(q: np.ndarray) -> np.ndarray:
    """Points in the patient's head frame (MNI-like mm, x left-right) mirrored about x = 0."""
    return q * np.array([-1.0, 1.0, 1.0])


def _sample(img: np.ndarray, affine: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``img`` at world points (N, 3); NaN outside the grid."""
    from scipy.ndimage import map_coordinates

    ijk = (np.linalg.inv(affine) @ np.c_[world, np.ones(len(world))].T)[:3]
    inside = np.all((ijk >= 0) & (ijk <= np.array(img.shape)[:, None] - 1), axis=0)
    out = map_coordinates(img, ijk, order=1, mode="nearest")
    return np.where(inside, out, np.nan)


def native_ratios(b1000: Path, b0: Path, flair: Path, lesion: Path, truth: dict) -> dict[str, float]:
    """Lesion/contralateral ratio of each series from its NIfTI file: the mean signal at the lesion
    mask's voxels over the mean at their mirror images (about the head's mid-sagittal plane, found
    from the true pose; mirror points that fall in the lesion are left out). FLAIR is sampled at the
    same head positions through its own pose."""
    import nibabel as nib

    m = nib.load(lesion)
    mask = np.asarray(m.dataobj) > 0.5
    ijk = np.argwhere(mask)
    if len(ijk) < MIN_VOXELS:
        return {c: np.nan for c in CHANNELS} | {"lesion_voxels": len(ijk)}
    world = (m.affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
    R, t = np.asarray(truth["head_rotation_world_from_mni"]), np.asarray(truth["head_translation_mm"])
    Rf, tf = np.asarray(truth["flair_rotation_world_from_mni"]), np.asarray(truth["flair_translation_mm"])
    q = (world - t) @ R                       # scanner world -> head frame (tss.synth.acquire.Geometry)
    qm = _mirror_points(q)
    mirror_world = qm @ R.T + t
    out = {"lesion_voxels": len(ijk)}
    in_lesion = _sample(mask.astype(np.float32), m.affine, mirror_world) > 0.5
    for name, path, (Rm, tm) in (("dwi", b1000, (R, t)), ("b0", b0, (R, t)), ("flair", flair, (Rf, tf))):
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=np.float32)
        les = _sample(data, img.affine, q @ Rm.T + tm)
        mir = _sample(data, img.affine, qm @ Rm.T + tm)
        keep = np.isfinite(mir) & ~in_lesion
        ref = np.nanmean(mir[keep]) if keep.sum() >= MIN_VOXELS else np.nan
        out[name] = float(np.nanmean(les) / ref) if ref and ref > 0 else np.nan
    return out


def native_table(cohort_dir, patients: list[str] | None = None, progress: bool = True) -> pd.DataFrame:
    """:func:`native_ratios` of every patient (or ``patients``) of a synthetic cohort folder."""
    manifest.require_safe(cohort_dir, action="auditing")
    cohort = manifest.load_cohort(cohort_dir, check=False)
    tab = cohort.table if patients is None else cohort.table[cohort.table["patient_id"].isin(patients)]
    rows = []
    for r in tqdm(tab.itertuples(index=False), total=len(tab), desc="native ratios", unit="patient",
                  disable=not progress):
        truth_file = cohort.root / r.patient_id / f"{r.patient_id}_synth.json"
        if r.lesion_mask is None or not truth_file.exists():
            raise ValueError(f"patient {r.patient_id}: the native audit needs a lesion mask and the "
                             f"generator's pose ({truth_file.name}); only a synthetic cohort has both")
        rows.append({"patient_id": r.patient_id,
                     **native_ratios(r.b1000, r.b0, r.flair, r.lesion_mask, json.loads(truth_file.read_text()))})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# 3. template space and 4. the tensors the models see


def template_ratios(volume: np.ndarray, brain: np.ndarray, lesion: np.ndarray) -> dict[str, float]:
    """Registered volume (3, X, Y, Z) RAS, brain and warped lesion masks: each channel's mean in the
    lesion over its mean at the mirrored voxels (about the grid's mid-sagittal plane) that are brain
    and not lesion."""
    les = lesion & brain
    mir = lesion[::-1] & brain & ~lesion
    out = {"lesion_voxels": int(les.sum())}
    for c, name in enumerate(CHANNELS):
        v = volume[c].astype(np.float64)
        ok = les.sum() >= MIN_VOXELS and mir.sum() >= MIN_VOXELS
        out[name] = float(v[les].mean() / v[mir].mean()) if ok and v[mir].mean() > 0 else np.nan
    return out


def _pool(a: np.ndarray, d: int) -> np.ndarray:
    """Average pooling of the last two axes by ``d`` (as tss.train.data.pool_in_plane)."""
    if d == 1:
        return a
    *lead, h, w = a.shape
    return a.reshape(*lead, h // d, d, w // d, d).mean(axis=(-3, -1))


def tensor_ratios(hemis: np.ndarray, lesion: np.ndarray, brain: np.ndarray, stroke: np.ndarray,
                  poolings=POOLINGS) -> dict[str, float]:
    """The hemisphere tensors of one patient (2, 3, S, H, W) as the models see them, with the lesion
    and brain masks cut the same way (2, S, H, W), at each in-plane pooling. For each stroke
    hemisphere (``stroke``: a flag per hemisphere) and channel, the lesion's mean (weighted by the
    pooled lesion fraction: partial volume included) over:

    - ``alone``: the mean of the same hemisphere's brain pixels that hold no lesion;
    - ``mirror``: the other hemisphere at the same pixels, same weights.

    A patient with two stroke hemispheres gets their mean, as the models' patient score does."""
    out = {}
    for d in poolings:
        x = _pool(hemis.astype(np.float64), d)
        f = _pool(lesion.astype(np.float64), d)
        b = _pool(brain.astype(np.float64), d)
        vals = {f"{kind}_{c}_{d}x": [] for kind in ("alone", "mirror") for c in CHANNELS}
        for h in np.flatnonzero(stroke):
            w = f[h]
            if w.sum() * d * d < MIN_VOXELS:
                continue
            normal = (b[h] >= 0.5) & (f[h] == 0)
            for c, name in enumerate(CHANNELS):
                les = (w * x[h, c]).sum() / w.sum()
                mir = (w * x[1 - h, c]).sum() / w.sum()
                vals[f"alone_{name}_{d}x"].append(les / x[h, c][normal].mean() if normal.any() else np.nan)
                vals[f"mirror_{name}_{d}x"].append(les / mir if mir > 0 else np.nan)
        out.update({k: float(np.mean(v)) if v else np.nan for k, v in vals.items()})
    return out


def image_tables(cache_dir, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(:func:`template_ratios`, :func:`tensor_ratios`) of every patient of a processed cohort whose
    warped lesion mask is known."""
    store = PreprocessCache(cache_dir)
    arr, index = store.load_hemispheres()
    tpl, ten = [], []
    for pid, g in tqdm(index.groupby("patient_id", sort=True), desc="template and tensor ratios",
                       unit="patient", disable=not progress):
        p = store.load_patient(pid)
        if "lesion" not in p:
            continue
        lesion, brain = p["lesion"].astype(bool), p["brain"].astype(bool)
        tpl.append({"patient_id": pid, **template_ratios(p["volume"], brain, lesion)})
        g = g.sort_values("hemisphere")  # left, right: the order tss.preprocess.hemispheres writes
        rows = g.index.to_numpy() if "row" not in g else g["row"].to_numpy()
        masks = hemispheres(np.stack([lesion, brain]).astype(np.float32))  # (2, 2, S, H, W)
        ten.append({"patient_id": pid, **tensor_ratios(np.asarray(arr[rows], np.float32), masks[:, 0] > 0.5,
                                                       masks[:, 1], g["label"].to_numpy() == 1)})
    return pd.DataFrame(tpl), pd.DataFrame(ten)


# ------------------------------------------------------------------------------------------------
# 5. linear probes on frozen features


@torch.no_grad()
def features(model, x: torch.Tensor, chunk: int = 16) -> np.ndarray:
    """Frozen features of each hemisphere of ``x`` (N, 3, S, H, W) before the model's output layer:
    2D, the per-slice pooled layer4 (512) and attended layer3 (256) maps, averaged and maxed over
    slices (1536); 3D, the pooled deepest level and both attended maps (896)."""
    model.eval()
    grabbed = []
    hook = model.fc.register_forward_hook(lambda m, inp, out: grabbed.append(inp[0].float()))
    try:
        parts = []
        for i in range(0, len(x), chunk):
            grabbed.clear()
            model(x[i:i + chunk])
            f = grabbed[0]
            if isinstance(model, SliceAttentionNet):  # one row per slice: pool over the slices
                f = f.view(-1, model.n_slices, f.shape[-1])
                f = torch.cat([f.mean(1), f.amax(1)], 1)
            parts.append(f.cpu().numpy())
    finally:
        hook.remove()
    return np.concatenate(parts)


@torch.no_grad()
def recalibrate_bn(model, x: torch.Tensor, batch: int = 16) -> None:
    """Batch-norm statistics from ``x`` (a randomly initialised network has none of its own)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(x), batch):
        model(x[i:i + batch])
    model.eval()


def fit_probe(X: np.ndarray, y: np.ndarray, split: np.ndarray, c_grid=C_GRID) -> tuple[np.ndarray, float, float]:
    """Logistic regression (standardised inputs) fitted on the ``train`` rows, its C chosen by the
    validation AUC; returns (probability for every row, the chosen C, its validation AUC)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr, va = split == "train", split == "val"
    ok = np.all(np.isfinite(X), axis=1)
    best = (-np.inf, None, None)
    for c in c_grid:
        m = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        m.fit(X[tr & ok], y[tr & ok])
        auc = stats.auc_or_nan(y[va & ok], m.predict_proba(X[va & ok])[:, 1])
        if auc > best[0] + 1e-9:
            best = (auc, c, m)
    prob = np.full(len(X), np.nan)
    prob[ok] = best[2].predict_proba(X[ok])[:, 1]
    return prob, best[1], best[0]


def probe_network(name: str, model, cohort, threads: int | None = None) -> pd.DataFrame:
    """Per-patient probe of ``model``'s frozen features on the stroke hemispheres of ``cohort``
    (:class:`tss.train.Hemispheres`): probability of TSS < 4.5 h for every patient, the probe's C and
    validation AUC. A patient with two stroke hemispheres gets the mean of their features."""
    idx = cohort.index
    rows = np.flatnonzero((idx["label"] == 1).to_numpy())
    if threads:
        torch.set_num_threads(threads)
    return _probe_patients(name, features(model, cohort.x[torch.as_tensor(rows)]), idx.iloc[rows])


def _probe_patients(name: str, feats: np.ndarray, h: pd.DataFrame) -> pd.DataFrame:
    """:func:`fit_probe` of per-hemisphere features ``feats`` (rows of index ``h``), averaged per patient."""
    h = h.reset_index(drop=True)
    per = pd.DataFrame(feats).groupby(h["patient_id"].to_numpy()).mean()
    info = h.groupby("patient_id").agg(split=("split", "first"), minutes=("onset_to_mri_min", "first")).loc[per.index]
    y = Task.TSS45.label(info["minutes"]).to_numpy()
    prob, c, val_auc = fit_probe(per.to_numpy(), y, info["split"].to_numpy())
    return pd.DataFrame({"patient_id": per.index, "probe": name, "prob": prob, "C": c, "val_auc": val_auc})


# ------------------------------------------------------------------------------------------------
# 5b. the same frozen features pooled over the true lesion only: what a network keeps where the
# lesion is, before its own pooling over the hemisphere (steps 2-4 measure within the true mask too)

LESION_LAYERS = ("layer1", "layer3")  # ResNet-18 stages: 4x and 16x coarser than the input
LESION_PROBED = (("2D, random weights (floor)", None), ("2D, phase 1 stroke detector", "2d-stroke-random"))
POOLED_OVER = {"lesion": "over the true lesion", "hemisphere": "over the hemisphere"}


def lesion_masks(cache_dir, index: pd.DataFrame, rows, downsample: int) -> torch.Tensor:
    """The true lesion mask of each hemisphere ``rows`` of a processed cohort's ``index``
    (:meth:`tss.preprocess.PreprocessCache.load_hemispheres`), on the models' grid: the warped mask
    split like the images and pooled in-plane by ``downsample`` (lesion fractions), (N, S, H, W)."""
    store = PreprocessCache(cache_dir)
    out, loaded = [], {}
    for r in rows:
        pid, side = index.at[r, "patient_id"], index.at[r, "hemisphere"]
        if pid not in loaded:
            p = store.load_patient(pid)
            if "lesion" not in p:
                raise ValueError(f"patient {pid}: the processed cohort has no warped lesion mask")
            loaded = {pid: hemispheres(p["lesion"][None].astype(np.float32))[:, 0]}  # (2, S, H, W): left, right
        m = loaded[pid][("left", "right").index(side)]
        out.append(pool_in_plane(torch.from_numpy(np.ascontiguousarray(m)), downsample))
    return torch.stack(out)


@torch.no_grad()
def pooled_features(model: SliceAttentionNet, x: torch.Tensor, masks: torch.Tensor, layer: str,
                    chunk: int = 16) -> dict[str, np.ndarray]:
    """A 2D network's ``layer`` feature maps for each hemisphere of ``x`` (N, 3, S, H, W), averaged
    over every slice and pixel ("hemisphere", as the network's own pooling sees them) and over the
    lesion only ("lesion": weighted by ``masks`` (N, S, H, W) averaged onto the map's grid): (N, C)
    each; a hemisphere without lesion gets NaN."""
    model.eval()
    grabbed = []
    hook = getattr(model, layer).register_forward_hook(lambda m, inp, out: grabbed.append(out.float()))
    out = {"hemisphere": [], "lesion": []}
    try:
        for i in range(0, len(x), chunk):
            grabbed.clear()
            xb = x[i:i + chunk]
            model(xb)
            B, S = xb.shape[0], xb.shape[2]
            f = grabbed[0].view(B, S, *grabbed[0].shape[1:])  # (B, S, C, h, w)
            mb = masks[i:i + chunk].to(f.device, torch.float32)
            w = F.adaptive_avg_pool2d(mb.reshape(B * S, 1, *mb.shape[2:]), f.shape[-2:]).view(B, S, 1, *f.shape[-2:])
            total = w.sum((1, 3, 4))
            out["hemisphere"].append(f.mean((1, 3, 4)).cpu().numpy())
            out["lesion"].append(torch.where(total > 0, (f * w).sum((1, 3, 4)) / total.clamp_min(1e-12),
                                             torch.nan).cpu().numpy())
    finally:
        hook.remove()
    return {k: np.concatenate(v) for k, v in out.items()}


def run_lesion_probes(cache_dir, runs_roots, out_dir, profile: str, seed: int = 0, device: str = "cpu",
                      progress: bool = True, cohort=None, masks: torch.Tensor | None = None) -> pd.DataFrame:
    """Step 5, pooled two ways: probe each 2D network of :data:`LESION_PROBED` whose weights are here
    on its :data:`LESION_LAYERS` maps pooled over the stroke hemisphere and over the true lesion
    (:func:`pooled_features`); writes ``lesion_probes.csv`` (rows of networks not here are kept from
    an earlier file, as :func:`run_probes` does). ``cohort``/``masks``: the hemispheres and their
    lesion masks (default: loaded from ``cache_dir``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    f = out_dir / "lesion_probes.csv"
    old = _read_probes(f)
    here = {}  # the networks whose weights are here: label -> best.pt (None: random weights)
    for label, src in LESION_PROBED:
        weights = _checkpoint(runs_roots, src, seed) if src else None
        if src is None or weights:
            here[label] = weights
    if cohort is None:
        cohort = Hemispheres.load(cache_dir, profiles.MODEL[profile].downsample("2d"), device)
    stroke = np.flatnonzero((cohort.index["label"] == 1).to_numpy())
    if masks is None:
        masks = lesion_masks(cache_dir, cohort.index, stroke, profiles.MODEL[profile].downsample("2d"))
    x = cohort.x[torch.as_tensor(stroke)]
    parts = []
    for label, weights in tqdm(here.items(), desc="lesion probes", unit="network", disable=not progress):
        torch.manual_seed(seed)
        model = build("2d", n_slices=cohort.x.shape[2]).to(device)
        if weights is None:
            recalibrate_bn(model, cohort.x[torch.as_tensor(cohort.rows("train", "stroke"))])
        elif not load_matching(model, weights).loaded:
            raise RuntimeError(f"lesion probe {label}: nothing loaded from {weights}")
        for layer in LESION_LAYERS:
            for how, feats in pooled_features(model, x, masks, layer).items():
                parts.append(_probe_patients(f"{label}: {layer} {POOLED_OVER[how]}", feats, cohort.index.iloc[stroke]))
    out = _with_kept(old, pd.concat(parts, ignore_index=True) if parts else old.iloc[:0],
                     network=lambda probe: probe.split(":")[0])
    with atomic_path(f) as tmp:
        out.round(5).to_csv(tmp, index=False)
    return out


# ------------------------------------------------------------------------------------------------
# run, cache, table and figure


def native(cohort_dir, out_dir, progress: bool = True) -> Path:
    """Step 2 of a synthetic cohort, :func:`native_table`, written to ``out_dir/native.csv`` and cached
    by the cohort's manifest and truth files; returns the file. Raises ``ValueError`` on a cohort
    without the generator's truth (a real one)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "native.csv"
    mpath = manifest.resolve_manifest_path(cohort_dir)
    truth = sorted(mpath.parent.glob("*/*_synth.json"))
    nkey = content_key({"v": AUDIT_VERSION, "manifest": mpath.read_text(),
                        "truth": [f.read_text() for f in truth]})
    if cached(out_dir / "native.json", nkey, [out]) is None:
        nat = native_table(cohort_dir, progress=progress)
        with atomic_path(out) as tmp:
            nat.round(5).to_csv(tmp, index=False)
        write_text(out_dir / "native.json", json.dumps({"key": nkey, "patients": len(nat)}, indent=1))
    return out


def run(cache_dir, cohort_dir, out_dir, progress: bool = True) -> dict[str, Path]:
    """Measure step 2 of a synthetic cohort (``native.csv``, cached by its manifest and truth files)
    and, once the cohort is processed and assembled, steps 3-4 (``template.csv``, ``tensors.csv``,
    cached by the processed cohort's key) into ``out_dir``. Returns the files written or found."""
    out_dir = Path(out_dir)
    files = {"native": native(cohort_dir, out_dir, progress)} | {k: out_dir / f"{k}.csv" for k in ("template", "tensors")}
    store = PreprocessCache(cache_dir) if cache_dir is not None else None
    if store is None or not store.assembled():
        return {"native": files["native"]}
    key = content_key({"v": AUDIT_VERSION, "cohort": store.cohort_meta()["key"]})
    if cached(out_dir / "images.json", key, [files["template"], files["tensors"]]) is None:
        tpl, ten = image_tables(cache_dir, progress)
        for name, df in (("template", tpl), ("tensors", ten)):
            with atomic_path(files[name]) as tmp:
                df.round(5).to_csv(tmp, index=False)
        write_text(out_dir / "images.json", json.dumps({"key": key, "patients": len(tpl)}, indent=1))
    return files


def _measure_label(col: str) -> str:
    kind, ch, d = col.split("_")
    where = {"alone": "lesion / rest of its hemisphere", "mirror": "lesion / mirrored hemisphere"}[kind]
    return f"{ {'dwi': 'DWI', 'b0': 'b0', 'flair': 'FLAIR'}[ch]}, {where}, {d} pooling"


def scores(audit_dir, manifest: pd.DataFrame, latent: pd.DataFrame | None = None,
           runs_root=None, tss_experiments=(), lee=None) -> pd.DataFrame:
    """Every step's per-patient score for TSS < 4.5 h (higher = earlier), long format: patient_id,
    step, measure, split, target, score. Single ratios enter negated (a higher ratio is a later scan);
    the three channels of a step together enter as a logistic regression fitted on train (C by
    validation AUC). ``lee``: the Lee et al. baseline's folder, whose test predictions join step 3 on
    the patients its ROI can measure (fewer than the other rows: the table gives each row's n)."""
    audit_dir = Path(audit_dir)
    info = manifest[["patient_id", "split", "onset_to_mri_min"]].copy()
    info["target"] = Task.TSS45.label(info["onset_to_mri_min"])
    parts = []

    def add(step, measure, df, col, sign=-1.0):
        d = df[["patient_id", col]].rename(columns={col: "score"})
        d["score"] = sign * d["score"]
        parts.append(d.assign(step=step, measure=measure))

    def add_combined(step, measure, df, cols):
        d = df[["patient_id", *cols]].merge(info, on="patient_id")
        X = np.log(d[cols].to_numpy(float))
        prob, _, _ = fit_probe(X, d["target"].to_numpy(), d["split"].to_numpy())
        parts.append(pd.DataFrame({"patient_id": d["patient_id"], "score": prob, "step": step, "measure": measure}))

    if latent is not None:
        add("latent", "oracle (latent FLAIR/T2 increase)", latent, "oracle_score", sign=1.0)
        for c, label in (("flair_ratio", "FLAIR"), ("b0_ratio", "b0"), ("dwi_ratio", "DWI")):
            add("latent", f"{label} lesion/same voxels healthy", latent, c)
    labels = {"dwi": "DWI", "b0": "b0", "flair": "FLAIR"}
    for step, f in (("native", "native.csv"), ("template", "template.csv")):
        if (audit_dir / f).exists():
            df = pd.read_csv(audit_dir / f)
            for c in CHANNELS:
                add(step, f"{labels[c]} lesion / contralateral", df, c)
            add_combined(step, "the three ratios, logistic", df, list(CHANNELS))
    if lee is not None and Path(lee, "predictions.csv").exists():  # radiomics on the registered volumes
        pr = pd.read_csv(Path(lee, "predictions.csv"))
        pr.loc[~pr["usable"].astype(bool), "prob"] = np.nan  # its method measures only an ROI of >= 1 mL
        add("template", "Lee et al. radiomics (measurable ROI only)", pr, "prob", sign=1.0)
    if (audit_dir / "tensors.csv").exists():
        df = pd.read_csv(audit_dir / "tensors.csv")
        for d in POOLINGS:
            for kind in ("alone", "mirror"):
                for c in CHANNELS:
                    col = f"{kind}_{c}_{d}x"
                    if col in df:
                        add("tensors", _measure_label(col), df, col)
                add_combined("tensors", f"the three ratios, logistic, {kind}, {d}x pooling", df,
                             [f"{kind}_{c}_{d}x" for c in CHANNELS])
    for f in ("probes.csv", "lesion_probes.csv"):
        if (audit_dir / f).exists():
            pr = pd.read_csv(audit_dir / f)
            for name, g in pr.groupby("probe", sort=False):
                add("probe", name, g, "prob", sign=1.0)
    if runs_root is not None:
        for exp, label in tss_experiments:
            for s in results.seeds(runs_root, exp):
                p = results.predictions(runs_root, exp, s)
                add("trained", f"{label}, seed {s}", p, "prob", sign=1.0)
    out = pd.concat(parts, ignore_index=True).merge(info, on="patient_id", how="inner")
    return out[["step", "measure", "patient_id", "split", "target", "score"]]


def table(sc: pd.DataFrame, split: str = "test", n_boot: int = 1000) -> pd.DataFrame:
    """AUC of each step's measures on ``split`` (patients with a finite score) with a stratified
    bootstrap 95% CI, in the order of the data flow."""
    rows = []
    for (step, measure), g in sc[sc["split"] == split].groupby(["step", "measure"], sort=False):
        g = g[np.isfinite(g["score"])]
        y, s = g["target"].to_numpy(), g["score"].to_numpy()
        auc = stats.auc_or_nan(y, s)
        lo, hi = (stats.bootstrap_ci(stats.auc, y, s, n_boot=n_boot, stratify=y) if np.isfinite(auc)
                  else (np.nan, np.nan))
        rows.append({"step": step, "measure": measure, "n": len(g), "auc": auc, "lo": lo, "hi": hi})
    t = pd.DataFrame(rows)
    return t.assign(_o=t["step"].map(STEPS.index)).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)


def headline(t: pd.DataFrame) -> pd.DataFrame:
    """The best measure of each step among those scored on every test patient (a row on fewer, such
    as the Lee baseline's measurable patients, is not comparable step to step)."""
    t = t[t["n"] == t["n"].max()]
    return (t.sort_values("auc", ascending=False).groupby("step", sort=False).head(1)
            .assign(_o=lambda d: d["step"].map(STEPS.index)).sort_values("_o").drop(columns="_o"))


def plot(t: pd.DataFrame, title: str = "", paper: float | None = None):
    """Every measure's test AUC with its 95% CI, one row each, grouped by step in the data flow's
    order; the best of each step (:func:`headline`) filled; ``paper``: a dotted line at the paper's
    AUC of its best deep model, labelled as the paper's."""
    import matplotlib.pyplot as plt

    t = t.reset_index(drop=True)
    best = set(headline(t).index)
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(t) + 1.6))
    y = np.arange(len(t))[::-1]
    for i, r in t.iterrows():
        c = f"C{STEPS.index(r['step'])}"
        ax.errorbar(r["auc"], y[i], xerr=[[r["auc"] - r["lo"]], [r["hi"] - r["auc"]]], fmt="o", color=c,
                    mfc=c if i in best else "white", ms=6, capsize=2, lw=1.2)
    # the step's number, not its title (the caption names the steps): the data keeps most of the width
    ax.set_yticks(y, [f"{STEPS.index(s) + 1} · {m}" for s, m in zip(t["step"], t["measure"])], fontsize=10.5)
    ax.axvline(0.5, color="0.5", lw=0.8, ls="--")
    if paper is not None:  # the paper's best deep TSS < 4.5 h model, for scale (the paper's number, not ours)
        ax.axvline(paper, color="k", lw=1.0, ls=":")
        ax.text(paper, 1.0, f" paper's best\n deep model {paper:.2f}", transform=ax.get_xaxis_transform(),
                va="bottom", ha="left", fontsize=9.5)
    ax.set_xlim(0.2, 1.0)
    ax.tick_params(axis="x", labelsize=10.5)
    ax.set_xlabel("test AUC for TSS < 4.5 h (95% CI); filled: the best of each step", fontsize=11.5)
    if title:
        ax.set_title(title, fontsize=11)
    ax.grid(axis="x", color="0.9")
    fig.tight_layout()
    return fig


# networks whose frozen features step 5 probes: (label, architecture, the grid run whose best.pt holds them)
PROBED = (("2D, random weights (floor)", "2d", None),
          ("2D, phase 1 stroke detector", "2d", "2d-stroke-random"),
          ("2D, tumour pretraining (medical)", "2d", "2d-medical-random"),
          ("3D, random weights (floor)", "3d", None),
          ("3D, Models Genesis", "3d", "3d-genesis-random"),
          ("3D, phase 1 stroke detector", "3d", "3d-stroke-genesis"),
          ("3D, tumour pretraining (medical)", "3d", "3d-medical-random"))


def run_probes(cache_dir, runs_roots, out_dir, profile: str, seed: int = 0, archs=("2d", "3d"),
               device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """Step 5: probe each network of :data:`PROBED` whose weights are here (the random floors always
    are; a run's ``best.pt`` only on the machine that trained it, looked for in each run tree of
    ``runs_roots`` in turn: the grid's, then the clock's, which trains its own phase 1) and write
    ``probes.csv``. Rows of a probe whose checkpoint is not here are kept from an earlier
    ``probes.csv``, so a clone keeps what the training machine measured."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    f = out_dir / "probes.csv"
    old = _read_probes(f)

    def weights(src):
        return _checkpoint(runs_roots, src, seed)

    parts = []
    for arch in archs:
        todo = [(label, src) for label, a, src in PROBED if a == arch and (src is None or weights(src))]
        if not todo:
            continue
        cohort = Hemispheres.load(cache_dir, profiles.MODEL[profile].downsample(arch), device)
        for label, src in tqdm(todo, desc=f"probes {arch}", unit="network", disable=not progress):
            torch.manual_seed(seed)
            model = build(arch, n_slices=cohort.x.shape[2]).to(device)
            if src is None:  # batch-norm statistics of the training stroke hemispheres
                recalibrate_bn(model, cohort.x[torch.as_tensor(cohort.rows("train", "stroke"))])
            else:
                rep = load_matching(model, weights(src))  # the Genesis U-Net's encoder.* loads by name
                if not rep.loaded:
                    raise RuntimeError(f"probe {label}: nothing loaded from {src}: {rep}")
            parts.append(probe_network(label, model, cohort))
        del cohort
    out = _with_kept(old, pd.concat(parts, ignore_index=True) if parts else old.iloc[:0])
    order = {label: i for i, (label, _, _) in enumerate(PROBED)}
    out = out.sort_values(["probe", "patient_id"], key=lambda c: c.map(order) if c.name == "probe" else c)
    with atomic_path(f) as tmp:
        out.round(5).to_csv(tmp, index=False)
    return out

def _read_probes(f: Path) -> pd.DataFrame:
    return pd.read_csv(f) if f.exists() else pd.DataFrame(columns=["patient_id", "probe", "prob", "C", "val_auc"])


def _checkpoint(runs_roots, src: str, seed: int) -> Path | None:
    """Run ``src``'s ``best.pt`` in the first run tree of ``runs_roots`` (one or several) that holds it."""
    roots = [runs_roots] if isinstance(runs_roots, (str, Path)) else list(runs_roots)
    return next((w for w in (RunTree(r).run_dir(src, seed) / "best.pt" for r in roots) if w.exists()), None)


def _with_kept(old: pd.DataFrame, new: pd.DataFrame, network=lambda probe: probe) -> pd.DataFrame:
    """``new`` probe rows and those of ``old`` whose network (``network(probe label)``) has none in
    ``new``: measured on a machine that had its weights, they stay."""
    gone = {network(p) for p in new["probe"]}
    keep = old[~old["probe"].astype(str).map(network).isin(gone)]
    return pd.concat([keep, new], ignore_index=True) if len(keep) else new  # an empty frame would make every column object


# the trained TSS < 4.5 h models of step 6: (experiment, label)
TRAINED = (("2d-tss45-random", "2D, random init."), ("2d-tss45-transfer", "2D, transfer (phase 3)"),
           ("2d-attention-transfer", "2D, + attention (phase 4)"), ("3d-tss45-random", "3D, random init."),
           ("3d-tss45-medical", "3D, medical"), ("3d-tss45-transfer", "3D, transfer (phase 3)"),
           ("3d-attention-transfer", "3D, + attention (phase 4)"))


def said(best: pd.DataFrame) -> list[str]:
    """:func:`headline` in sentences: each step's best score and its change from the step before,
    then the step that loses the most."""
    out, prev, drops = [], None, []
    for r in best.itertuples(index=False):
        s = f"{STEP_TITLE[r.step]}: {r.measure}, AUC {r.auc:.2f} ({r.lo:.2f}-{r.hi:.2f})"
        if prev is not None:
            between = STEPS[STEPS.index(prev.step) + 1:STEPS.index(r.step)]
            s += f"; {r.auc - prev.auc:+.2f} from the step before" + (
                f" (step{'s' if len(between) > 1 else ''} {', '.join(STEP_TITLE[b].split('.')[0] for b in between)} "
                f"not measured here yet)" if between else "")
            drops.append((r.auc - prev.auc, prev.step, r.step))
        out.append(s)
        prev = r
    if drops:
        d, a, b = min(drops)
        out.append(f"The largest loss is from {STEP_TITLE[a].split('. ', 1)[1]} to {STEP_TITLE[b].split('. ', 1)[1]}: "
                   f"{d:+.2f} in AUC." if d < 0 else "No step loses AUC against the one before it.")
    return out
