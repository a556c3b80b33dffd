"""Grad-CAM of the hemisphere classifiers (paper section 3, Fig. 9) and an objective overlap measure.

:func:`cam` computes Grad-CAM (Selvaraju et al.) with the pytorch-grad-cam package for the positive
class logit of a hemisphere, for both architectures:

- 3D model: the target layer's activations are (B, C, d, h, w); the channel weights are the mean
  gradient over the whole (d, h, w) map, as in the package.
- 2D model: the target layer sees the slices as a batch, (B*26, C, h, w). The hemisphere has one
  logit, so its feature map is the stack of its slices: a reshape to (B, C, 26, h, w) lets the
  package weight each channel by its mean gradient over all slices (one weight vector per
  hemisphere, not per slice) and the 2D model's map is then a volume like the 3D model's.

In both cases the ReLU'd map is upsampled trilinearly (torch) to the input's (26, H, W) and divided
by its maximum over the whole hemisphere, so slices are comparable and ratios are kept. (The
package's own scaling min-max normalises each map and resizes it with a cubic spline; we override
only that step.)

The paper's "96% of cases had substantial overlap (>50%)" is an expert radiologist's visual judgement
on the slice most representative of the lesion. :func:`overlap` is our objective stand-in, computed
on the whole hemisphere: ``hit`` says whether more than half of the CAM's high region (cam >= 0.5)
lies in the lesion dilated by one voxel in-plane.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget
from scipy import ndimage, special
from tqdm.auto import tqdm

from . import preprocess, stats
from .atomic import atomic_path
from .models import PartsModel, build, read_state_dict
from .preprocess import pipeline
from .train.config import Experiment
from .train.data import pool_in_plane

HIGH = 0.5  # the CAM's "high" region, after the whole-hemisphere normalisation


class _VolumeGradCAM(GradCAM):
    """The package's Grad-CAM with its last step replaced: trilinear upsampling and one scale per volume."""

    def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
        ag = self.activations_and_grads
        out = []
        for layer, a, g in zip(self.target_layers, ag.activations, ag.gradients):
            c = np.maximum(self.get_cam_image(input_tensor, layer, targets, a.numpy(), g.numpy(), eigen_smooth), 0)
            up = F.interpolate(torch.from_numpy(c).float()[:, None], size=tuple(input_tensor.shape[2:]),
                               mode="trilinear", align_corners=False)
            out.append(up.numpy())
        return out

    def aggregate_multi_layers(self, cam_per_target_layer):
        cam = np.concatenate(cam_per_target_layer, 1).mean(1)
        peak = cam.reshape(len(cam), -1).max(1)
        return cam / np.where(peak > 0, peak, 1)[:, None, None, None]


def _gradcam(model: torch.nn.Module, x: torch.Tensor, target_layers=None) -> tuple[np.ndarray, np.ndarray]:
    """(CAMs (B, S, H, W) in [0, 1], logits (B,)) of hemispheres ``x`` (B, 3, S, H, W)."""
    if x.dim() != 5:
        raise ValueError(f"expected hemispheres (B, 3, S, H, W), got shape {tuple(x.shape)}")
    layers = list(target_layers or model.cam_target_layers())
    S = x.shape[2]

    def as_volume(t):  # a slice-wise (B*S, C, h, w) map -> (B, C, S, h, w); a 3D map stays
        return t.reshape(-1, S, *t.shape[1:]).transpose(1, 2) if t.dim() == 4 else t

    device = next(model.parameters()).device
    # float32, with gradients even under a caller's no_grad or autocast; an input that requires
    # grad gives the target layer a gradient even when every layer before it is frozen
    x = x.detach().to(device, torch.float32).requires_grad_(True)
    g = _VolumeGradCAM(model, layers, reshape_transform=as_volume)  # puts the model in eval mode
    try:
        with torch.enable_grad(), torch.autocast(device.type, enabled=False):
            cams = g(x, [BinaryClassifierOutputTarget(1)] * len(x))
        logits = g.outputs.detach().float().cpu().numpy().reshape(len(x))
    finally:
        g.activations_and_grads.release()  # remove the hooks (the package's __exit__ swallows IndexError)
        g.outputs = None
        model.zero_grad(set_to_none=True)
    return cams.astype(np.float32), logits


