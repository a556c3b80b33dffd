"""How many patients the method needs: the 2D transfer chain's test AUC for TSS < 4.5 h against the
number of training stroke hemispheres, at two in-plane input sizes, validation and test held fixed.

Each size trains the paper's chain from scratch on a nested subset of the training patients (the
patients of a smaller size are among those of every larger one; each subset keeps the training
split's proportions of TSS < 4.5 h, TSS >= 4.5 h and stroke-free patients), with the profile's
optimiser settings, early stopping and epoch cap. Runs go to
``<root>/<D>x/n<N>/seed<S>/<experiment>/`` like any other run (cached, resumable); the table and the
figure are read back from their files.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import profiles, results, stats
from ..atomic import content_key
from ..runtree import RunTree
from ..task import Task
from .config import Experiment
from .data import Hemispheres
from .loop import LOCK, run_grid, training_lock

CHAIN = (Experiment("2d", "stroke", "random"), Experiment("2d", "tss3", "transfer"),
         Experiment("2d", "tss45", "transfer"), Experiment("2d", "attention", "transfer"))
RANDOM = (Experiment("2d", "tss45", "random"),)   # the same size without transfer


def training_order(index: pd.DataFrame, seed: int = 0) -> list[str]:
    """The training patients in one seeded random order in which every prefix holds the split's
    proportions of its three strata (stroke before 4.5 h, stroke after, no stroke)."""
    train = index[index["split"] == "train"]
    pts = train.groupby("patient_id").agg(stroke=("label", "max"), minutes=("onset_to_mri_min", "first"))
    stratum = np.where(pts["stroke"] == 0, 2, np.where(Task.TSS45.label(pts["minutes"]) == 1, 0, 1))
    rng = np.random.default_rng(seed)
    # the i-th of a stratum of n is placed at (i + u) / n: merged by that rank, each prefix is stratified
    rank = np.empty(len(pts))
    for s in np.unique(stratum):
        at = np.flatnonzero(stratum == s)
        rank[at[rng.permutation(len(at))]] = (np.arange(len(at)) + rng.random()) / len(at)
    return list(pts.index[np.lexsort((stratum, rank))])


def train_subset(cohort: Hemispheres, n_stroke: int | None, seed: int = 0) -> Hemispheres:
    """``cohort`` with its training split cut to the first patients of :func:`training_order` that
    hold ``n_stroke`` stroke hemispheres (None: all); validation and test untouched."""
    idx = cohort.index
    if n_stroke is None:
        return cohort
    order = training_order(idx, seed)
    stroke_per_patient = idx[idx["split"] == "train"].groupby("patient_id")["label"].sum()
    counts = np.cumsum(stroke_per_patient.loc[order].to_numpy())
    if counts[-1] < n_stroke:
        raise ValueError(f"the training split has {int(counts[-1])} stroke hemispheres, fewer than {n_stroke}")
    keep = set(order[: int(np.searchsorted(counts, n_stroke)) + 1])
    rows = np.flatnonzero(((idx["split"] != "train") | idx["patient_id"].isin(keep)).to_numpy())
    key = content_key(f"{cohort.key}:train{n_stroke}:order{seed}")
    return Hemispheres(cohort.x[rows], idx.iloc[rows], key=key)


def n_train_stroke(cohort: Hemispheres) -> int:
    return int(cohort.index.loc[cohort.index["split"] == "train", "label"].sum())


def size_dir(root, downsample: int, n_stroke: int) -> Path:
    return Path(root) / f"{downsample}x" / f"n{n_stroke}"


def run_study(cache_dir, root, profile: str = "lowres", downsamples=None, sizes=None,
              experiments=CHAIN + RANDOM, seed: int = 0, device: str = "cpu", progress: bool = True,
              train_profile: profiles.TrainProfile | None = None, load=Hemispheres.load, grid_root=None) -> list[dict]:
    """Train ``experiments`` (sources first) for every input size and training-set size;
    ``load(cache_dir, downsample, device)`` gives the cohort at one input size. Sizes and input
    sizes default to the profile's (:data:`tss.profiles.STUDY`). With ``grid_root`` (the profile's
    ``runs`` folder), the runs on the whole training split at the profile's own input size are the
    grid's runs too (same configuration, same key): they are copied from there or to there, not
    trained twice."""
    sp = profiles.STUDY[profiles.check(profile)]
    downsamples, sizes = downsamples or sp.downsamples, sizes or sp.sizes
    out = []
    for d in downsamples:
        mp = dataclasses.replace(profiles.MODEL[profile], downsample_2d=d)
        full = load(cache_dir, d, device)
        for n in sizes:
            cohort = train_subset(full, n)
            where = RunTree(size_dir(root, d, n_train_stroke(cohort))).seed_dir(seed)
            if progress:
                print(f"{d}x, {n_train_stroke(cohort)} training stroke hemispheres -> {where}", flush=True)
            same = grid_root is not None and n is None and mp == profiles.MODEL[profile] and train_profile is None
            names = {e.name for e in experiments}
            if same:  # runs the grid already has are read back here, not retrained
                share(RunTree(grid_root).seed_dir(seed), where, names)
            out += run_grid(list(experiments), cohort, where, profile, seed, progress=progress,
                            train_profile=train_profile, model_profile=mp)
            if same:
                share(where, RunTree(grid_root).seed_dir(seed), names)
        del full
    return out


def share(src: Path, dest_root: Path, names=None) -> list[str]:
    """Copy each finished run of ``src`` (of ``names``, default all) that ``dest_root`` lacks,
    checkpoints included so that later phases can start from them; returns the names copied."""
    copied = []
    for summary in sorted(Path(src).glob("*/summary.json")):
        if names is not None and summary.parent.name not in names:
            continue
        dest = Path(dest_root) / summary.parent.name
        if (dest / "summary.json").exists():
            continue
        dest.mkdir(parents=True, exist_ok=True)
        # not into a folder that another process is training: wait for it, then copy only if it failed
        with training_lock(dest):
            if not (dest / "summary.json").exists():
                shutil.copytree(summary.parent, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(LOCK))
                copied.append(summary.parent.name)
    return copied


def summaries(root) -> list[Path]:
    """``summary.json`` of every finished run of a study under ``root``: one run tree per input size
    and training-set size (``<d>x/n<size>/``, :func:`size_dir`)."""
    return [f for sizes in sorted(Path(root).glob("*x/n*")) for f in RunTree(sizes).summaries()]


def table(root, n_boot: int = 1000) -> pd.DataFrame:
    """One row per finished run of the study: input size, training-set size, experiment, test AUC
    with its bootstrap 95% CI, validation AUC, epochs, best epoch and wall time."""
    rows = []
    for f in summaries(root):
        s = pd.read_json(f, typ="series")
        run_dir = f.parent
        d, n = int(run_dir.parents[2].name.removesuffix("x")), int(run_dir.parents[1].name.removeprefix("n"))
        m = _metrics(run_dir, n_boot)
        rows.append({"downsample": d, "input": f"{224 // d} x {112 // d}", "train_stroke_hemispheres": n,
                     "experiment": s["experiment"], "seed": int(s["seed"]), **m,
                     "val_auc": s.get("val_auc_hemisphere" if s["phase"] == "stroke" else "val_auc_patient"),
                     "epochs": int(s["epochs"]),
                     "best_epoch": int(s["best_epoch"]), "wall_seconds": float(s["wall_seconds"]),
                     "run_dir": str(run_dir)})
    return pd.DataFrame(rows)


def _test_predictions(run_dir: Path) -> pd.DataFrame:
    seed = int(run_dir.parent.name.removeprefix("seed"))
    pred = results.predictions(run_dir.parent.parent, run_dir.name, seed)
    return pred[pred["split"] == "test"]


def input_effect(t: pd.DataFrame) -> pd.DataFrame:
    """The largest input against the smallest (other input sizes are left out), per model of the
    figure, training-set size and seed run at both: the two test AUCs on the same test cases
    (patients; hemispheres for stroke detection, taken as independent though they come in pairs),
    their difference, DeLong's two-sided p and Holm's adjustment of it over all the rows.
    ``t`` is :func:`table`'s (its ``run_dir`` column)."""
    from statsmodels.stats.multitest import multipletests

    keys = ["experiment", "train_stroke_hemispheres", "seed"]
    cols = keys + ["auc_large", "auc_small", "diff", "p", "p_holm", "n_test"]
    ds = sorted(t["downsample"].unique()) if not t.empty else []
    if len(ds) < 2:
        return pd.DataFrame(columns=cols)
    t = t[t["experiment"].isin(LABELS)]
    both = t[t["downsample"] == ds[0]].merge(t[t["downsample"] == ds[-1]], on=keys, suffixes=("_b", "_s"))
    rows = []
    for r in both.itertuples(index=False):
        name = f"{r.experiment} at {r.train_stroke_hemispheres} (seed {r.seed})"
        key = results.case_key(r.experiment)
        a, b = _test_predictions(Path(r.run_dir_b)), _test_predictions(Path(r.run_dir_s))
        if a.duplicated(key).any() or b.duplicated(key).any():
            raise ValueError(f"{name}: a test case appears twice in a run's predictions")
        m = results.paired(a, b, r.experiment)
        if len(m) != len(a) or len(m) != len(b) or not (m["target"] == m["target_b"]).all():
            raise ValueError(f"{name}: the two input sizes were tested on different cases "
                             f"({len(a)} and {len(b)}, {len(m)} in common, or their targets differ)")
        d = stats.delong(m["target"], m["prob"], m["prob_b"])
        rows.append({"experiment": r.experiment, "train_stroke_hemispheres": r.train_stroke_hemispheres,
                     "seed": r.seed, "auc_large": d["auc1"], "auc_small": d["auc2"], "diff": d["diff"],
                     "p": d["p"], "n_test": len(m)})
    out = pd.DataFrame(rows, columns=[c for c in cols if c != "p_holm"])
    out["p_holm"] = multipletests(out["p"], method="holm")[1] if len(out) else []
    order = {n: i for i, n in enumerate(LABELS)}
    return (out[cols].sort_values(keys, key=lambda c: c.map(order) if c.name == "experiment" else c)
            .reset_index(drop=True))


