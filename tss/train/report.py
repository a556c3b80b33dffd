"""Read the result files of the runs back (never notebook state): summaries and learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .. import paper, project
from ..runtree import RunTree
from ..task import Task
from .config import Experiment

# the grid's goals on one H100 (issue 6): every run of 5 seeds in 15 minutes, and training steps on
# full-size hemispheres at 70% or more of the bare-model ceiling
GRID_MINUTES_TARGET = 15
CEILING_FRACTION_TARGET = 0.70
HEMISPHERE_TASKS = tuple(Task)


def summaries(runs_root) -> pd.DataFrame:
    """Every ``summary.json`` under ``runs_root/seed*/<experiment>/``, one row per run, and every
    ``skipped.json`` (a run that could not start, with why)."""
    tree = RunTree(runs_root)
    return pd.DataFrame([json.loads(f.read_text()) for f in tree.summaries() + tree.skipped()])


def epochs(runs_root, experiment: str) -> pd.DataFrame:
    """The per-epoch logs of one experiment over all seeds (column ``seed``)."""
    frames = [pd.read_csv(f).assign(seed=s) for s, f in RunTree(runs_root).epoch_logs(experiment)]
    return pd.concat(frames) if frames else pd.DataFrame()


PANELS_PER_ROW = 4  # runs side by side; more would shrink each panel's text below reading size in the book


MIN_LOSS_SPAN = 0.1  # a loss panel spans at least this much, so a wobble of 0.001 does not look like a spike
AUC_FLOOR = 0.3      # every AUC panel of a figure shares its y-range, from this (or lower) to 1


def plot_curves(runs_root, experiments, title: str = ""):
    """Training loss and the early-stopping score per epoch, one panel pair (loss above score) per
    experiment that ran, at most :data:`PANELS_PER_ROW` runs to a row. One colour per seed in every
    panel (solid: training, dashed: validation loss), one legend below the panels, the kept epoch
    of each seed starred; every AUC panel has the same y-range and a line at chance, and a loss
    panel spans at least :data:`MIN_LOSS_SPAN`. Experiments that did not run are named in the
    title, not drawn as empty panels."""
    from matplotlib.lines import Line2D

    logs = {n: epochs(runs_root, n) for n in experiments}
    ran = [n for n, g in logs.items() if not g.empty]
    missing = [n for n in logs if n not in ran]
    if not ran:
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no run yet: " + ", ".join(missing), ha="center", va="center")
        return fig
    cols = min(PANELS_PER_ROW, len(ran))
    rows = -(-len(ran) // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(3.2 * cols, 5.0 * rows + 0.6), squeeze=False)
    for ax in axes[:, len(ran) % cols or cols:][-2:].flat:  # the empty places of a short last row
        ax.axis("off")
    aucs = [g[Experiment.parse(n).spec.monitor] for n, g in logs.items()
            if n in ran and Experiment.parse(n).spec.monitor == "val_auc"]
    auc_lo = min([AUC_FLOOR] + [float(a.min()) - 0.02 for a in aucs])
    seeds_seen = sorted({int(s) for n in ran for s in logs[n]["seed"].unique()})
    colour = {s: f"C{i}" for i, s in enumerate(seeds_seen)}
    for k, name in enumerate(ran):
        r, j = divmod(k, cols)
        log = logs[name]
        ax_l, ax_s = axes[2 * r, j], axes[2 * r + 1, j]
        ax_l.set_title(name, fontsize=10)
        monitor = Experiment.parse(name).spec.monitor
        for seed, g in log.groupby("seed"):
            c = colour[int(seed)]
            ax_l.plot(g["epoch"], g["train_loss"], "-", lw=1.3, color=c)
            ax_l.plot(g["epoch"], g["val_loss"], "--", lw=1.3, color=c)
            ax_s.plot(g["epoch"], g[monitor], "-o", ms=3, lw=1.3, color=c)
            best = g[g["best"]].tail(1)
            ax_s.plot(best["epoch"], best[monitor], "*", ms=11, color="k")
        lo, hi = ax_l.get_ylim()
        if hi - lo < MIN_LOSS_SPAN:
            mid = (hi + lo) / 2
            ax_l.set_ylim(mid - MIN_LOSS_SPAN / 2, mid + MIN_LOSS_SPAN / 2)
        if monitor == "val_auc":
            ax_s.set_ylim(auc_lo, 1.0)
            ax_s.axhline(0.5, color="0.4", ls=":", lw=1)
        ax_l.set_ylabel("loss" if j == 0 else "", fontsize=9)
        ax_s.set_ylabel({"val_auc": "validation AUC", "val_neg_mse": "validation -MSE",
                         "val_score": "validation score"}[monitor], fontsize=9)
        ax_s.set_xlabel("epoch", fontsize=9)
        for ax in (ax_l, ax_s):
            ax.tick_params(labelsize=8)
            ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color=colour[s], lw=2, label=f"seed {s}") for s in seeds_seen]
    handles += [Line2D([], [], color="0.3", ls="-", label="training loss"),
                Line2D([], [], color="0.3", ls="--", label="validation loss"),
                Line2D([], [], color="k", marker="*", ls="", ms=10, label="kept epoch"),
                Line2D([], [], color="0.4", ls=":", label="chance (AUC 0.5)")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    if missing:
        title = (title + "; " if title else "") + "not run: " + ", ".join(missing)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.05 / rows, 1, 1))
    return fig


def _ran(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that trained (without the rows of runs skipped for a missing weight source)."""
    return df[df["skipped"].isna()] if "skipped" in df else df


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean (and, with several seeds, standard deviation) of each run's key numbers per experiment."""
    if df.empty:
        return df
    cols = [c for c in ("epochs", "best_epoch", "val_auc", "val_score", "val_neg_mse", "val_auc_patient",
                        "test_auc_patient", "test_score", "wall_seconds", "examples_per_s") if c in df]
    runs = _ran(df)
    cols = [c for c in cols if runs[c].notna().any()]  # a column no shown run has (Genesis's MSE beside classifiers)
    g = runs.groupby("experiment", sort=False)[cols]
    out = g.mean()
    if runs["seed"].nunique() > 1:
        out = out.join(g.std().add_suffix(" sd"))
    out.insert(0, "seeds", g.size())
    return out