def cam(model: torch.nn.Module, x: torch.Tensor, target_layers=None) -> np.ndarray:
    """Grad-CAM of the positive-class logit for hemispheres ``x`` (B, 3, 26, H, W): (B, 26, H, W)
    float32 in [0, 1], scaled by its maximum over each whole hemisphere. ``target_layers``: default
    ``model.cam_target_layers()``. Leaves the model in eval mode, without hooks or gradients."""
    return _gradcam(model, x, target_layers)[0]


# ------------------------------------------------------------------------------------------------
# lesions and overlap


def lesion_hemispheres(cache_dir, pid: str, downsample: int = 1) -> np.ndarray:
    """A patient's lesion mask as hemispheres aligned with the cohort tensors: (2, 26, 224 // d,
    112 // d) float32, [left, right flipped onto left], average-pooled in-plane by ``d`` =
    ``downsample`` like :meth:`tss.train.Hemispheres.load`. Kept fractional: a value is the share of the
    pooled voxel inside the lesion. All zero when the patient has no lesion mask."""
    p = preprocess.load_patient(cache_dir, pid)
    lesion = p["lesion"] if "lesion" in p else np.zeros(p["volume"].shape[1:], dtype=bool)
    h = torch.from_numpy(np.ascontiguousarray(preprocess.hemispheres(lesion[None].astype(np.float32))[:, 0]))
    return pool_in_plane(h, downsample).numpy()


def external_hemispheres(cache_dir, pid: str, cohort_cache, downsample: int = 1, device="cpu") -> dict:
    """A patient preprocessed outside the training cohort (e.g. the real ISLES'22 case) as the models
    see the cohort: histogram-matched with the cohort's landmarks (``cohort_cache``'s cohort.json),
    split into hemispheres and pooled in-plane like :meth:`tss.train.Hemispheres.load`. Returns ``x``
    (2, 3, 26, H, W) float32 tensor on ``device`` and ``mask`` (2, 26, H, W) from its lesion mask."""
    meta = preprocess.PreprocessCache(cohort_cache).cohort_meta()
    landmarks = {k: np.asarray(v) for k, v in meta["landmarks"].items()}
    p = preprocess.load_patient(cache_dir, pid)
    x = pool_in_plane(torch.from_numpy(np.ascontiguousarray(
        preprocess.hemispheres(pipeline.normalise(p["volume"].astype(np.float32), p["brain"], landmarks)))), downsample)
    return {"x": x.to(device), "mask": lesion_hemispheres(cache_dir, pid, downsample)}


def _dilate_in_plane(mask: np.ndarray) -> np.ndarray:
    """``mask > 0`` grown by one voxel in-plane (3 x 3 square on the last two axes), not across slices."""
    structure = np.ones((1,) * (mask.ndim - 2) + (3, 3), dtype=bool)
    return ndimage.binary_dilation(mask > 0, structure=structure)