def input_said(e: pd.DataFrame, alpha: float = 0.05) -> str:
    """:func:`input_effect` in one sentence: the differences with DeLong's p below ``alpha`` before
    correction, each with its Holm-adjusted p; the models with none named as such."""
    if e.empty:
        return ""
    sig = e[e["p"] < alpha]
    parts = []
    for name, g in sig.groupby("experiment", sort=False):
        at = [f"{n} ({d:+.2f}, p = {p:.3f}, Holm {h:.3f})"
              for n, d, p, h in zip(g["train_stroke_hemispheres"], g["diff"], g["p"], g["p_holm"])]
        parts.append(f"for {SHORT[name]} at " + (", ".join(at[:-1]) + " and " if len(at) > 1 else "") + at[-1])
    none = [SHORT[n] for n in e["experiment"].unique() if n not in set(sig["experiment"])]
    n = len(e)
    said = (f"The two inputs compared by DeLong's test on the same test cases, {n} comparison{'s' * (n > 1)}: "
            f"the larger input's test AUC differs at p < {alpha:g} before correction "
            + ("; ".join(parts) + " training stroke hemispheres" if parts else "in none"))
    if parts and none:
        said += f", and at no size for {', '.join(none)}"
    if parts:
        kept = int((e["p_holm"] < alpha).sum())
        said += (f". After Holm's correction for the {n}, " + (f"{kept} remain{'s' * (kept == 1)}" if kept
                 else "none remains"))
    return said + "."