def readable(t: pd.DataFrame) -> pd.DataFrame:
    """:func:`table` for a page: the experiment as a column, each mean with its seeds' standard
    deviation in one cell ("0.51 ± 0.01"), epochs and throughput to 1 decimal, AUCs and scores to 2,
    seconds whole; column names in words. A run that lacks a number shows "-"."""
    if t.empty:
        return t
    digits = {"epochs": 1, "best_epoch": 1, "wall_seconds": 0, "examples_per_s": 1}
    out = t.reset_index()[["experiment", "seeds"]].copy()
    for c in (c for c in t.columns if c != "seeds" and not c.endswith(" sd")):
        d = digits.get(c, 2)
        sd = t[f"{c} sd"] if f"{c} sd" in t else None
        out[c.replace("_", " ")] = [
            "-" if pd.isna(m) else f"{m:.{d}f}" + ("" if sd is None or pd.isna(sd.iloc[i]) else f" ± {sd.iloc[i]:.{d}f}")
            for i, m in enumerate(t[c])]
    return out


def throughput(df: pd.DataFrame) -> pd.DataFrame:
    """Wall time and training throughput per phase (summed and medianed over seeds), and for GPU
    runs on full-size hemispheres the fraction of the H100 bare-model ceiling (bf16, batch 8) the
    training steps reached. Genesis cubes and tumour examples are other inputs: no ceiling."""
    if df.empty:
        return df
    ran = _ran(df)
    out = ran.groupby(["arch", "phase", "device"], sort=False).agg(
        runs=("experiment", "size"), seeds=("seed", "nunique"), wall_minutes=("wall_seconds", lambda s: s.sum() / 60),
        seconds_per_run=("wall_seconds", "mean"), epochs=("epochs", "mean"),
        examples_per_s=("examples_per_s", "median"), task=("task", "first"), profile=("profile", "first")).reset_index()
    comparable = (out["profile"] == "full") & out["device"].str.startswith("cuda") & out["task"].isin(HEMISPHERE_TASKS)
    ceiling = out["arch"].map(lambda a: paper.H100_CEILING_BF16_BATCH8[a]["hemis_per_s"])
    out["of_ceiling"] = (out["examples_per_s"] / ceiling).where(comparable)
    return out.drop(columns=["task", "profile"])