def overlap(cam: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """How a hemisphere's CAM (normalised to [0, 1] over the hemisphere) meets its lesion ``mask``
    (same shape, fractional or binary).

    - ``energy_in_lesion``: sum(cam * mask) / sum(cam), the share of the CAM inside the lesion.
    - ``high_in_lesion``: the share of the high region (cam >= 0.5 max) inside the lesion (mask > 0)
      dilated by one voxel in-plane; ``hit``: 1.0 when that share is above 0.5, else 0.0. Our
      objective stand-in for the paper's radiologist, who judged overlap > 50% visually (96%).
    - ``peak_in_lesion``: 1.0 when the CAM's maximum (first one) lies in the dilated lesion.

    All NaN when the mask is empty or the CAM is all zero.
    """
    cam, mask = np.asarray(cam, dtype=np.float64), np.asarray(mask, dtype=np.float64)
    if cam.shape != mask.shape:
        raise ValueError(f"cam {cam.shape} and mask {mask.shape} differ in shape")
    nan = float("nan")
    if not (mask > 0).any() or not (cam > 0).any():
        return {"energy_in_lesion": nan, "high_in_lesion": nan, "hit": nan, "peak_in_lesion": nan}
    near = _dilate_in_plane(mask)
    high = cam >= HIGH * cam.max()  # = cam >= 0.5 for a normalised CAM
    share = float(near[high].mean())
    return {"energy_in_lesion": float((cam * mask).sum() / cam.sum()), "high_in_lesion": share,
            "hit": float(share > 0.5), "peak_in_lesion": float(near.flat[int(np.argmax(cam))])}


def representative_slice(mask: np.ndarray | None, cam: np.ndarray | None = None) -> int:
    """The slice (axis 0) with the largest lesion area; without a lesion, the one with the most CAM energy."""
    for vol in (mask, cam):
        if vol is not None and np.any(np.asarray(vol) > 0):
            return int(np.argmax(np.asarray(vol, dtype=np.float64).reshape(len(vol), -1).sum(1)))
    raise ValueError("neither a lesion nor CAM energy to choose a slice from")


# ------------------------------------------------------------------------------------------------
# trained runs


def _experiment(name: str) -> Experiment:
    exp = Experiment.parse(name)
    if exp.spec.task == "restore" or (exp.spec.task == "tumour" and exp.arch == "3d"):
        raise ValueError(f"{name} is a {exp.spec.task} U-Net, not a hemisphere classifier: no Grad-CAM")
    return exp


def load_run_model(run_dir, n_slices: int = 26, device="cpu") -> PartsModel:
    """The best checkpoint of a classification run (``<runs>/<experiment>/best.pt``), in eval mode."""
    run_dir = Path(run_dir)
    exp = _experiment(run_dir.name)
    ck = run_dir / "best.pt"
    if not ck.exists():
        raise FileNotFoundError(f"experiment {exp.name}: no checkpoint {ck} (has it been trained?)")
    model = build(exp.arch, n_slices=n_slices, aggregate=exp.training.aggregate)
    model.load_state_dict(read_state_dict(ck))
    return model.to(device).eval()


def _downsample(x: torch.Tensor) -> int:
    H, W = x.shape[-2:]
    d = 112 // W
    if d * W != 112 or d * H != 224:
        raise ValueError(f"in-plane size {H} x {W} is not 224 x 112 pooled by an integer factor")
    return d


def cam_study(runs_dir, experiments, cohort, cache_dir, split: str = "test", max_patients: int | None = None,
              progress: bool = True, batch: int = 4) -> pd.DataFrame:
    """Grad-CAM of every stroke hemisphere (label 1) of ``split`` for each experiment, measured
    against its lesion (:func:`overlap`).

    Args:
        runs_dir: the seed's run folder holding ``<experiment>/best.pt``.
        experiments: names like ``'2d-tss45-transfer'`` (hemisphere classifiers only).
        cohort: a :class:`tss.train.Hemispheres`, or a mapping arch ('2d', '3d') -> Hemispheres when
            the architectures take different in-plane sizes (the quick profile). A run's
            ``config.json``, when present, must name the cohort's data key.
        cache_dir: the preprocessing cache (the lesion masks).
        split: which split's hemispheres.
        max_patients: the first patients by id only.
        progress: show a progress bar.
        batch: hemispheres per Grad-CAM batch.

    Returns:
        One row per hemisphere and experiment: patient_id, hemisphere, experiment, energy_in_lesion,
        high_in_lesion, hit, peak_in_lesion, prob (the model's probability of the positive class).
    """
    exps = [_experiment(e) for e in experiments]
    runs_dir = Path(runs_dir)
    lesions: dict[tuple[str, int], np.ndarray] = {}
    jobs = []
    for exp in exps:
        c = cohort[exp.arch] if isinstance(cohort, Mapping) else cohort
        cfg = runs_dir / exp.name / "config.json"
        if cfg.exists() and json.loads(cfg.read_text()).get("data_key") not in (None, c.key):
            raise ValueError(f"experiment {exp.name} was trained on other data (or another downsampling) "
                             f"than this cohort: {cfg}")
        rows = c.rows(split, "stroke")
        if max_patients is not None:
            keep = sorted(c.index["patient_id"].iloc[rows].unique())[:max_patients]
            rows = rows[c.index["patient_id"].iloc[rows].isin(keep).to_numpy()]
        jobs.append((exp, c, rows, load_run_model(runs_dir / exp.name, c.x.shape[2], c.device)))
    out = []
    bar = tqdm(total=sum(len(j[2]) for j in jobs), desc="Grad-CAM", unit="hemisphere", disable=not progress)
    for exp, c, rows, model in jobs:
        d = _downsample(c.x)
        for i in range(0, len(rows), batch):
            r = rows[i:i + batch]
            cams, logits = _gradcam(model, c.x[torch.as_tensor(r, device=c.device)])
            for row, m, z in zip(r, cams, logits):
                pid, side = c.index.at[row, "patient_id"], c.index.at[row, "hemisphere"]
                if (pid, d) not in lesions:
                    lesions[pid, d] = lesion_hemispheres(cache_dir, pid, d)
                out.append({"patient_id": pid, "hemisphere": side, "experiment": exp.name,
                            **overlap(m, lesions[pid, d][("left", "right").index(side)]),
                            "prob": float(special.expit(z))})
            bar.update(len(r))
    bar.close()
    return pd.DataFrame(out, columns=["patient_id", "hemisphere", "experiment", "energy_in_lesion", "high_in_lesion",
                                      "hit", "peak_in_lesion", "prob"])


def cam_example(model: torch.nn.Module, cohort, row: int, cache_dir, title: str = "",
                experiment: str | None = None) -> dict:
    """One hemisphere of the cohort (its row number) ready for :func:`figure9`: x, cam, mask, title
    (and the ``experiment`` it shows, which :func:`merge_examples` keys on)."""
    x = cohort.x[row:row + 1]
    pid, side = cohort.index.at[row, "patient_id"], cohort.index.at[row, "hemisphere"]
    mask = lesion_hemispheres(cache_dir, pid, _downsample(x))[("left", "right").index(side)]
    return {"x": x[0].float().cpu().numpy(), "cam": cam(model, x)[0], "mask": mask,
            "title": title or f"{pid} {side}", "experiment": experiment}


# ------------------------------------------------------------------------------------------------
# Figure 9


def draw(ax_row, x: np.ndarray, cam: np.ndarray, mask: np.ndarray | None, slice: int | None = None,
         title: str = "", alpha: float = 0.4) -> int:
    """DWI b1000 and FLAIR of one slice of a hemisphere (x: (3, 26, H, W)) on two axes, with the CAM
    (jet) over them and the lesion's outline (white). Anterior up, midline on the left, lateral on
    the right (a left hemisphere in radiological view). ``slice``: default :func:`representative_slice`;
    ``title`` labels the row. Returns the slice drawn."""
    k = representative_slice(mask, cam) if slice is None else slice

    def view(a):  # rows run posterior -> anterior, columns lateral -> midline: flip both
        return np.asarray(a, dtype=np.float32)[k][::-1, ::-1]

    for ax, ch, name in zip(ax_row, (0, 2), ("DWI b1000", "FLAIR")):
        img = view(x[ch])
        ax.imshow(img, cmap="gray", vmin=0, vmax=max(float(np.percentile(img, 99.5)), 1e-6), interpolation="nearest")
        ax.imshow(view(cam), cmap="jet", vmin=0, vmax=1, alpha=alpha, interpolation="bilinear")
        if mask is not None and (view(mask) > 0).any():  # a pooled mask: the half-lesion line when it has one
            m = view(mask)
            ax.contour(m, levels=[0.5 if m.max() > 0.5 else 0.5 * m.max()], colors="white", linewidths=0.8)
        ax.set_title(f"{name}, slice {k}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    ax_row[0].set_ylabel(title, fontsize=9)
    return k


def figure9(examples, alpha: float = 0.4):
    """Fig. 9 style panel: one row per example (dicts with x, cam, mask, title and optionally slice,
    e.g. from :func:`cam_example`), DWI and FLAIR with the CAM overlaid and the lesion outlined."""
    import matplotlib.pyplot as plt

    n = len(examples)
    h, w = np.asarray(examples[0]["cam"]).shape[1:]
    fig, axes = plt.subplots(n, 2, figsize=(2 * 3.2 * w / h + 1.5, 3.8 * n), squeeze=False)
    for ax_row, e in zip(axes, examples):
        draw(ax_row, e["x"], e["cam"], e.get("mask"), e.get("slice"), e.get("title", ""), alpha)
    fig.colorbar(plt.cm.ScalarMappable(cmap="jet"), ax=axes, shrink=0.6, label="Grad-CAM (per hemisphere max)")
    return fig


def save_examples(path, examples) -> None:
    """Store :func:`figure9`'s examples (x, cam, mask, title, optional slice) in one compressed
    ``.npz`` (float16 images: a few hundred kB), so that a clone without checkpoints or images
    draws the same figure (:func:`load_examples`)."""
    arrays = {}
    for i, e in enumerate(examples):
        arrays[f"x{i}"] = np.asarray(e["x"], dtype=np.float16)
        arrays[f"cam{i}"] = np.asarray(e["cam"], dtype=np.float16)
        if e.get("mask") is not None:
            arrays[f"mask{i}"] = np.asarray(e["mask"], dtype=bool)
        arrays[f"title{i}"] = np.array(e.get("title", ""))
        if e.get("slice") is not None:
            arrays[f"slice{i}"] = np.array(int(e["slice"]))
        if e.get("experiment") is not None:
            arrays[f"experiment{i}"] = np.array(e["experiment"])
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, n=np.array(len(examples)), **arrays)


def load_examples(path) -> list[dict]:
    with np.load(path) as z:
        out = []
        for i in range(int(z["n"])):
            e = {"x": z[f"x{i}"].astype(np.float32), "cam": z[f"cam{i}"].astype(np.float32),
                 "mask": z[f"mask{i}"] if f"mask{i}" in z else None, "title": str(z[f"title{i}"])}
            if f"slice{i}" in z:
                e["slice"] = int(z[f"slice{i}"])
            if f"experiment{i}" in z:
                e["experiment"] = str(z[f"experiment{i}"])
            out.append(e)
    return out


# ------------------------------------------------------------------------------------------------
# stored results that grow run by run


def _rank(order, experiment) -> int:
    order = list(order)
    return order.index(experiment) if experiment in order else len(order)


def merge_table(fresh: pd.DataFrame, path, order=()) -> pd.DataFrame:
    """``fresh`` rows (one or more per experiment, column ``experiment``) with the rows stored in
    ``path`` for every experiment ``fresh`` lacks: a profile's checkpoints need not all be on one
    machine at once (a paper-scale grid is trained over several sessions, and only its small files
    are kept), so what was measured earlier is kept and what is measured now replaces it. Rows come
    in ``order`` of experiments (others last, in their order)."""
    path = Path(path)
    old = pd.read_csv(path) if path.exists() else fresh.iloc[:0]
    kept = old[~old["experiment"].isin(set(fresh["experiment"]))]
    both = pd.concat([kept, fresh], ignore_index=True) if len(kept) else fresh.reset_index(drop=True)
    rank = both["experiment"].map(lambda e: _rank(order, e))
    return both.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)