def _metrics(run_dir: Path, n_boot: int) -> dict:
    """Test AUC with a stratified bootstrap 95% CI: per patient for TSS, per hemisphere for stroke
    detection (every synthetic patient has a stroke: only hemispheres have both classes)."""
    test = _test_predictions(run_dir)
    y, p = test["target"].to_numpy(), test["prob"].to_numpy()
    auc = stats.auc_or_nan(y, p)
    lo, hi = (stats.bootstrap_ci(stats.auc, y, p, n_boot=n_boot, stratify=y) if not np.isnan(auc)
              else (np.nan, np.nan))
    return {"test_auc": auc, "test_auc_lo": lo, "test_auc_hi": hi, "test_n": len(test),
            "level": "hemisphere" if Experiment.parse(run_dir.name).phase == "stroke" else "patient"}


LABELS = {"2d-stroke-random": "phase 1: stroke detection (per hemisphere)",
          "2d-tss45-transfer": "phase 3: TSS < 4.5 h, transfer",
          "2d-attention-transfer": "phase 4: + attention fine-tuning",
          "2d-tss45-random": "TSS < 4.5 h, random init."}
SHORT = {"2d-stroke-random": "stroke detection", "2d-tss45-transfer": "TSS < 4.5 h by transfer",
         "2d-attention-transfer": "+ attention", "2d-tss45-random": "TSS < 4.5 h from random weights"}