def grid_verdict(df: pd.DataFrame) -> str:
    """One sentence on the grid's goals: GPU wall time of all runs and the lowest ceiling fraction."""
    if df.empty:
        return "No runs yet."
    ran = _ran(df)
    minutes = ran["wall_seconds"].sum() / 60
    seeds = ran["seed"].nunique()
    if not ((ran["profile"] == "full") & ran["device"].str.startswith("cuda")).all():
        return (f"These are {len(ran)} runs of the {', '.join(sorted(ran['profile'].unique()))} profile on "
                f"{', '.join(sorted(ran['device'].unique()))} ({minutes:.1f} min, {seeds} seed(s)): the goals "
                f"(the whole grid, 5 seeds, in <= {GRID_MINUTES_TARGET} min on one H100, training steps at >= "
                f"{CEILING_FRACTION_TARGET:.0%} of the ceiling) apply to the full profile on a GPU, which has "
                "not been run yet.")
    frac = throughput(ran)["of_ceiling"].dropna()
    worst = f"{frac.min():.0%}" if len(frac) else "n/a"
    ok_time = minutes <= GRID_MINUTES_TARGET and seeds >= 5
    ok_speed = len(frac) and frac.min() >= CEILING_FRACTION_TARGET
    return (f"{len(ran)} runs, {seeds} seeds, {minutes:.1f} min of training on {ran['device'].iloc[0]}: "
            f"{'within' if ok_time else 'outside'} the goal of 5 seeds in <= {GRID_MINUTES_TARGET} min; "
            f"slowest phase at {worst} of the ceiling ({'meets' if ok_speed else 'misses'} the "
            f"{CEILING_FRACTION_TARGET:.0%} goal).")


def cpu_speedups(bench_dir) -> pd.DataFrame:
    """The CPU speed-up ratios ``make bench`` measured (results/bench/*-cpu.json), each beside its
    target: the loop against its bare steps, the quick grid before and after, channels_last, and
    independent runs side by side (one thread each) against one run on all cores."""
    bench_dir, rows = Path(bench_dir), []

    def load(name):
        f = bench_dir / name
        return json.loads(f.read_text()) if f.exists() else None

    if (r := load("loop-cpu.json")) is not None:
        rows.append({"measure": f"training loop / bare steps ({r['experiment']}, {r['train_hemispheres']} training "
                                f"hemispheres, {r['precision']})", "ratio": r["loop_over_bare"], "target": ">= 0.80",
                     "met": r["loop_over_bare"] >= r["target"]})
    if (r := load("quickgrid-cpu.json")) is not None:
        t = r["total_seconds"]
        rows.append({"measure": f"quick grid, before / after the speed-ups ({r['patients']} patients, {r['epochs']} epochs "
                                f"a run: {t['before']:.0f} s -> {t['after']:.0f} s, {r['after_precision']})",
                     "ratio": r["speedup"], "target": ">= 3", "met": r["speedup"] >= r["target"]})
    for a in load("channels-last-cpu.json") or []:
        rows.append({"measure": f"{a['arch'].upper()} training steps, channels_last / default layout ({a['precision']})",
                     "ratio": a["ratio"], "target": "adopted where > 1.1", "met": a["ratio"] > 1.1})
    for a in (load("lanes-cpu.json") or {}).get("results", []):
        rows.append({"measure": f"{a['arch'].upper()} training steps at {'x'.join(map(str, a['shape'][1:]))}, "
                                f"{a['lanes']} one-thread runs side by side / one {a['lanes']}-thread run "
                                f"({a['precision']})",
                     "ratio": a["lanes_over_one"], "target": "side by side where > 1.1",
                     "met": a["lanes_over_one"] > 1.1})
    return pd.DataFrame(rows)


def views(results_root, profile: str, runs_dir=None) -> dict[str, Path]:
    """The run folders a Training page shows: every profile with finished runs under
    ``results_root``, the largest first (committed full / lowres results), and the one this build
    trained (``profile``, whose runs are in ``runs_dir``), last."""
    root = Path(results_root)
    out = {p: project.under(root, p).runs for p in project.profiles_with(project.FINISHED_RUNS, root) if p != profile}
    out[profile] = Path(runs_dir) if runs_dir is not None else project.under(root, profile).runs
    return out