def merge_examples(fresh: list[dict], path, order=()) -> list[dict]:
    """:func:`merge_table` for :func:`figure9`'s examples: each example names its ``experiment``;
    the stored ones of experiments not in ``fresh`` are kept."""
    path = Path(path)
    now = {e["experiment"] for e in fresh}
    old = [e for e in (load_examples(path) if path.exists() else []) if e.get("experiment") not in now]
    both = old + list(fresh)
    return [both[i] for i in np.argsort([_rank(order, e.get("experiment")) for e in both], kind="stable")]


def external_case(run_dir, isles_cache, pid: str, cohort_cache, downsample: int, device="cpu") -> tuple[dict, dict]:
    """One trained model (a run folder with ``best.pt``) on a patient outside the cohort (the real
    ISLES'22 case): its probability for each hemisphere, which one it scores higher, and the
    Grad-CAM of the hemisphere that holds the expert lesion with :func:`overlap`'s measures.
    Returns (table row, :func:`figure9` example)."""
    run_dir = Path(run_dir)
    exp = _experiment(run_dir.name)
    ext = external_hemispheres(isles_cache, pid, cohort_cache, downsample, device)
    model = load_run_model(run_dir, ext["x"].shape[2], device)
    side = int(ext["mask"].reshape(2, -1).sum(1).argmax())  # the hemisphere with the expert lesion
    with torch.no_grad():
        prob = torch.sigmoid(model(ext["x"].float()).float()).cpu().numpy()
    cams = cam(model, ext["x"][side:side + 1])[0]
    names = ("left", "right")
    row = {"experiment": exp.name, "task": exp.spec.title, "lesion hemisphere": names[side],
           "P, lesion hemisphere": float(prob[side]), "P, other hemisphere": float(prob[1 - side]),
           "scored higher": "lesion" if prob[side] > prob[1 - side] else "other", **overlap(cams, ext["mask"][side])}
    example = {"x": ext["x"][side].float().cpu().numpy(), "cam": cams, "mask": ext["mask"][side],
               "title": f"ISLES'22 {pid}, {exp.name}", "experiment": exp.name}
    return row, example