def plot(t: pd.DataFrame, profile: str = "lowres", references: dict[str, float] | None = None):
    """Test AUC against training stroke hemispheres: stroke detection (top), TSS < 4.5 h (bottom);
    one line per input size and model, bars: bootstrap 95% CI; dotted: the paper's 2D (Table 2);
    on the TSS panel, a dashed line per reference AUC (``references``, e.g.
    :func:`tss.results.reference_aucs`: the Lee baseline and the oracle on the same test split).
    Phase 4 is drawn hollow and set apart from phase 3, which it often equals."""
    paper_auc = results.paper_aucs()
    fig, axes = plt.subplots(2, 1, figsize=(8, 11.5), sharex=True)  # stacked: each panel near full size in the text column
    panels = ((axes[0], ("2d-stroke-random",), ("2d", "stroke", "random"), "stroke detection"),
              (axes[1], ("2d-tss45-transfer", "2d-attention-transfer", "2d-tss45-random"),
               ("2d", "attention", "transfer"), "TSS < 4.5 h (per patient)"))
    markers = dict(zip(LABELS, "osD^"))
    for ax, names, paper_key, title in panels:
        for j, (_d, g) in enumerate(t.groupby("downsample", sort=True)):
            for k, name in enumerate(names):
                r = g[g["experiment"] == name].sort_values("train_stroke_hemispheres")
                if r.empty:
                    continue
                x = r["train_stroke_hemispheres"].to_numpy() * (1 + 0.07 * (k - 1))  # side by side
                err = np.vstack([r["test_auc"] - r["test_auc_lo"], r["test_auc_hi"] - r["test_auc"]])
                ax.errorbar(x, r["test_auc"], yerr=err, marker=markers[name], ms=7, capsize=3, lw=1.5,
                            ls="-" if j == 0 else "--", color=f"C{k}", alpha=1 if j == 0 else 0.75,
                            mfc="none" if name == "2d-attention-transfer" else f"C{k}", mew=1.5,
                            label=f"{LABELS[name]}, {r['input'].iloc[0]}")
        if paper_key[1] == "attention":
            for (label, auc), c in zip((references or {}).items(), ("C4", "k", "C5", "C6")):
                ax.axhline(auc, color=c, ls="--", lw=1.2, label=f"{label}: {auc:.2f}")
        if paper_key in paper_auc:
            ax.axhline(paper_auc[paper_key], color="k", ls=":", lw=1.2, label=f"paper, 2D ({paper_auc[paper_key]:.2f})")
        ax.axhline(0.5, color="0.6", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("training stroke hemispheres (log scale)", fontsize=11)
        ax.set_ylabel("test AUC", fontsize=11)
        ax.set_title(f"{title}, {profile} profile", fontsize=12)
        ax.set_ylim(0.2, 1.0)
        sizes = sorted(t["train_stroke_hemispheres"].unique())
        ax.set_xticks(sizes, [str(v) for v in sizes])
        ax.minorticks_off()
        ax.tick_params(labelsize=10, labelbottom=True)  # sharex hides the upper panel's tick labels
        ax.legend(fontsize=9.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def pivot(t: pd.DataFrame) -> pd.DataFrame:
    """One row per input size and training-set size, one column per experiment: the test AUC with
    its 95% CI (and, per size, the best epoch of phase 1 and the wall time of all its runs)."""
    if t.empty:
        return t
    t = t.assign(cell=[stats.with_ci(a, (lo, hi)) for a, lo, hi in zip(t["test_auc"], t["test_auc_lo"], t["test_auc_hi"])])
    keys = ["input", "train_stroke_hemispheres"]
    wide = t.pivot_table(index=keys, columns="experiment", values="cell", aggfunc="first")
    order = [n for n in LABELS if n in wide.columns]
    wide = wide[order].rename(columns={n: LABELS[n] for n in order}).fillna("-")  # a run not finished yet
    stroke = t[t["experiment"] == "2d-stroke-random"].set_index(keys)
    wide["phase 1 epochs (best)"] = [f"{int(stroke.loc[k, 'epochs'])} ({int(stroke.loc[k, 'best_epoch'])})"
                                     if k in stroke.index else "-" for k in wide.index]
    wide["minutes, all runs"] = [f"{m:.1f}" for m in t.groupby(keys)["wall_seconds"].sum().reindex(wide.index) / 60]
    out = wide.reset_index().rename(columns={"train_stroke_hemispheres": "training stroke hemispheres"})
    order = out["input"].map(lambda s: int(s.split(" x ")[0]))  # the smaller input first
    return out.assign(_o=order).sort_values(["_o", "training stroke hemispheres"]).drop(columns="_o")


def findings(t: pd.DataFrame) -> list[str]:
    """What the study's table says, in sentences computed from it: per input size, each model's test
    AUC at the smallest and the largest training-set size run (the inputs are compared, with tests,
    by :func:`input_effect`)."""
    if t.empty:
        return []
    t = t[t["experiment"].isin(LABELS)]
    out = []
    for _d, g in sorted(t.groupby("downsample"), key=lambda kv: -kv[0]):  # the smaller input first, as the table
        parts, n = [], g["train_stroke_hemispheres"]
        for name, label in SHORT.items():
            r = g[g["experiment"] == name].sort_values("train_stroke_hemispheres")
            if len(r) >= 2:
                a, b = r.iloc[0], r.iloc[-1]
                ends = (a["train_stroke_hemispheres"], b["train_stroke_hemispheres"])
                span = "" if ends == (n.min(), n.max()) else f" ({ends[0]} to {ends[1]})"  # a size not run yet
                parts.append(f"{label} {a['test_auc']:.2f} → {b['test_auc']:.2f}{span}")
        if parts:
            out.append(f"At {g['input'].iloc[0]}, from {n.min()} to {n.max()} training stroke hemispheres: "
                       + "; ".join(parts) + ".")
    return out