# the paper's localisation figure, for the summary's "paper" column (the paper's number, not ours)
PAPER_HIT = "96% (>50% overlap, radiologist; models not separated)"


def summary(study: pd.DataFrame) -> pd.DataFrame:
    """The Grad-CAM page's summary (``gradcam_summary.csv``, read by the Reproduction page's claim):
    one row per experiment of :func:`cam_study`'s table, in its order: hemispheres scored, the mean
    CAM energy in the lesion, the hit rate with its exact 95% CI, the share whose CAM peak lies in the
    lesion, and the paper's figure on the first row."""
    out = study.groupby("experiment", sort=False).agg(
        hemispheres=("patient_id", "size"), energy_in_lesion=("energy_in_lesion", "mean"),
        hit_rate=("hit", "mean"), peak_in_lesion=("peak_in_lesion", "mean"))
    ci = {e: hit_rate(g["hit"])[1] for e, g in study.groupby("experiment")}  # exact (Clopper-Pearson)
    out["hit rate (95% CI)"] = [stats.with_ci(out.at[e, "hit_rate"], ci[e]) for e in out.index]
    out["paper"] = [PAPER_HIT] + [""] * (len(out) - 1)
    return out


def hit_rate(hits) -> tuple[float, tuple[float, float], int]:
    """The share of hemispheres whose CAM hits the lesion, with its exact (Clopper-Pearson) 95%
    interval and the number of hemispheres scored (NaN hits, where a hemisphere has no lesion, left
    out). A bootstrap collapses to "0.00 (0.00-0.00)" for 0 hits; the exact interval for 0 of 89 is
    0-0.04."""
    h = np.asarray(hits, float)
    h = h[np.isfinite(h)]
    k, n = int(h.sum()), len(h)
    return (k / n if n else np.nan), stats.proportion_ci(k, n), n
