"""Can the models learn the clock? The TSS phases trained under training recipes other than the
paper's (:data:`tss.train.config.RECIPES`), one factor at a time, on the profile's cohort.

Each variant is an ordinary run (cached, resumable, keyed by its recipe) under
``results/<profile>/clock/seed<S>/<experiment>+<recipe>/``. Phase 1 (and its pretraining) is copied
from ``results/<profile>/runs`` with its checkpoint when the grid's is on this machine, else trained
here; the paper's recipe is trained here too, as the control. The recipe is chosen on the
validation split (the mean validation AUC over the seeds run); the test split is read once per
variant, for the table.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from .. import profiles, stats
from ..runtree import RunTree
from ..task import title_of_phase
from .config import RECIPES, TSS_PHASES, Experiment, grid
from .data import Hemispheres
from .loop import run_grid
from .planted import planted_cohort
from .study import _metrics, share

# recipes that mean nothing from random weights: nothing is frozen there, and a probe of random
# features is the audit's floor, not a recipe
TRANSFER_ONLY = ("probe", "lpft", "unfrozen")
# recipes whose input is not the hemisphere: their phase 1 would have to be trained on that input
# too, so they run from random weights only
RANDOM_ONLY = ("lesion",)
# what changes the model's input rather than how it is trained: shown, never chosen as a recipe
DIAGNOSTICS = tuple(r for r, rec in RECIPES.items() if rec.input != "hemisphere")


def experiments(arch: str, inits=("transfer", "random"), recipes=tuple(RECIPES), phase: str = "tss45") -> list[Experiment]:
    """The variants of one architecture, sources first: phase 1 (and for 3D its Models Genesis
    pretraining) as in the grid; then each recipe's TSS < 4.5 h run after the runs it starts from
    (for transfer, that recipe's TSS < 3 h run; for LP-FT, its linear probe). The paper's recipe is
    among them: the control, trained on the same machine in the same precision as the variants."""
    out = [e for e in grid([arch], phases=("genesis", "stroke"))] if "transfer" in inits else []
    for init in inits:
        for r in recipes:
            if ((init == "random" and r in TRANSFER_ONLY) or (init != "random" and r in RANDOM_ONLY)
                    or (arch != "2d" and RECIPES[r].aggregate != "probability")):
                continue  # (a slice aggregation is the 2D model's)
            need, e = [], Experiment(arch, phase, init, r)
            while e is not None and e not in out:  # the run and the runs it starts from, sources first
                need.insert(0, e)
                src = e.source()
                e = Experiment.parse(src) if src else None
            out += need
    return out


def sources(exps: list[Experiment]) -> set[str]:
    """The grid's phase 1 runs (and pretraining) among ``exps``: copied from the grid with their
    checkpoints when it has them (a copy made in another precision or configuration has another key,
    and is trained again here)."""
    return {e.name for e in exps if e.phase in ("genesis", "stroke")}


def run_variants(cohort: Hemispheres, root, grid_root, profile: str, arch: str, seeds=(0,), inits=("transfer", "random"),
                 recipes=tuple(RECIPES), progress: bool = True) -> list[dict]:
    """Train every variant of ``arch`` for each seed (cached: a finished one is read back)."""
    exps = experiments(arch, inits, recipes)
    out = []
    for s in seeds:
        where, grid_seed = RunTree(root).seed_dir(s), RunTree(grid_root).seed_dir(s)
        # only with their weights: a clone's result files alone cannot start a transfer
        share(grid_seed, where, {n for n in sources(exps) if (grid_seed / n / "best.pt").exists()})
        out += _run_by_input(exps, cohort, where, profile, s, progress=progress)
    return out


def _run_by_input(exps: list[Experiment], cohort: Hemispheres, where, profile: str, seed: int, **kw) -> list[dict]:
    """:func:`tss.train.loop.run_grid` of ``exps``, each on the input its recipe asks for: the
    hemispheres as they are, or (``input="dwi-lesion"``) within their DWI-bright region."""
    out = []
    for inp in dict.fromkeys(e.training.input for e in exps):  # each input is built once
        part = [e for e in exps if e.training.input == inp]
        out += run_grid(part, cohort.within_dwi_lesion() if inp == "dwi-lesion" else cohort, where, profile, seed, **kw)
    return out


def fit(run_dir) -> dict:
    """Did a run fit its training set at all? Its training loss at the first and last epoch beside
    the loss of a constant prediction at the label's prevalence (the binary entropy, from the
    validation patients), and the spread (SD) of its validation probabilities: a run whose loss
    stays at the prior and whose outputs barely spread has learnt nothing, not even to memorise.
    ``learned``: its validation AUC above what chance reaches on the same patients
    (:func:`tss.stats.learned`, the Reproduction page's rule)."""
    import numpy as np

    e = pd.read_csv(Path(run_dir) / "epochs.csv")
    v = pd.read_csv(Path(run_dir) / "patients.csv").query("split == 'val'")
    q = float(v["target"].mean())
    prior = float(-(q * np.log(q) + (1 - q) * np.log(1 - q))) if 0 < q < 1 else float("nan")
    judged = stats.learned(v["target"], v["prob"])  # the Reproduction page's rule
    return {"train_loss_first": float(e["train_loss"].iloc[0]), "train_loss_last": float(e["train_loss"].iloc[-1]),
            "loss_at_prior": prior, "val_prob_sd": float(v["prob"].std()),
            "val_chance_upper": judged["chance_upper"], "learned": judged["learned"]}


def _row(f: Path, e: Experiment, where: str, n_boot: int) -> dict:
    s = pd.read_json(f, typ="series")
    m = _metrics(f.parent, n_boot)  # the data-size study's test AUC with its stratified bootstrap CI
    return {"arch": e.arch, "phase": e.phase, "init": e.init, "recipe": e.recipe, "seed": int(s["seed"]),
            "val_auc": float(s["val_auc_patient"]), "test_auc": m["test_auc"], "test_lo": m["test_auc_lo"],
            "test_hi": m["test_auc_hi"], "n_test": m["test_n"],
            "epochs": int(s["epochs"]), "best_epoch": int(s["best_epoch"]),
            "minutes": float(s["wall_seconds"]) / 60, "experiment": e.name,
            "trained": f"{s.get('precision', '?')}, {where}", **fit(f.parent)}


def at_input_sizes(study_root, n_boot: int = 1000, phase: str = "tss45") -> pd.DataFrame:
    """The paper's recipe at each input size the data-size study trained (``study_root/<d>x/``), on
    its largest training set: one row per run of ``phase`` (transfer and random), with the input's
    in-plane pooling ``downsample`` and its slice size, like :func:`table`'s rows. Empty without a study."""
    rows = []
    for d in sorted(Path(study_root).glob("*x"), key=lambda p: -int(p.name[:-1]) if p.name[:-1].isdigit() else 0):
        sizes = [p for p in d.glob("n*") if p.name[1:].isdigit()]
        if not d.name[:-1].isdigit() or not sizes:
            continue
        largest = max(sizes, key=lambda p: int(p.name[1:]))
        for f in RunTree(largest).summaries():
            e = Experiment.parse(f.parent.name)
            if e.phase == phase:
                k = int(d.name[:-1])
                rows.append({"downsample": k, "input": f"{224 // k} x {112 // k}", "train_n": int(largest.name[1:]),
                             **_row(f, e, "study", n_boot)})
    return pd.DataFrame(rows)


def table(root, n_boot: int = 1000, grid_root=None) -> pd.DataFrame:
    """One row per finished TSS run under ``root``: architecture, phase, initialisation, recipe,
    seed, validation AUC, test AUC with a stratified bootstrap 95% CI (per patient), epochs, best
    epoch, minutes, and where it was trained (``trained``: its precision, "here" or "grid").

    With ``grid_root`` (the profile's grid), a model and seed that has variants here but no run of
    the paper's recipe gets the grid's paper-recipe run as its control, marked "grid" (it may come
    from another machine and precision, which ``trained`` says)."""
    rows = []
    row = partial(_row, n_boot=n_boot)
    for f in RunTree(root).summaries():
        e = Experiment.parse(f.parent.name)
        if e.phase in ("tss3", "tss45"):
            rows.append(row(f, e, "here"))
    if grid_root is not None and rows:
        have = {(r["arch"], r["phase"], r["init"], r["recipe"], r["seed"]) for r in rows}
        for arch, phase, init, seed in sorted({(r["arch"], r["phase"], r["init"], r["seed"]) for r in rows}):
            if (arch, phase, init, "paper", seed) in have:
                continue
            e = Experiment(arch, phase, init)
            f = RunTree(grid_root).run_dir(e.name, seed) / "summary.json"
            if f.exists():
                rows.append(row(f, e, "grid"))
    return pd.DataFrame(rows)


def choose(t: pd.DataFrame, arch: str, init: str = "transfer", phase: str = "tss45") -> pd.DataFrame:
    """The recipes of one model ranked by their mean validation AUC over the seeds run (the test
    AUC plays no part): recipe, seeds, mean and SD of the validation AUC, mean test AUC, and
    whether every seed learned (its validation AUC above the chance band, :func:`fit`). A diagnostic
    that changes the model's input (:data:`DIAGNOSTICS`) is not a recipe to choose."""
    g = t[(t["arch"] == arch) & (t["init"] == init) & (t["phase"] == phase) & ~t["recipe"].isin(DIAGNOSTICS)]
    if g.empty:
        return pd.DataFrame(columns=["recipe", "seeds", "val_mean", "val_sd", "test_mean", "learned"])
    if "learned" not in g:
        g = g.assign(learned=True)
    r = g.groupby("recipe").agg(seeds=("seed", "size"), val_mean=("val_auc", "mean"), val_sd=("val_auc", "std"),
                                test_mean=("test_auc", "mean"), learned=("learned", "all"))
    return r.sort_values("val_mean", ascending=False).reset_index()


def pivot(t: pd.DataFrame) -> pd.DataFrame:
    """The book's table: one row per model and recipe, the validation and test AUC of each seed."""
    if t.empty:
        return t
    t = t.assign(test=[stats.with_ci(a, (lo, hi)) for a, lo, hi in zip(t["test_auc"], t["test_lo"], t["test_hi"])],
                 val=t["val_auc"].map(lambda v: f"{v:.2f}"))
    keys = ["arch", "phase", "init", "recipe"]
    wide = t.pivot_table(index=keys, columns="seed", values=["val", "test"], aggfunc="first")
    wide.columns = [f"{what} AUC, seed {s}" for what, s in wide.columns]
    wide = wide[sorted(wide.columns, key=lambda c: (int(c.rsplit(" ", 1)[1]), c.startswith("test")))].fillna("-")
    if "trained" in t:  # precision, and here or the grid's run (the paper's control may be the grid's)
        where = t.groupby(keys)["trained"].agg(lambda v: "; ".join(sorted(set(v))))
        wide["trained"] = [where.get(k, "") for k in wide.index]
    wide["what the recipe changes"] = [RECIPES[k[3]].what for k in wide.index]
    out = wide.reset_index()
    out["arch"] = out["arch"].str.upper()
    out["phase"] = out["phase"].map(title_of_phase)
    order = {r: i for i, r in enumerate(RECIPES)}
    return out.sort_values(["arch", "phase", "init", "recipe"], key=lambda c: c.map(order) if c.name == "recipe" else c)


def curves(root, experiments_seeds) -> dict[str, pd.DataFrame]:
    """``epochs.csv`` of each (experiment, seed) under ``root``, by label."""
    out = {}
    for exp, seed in experiments_seeds:
        f = RunTree(root).run_dir(exp, seed) / "epochs.csv"
        if f.exists():
            out[f"{exp} (seed {seed})"] = pd.read_csv(f)
    return out


def plot_curves(logs: dict[str, pd.DataFrame]):
    """Training loss (left) and validation AUC (right) against epoch, one line per run; the validation
    panel has a line at chance and the same y-range for every run."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.6))
    for i, (label, d) in enumerate(logs.items()):
        a.plot(d["epoch"], d["train_loss"], color=f"C{i}", lw=1.6, label=label)
        b.plot(d["epoch"], d["val_auc"], color=f"C{i}", lw=1.6, label=label)
        best = d[d["best"]].tail(1) if "best" in d else d.iloc[[-1]]
        b.plot(best["epoch"], best["val_auc"], "o", color=f"C{i}", ms=7)
    a.set_xlabel("epoch", fontsize=12)
    a.set_ylabel("training loss (BCE)", fontsize=12)
    a.set_title("training loss", fontsize=13)
    b.axhline(0.5, color="0.5", ls="--", lw=0.8)
    b.set_ylim(0.0, 1.0)
    b.set_xlabel("epoch", fontsize=12)
    b.set_ylabel("validation AUC", fontsize=12)
    b.set_title("validation AUC (dot: the epoch kept)", fontsize=13)
    for ax in (a, b):
        ax.grid(color="0.92")
        ax.tick_params(labelsize=11)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = a.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, fontsize=12)
    fig.tight_layout(rect=(0, 0.08 + 0.06 * ((len(logs) + 1) // 2), 1, 1))
    return fig


def chosen(root, arch: str = "2d", n_boot: int = 50, grid_root=None) -> str | None:
    """The recipe that learns, chosen on validation (:func:`choose`) for ``arch``'s transfer chain
    among the variants under ``root`` (with the grid's paper-recipe runs as the control where
    ``root`` has none, see :func:`table`): the best by mean validation AUC, when it is not the
    paper's, the paper's is among them, and every seed of it left the validation chance band; else
    None (a recipe that beats the paper's but learned nothing is not put beside it in Table 2)."""
    return picked(best(root, arch, n_boot=n_boot, grid_root=grid_root))


def picked(top: dict | None) -> str | None:
    """:func:`chosen` from :func:`best`'s answer, for a caller that shows both (one read of the runs)."""
    if top is None or not top["beside_paper"] or top["recipe"] == "paper":
        return None
    return top["recipe"] if top["learned"] else None


def best(root, arch: str = "2d", n_boot: int = 50, grid_root=None) -> dict | None:
    """The best recipe by mean validation AUC for ``arch``'s transfer chain (:func:`choose`), whether
    or not it is :func:`chosen`: its name, mean validation and test AUC, seeds, whether every seed
    left the validation chance band (``learned``) and whether the paper's recipe ran beside it
    (``beside_paper``); None when ``root`` holds no such run. What the Results pages say when no
    recipe is put beside the paper's."""
    if not RunTree(root).has_runs():
        return None
    ranked = choose(table(root, n_boot=n_boot, grid_root=grid_root), arch, "transfer")
    if ranked.empty:
        return None
    top = ranked.iloc[0]
    return {"recipe": str(top["recipe"]), "val_mean": float(top["val_mean"]), "test_mean": float(top["test_mean"]),
            "seeds": int(top["seeds"]), "learned": bool(top["learned"]), "beside_paper": "paper" in set(ranked["recipe"])}


def recipe_view(root, recipe: str, dest) -> RunTree:
    """The clock's runs under ``recipe`` laid out as a grid's run tree in ``dest``, under their
    grid names (``2d-tss45-transfer+lr100`` becomes ``2d-tss45-transfer``) beside the phase 1 runs
    they start from, so that Table 2 and the claims (:func:`tss.results.table2`,
    :func:`tss.reproduction.claims`) read them as they read the grid. Small files only (no
    checkpoints); ``dest`` is rebuilt on every call. An experiment the recipe was not run on is
    absent, and the claims that need it read "not run"."""
    import shutil

    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    tree = RunTree(root)
    for f in tree.summaries():
        e = Experiment.parse(f.parent.name)
        if e.recipe != recipe and not (e.recipe == "paper" and e.phase not in TSS_PHASES):
            continue
        name = Experiment(e.arch, e.phase, e.init).name
        shutil.copytree(f.parent, RunTree(dest).run_dir(name, int(f.parent.parent.name.removeprefix("seed"))),
                        ignore=shutil.ignore_patterns("*.pt", ".lock"))
    return RunTree(dest)


def check_names(given: str, valid, what: str) -> list[str]:
    """A comma-separated command-line list (or "all") checked against ``valid``; an unknown name is
    an error that lists the valid ones."""
    names = list(valid) if given == "all" else [n.strip() for n in given.split(",") if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise ValueError(f"unknown {what}(s) {bad or given!r}; expected 'all' or some of {', '.join(valid)}")
    return names


# the positive control: the planted cohort (tss.train.planted) small enough to train on any laptop
PLANTED_PATIENTS, PLANTED_SHAPE, PLANTED_GAIN = 48, (8, 28, 14), 1.0
PLANTED_TRAIN = profiles.TrainProfile(max_epochs=6, patience=6, seeds=(0,), genesis_cubes=8, medical_per_epoch=8,
                                      synthetic_eval=8)


# the same clock at the lesion size of the lowres input: 26 slices of 56 x 28, a lesion of 1-4 slices
# and 2-4 pixels across (a quarter of the hemisphere above), FLAIR +50% after 4.5 h, 72 training
# hemispheres; 15 epochs (it learns slowly: that is what it shows)
PLANTED_SMALL = {"n_patients": 120, "shape": (26, 56, 28), "flair_gain": 0.5, "radius": (0.04, 0.07)}
PLANTED_SMALL_TRAIN = profiles.TrainProfile(max_epochs=15, patience=15, seeds=(0,), genesis_cubes=8,
                                            medical_per_epoch=8, synthetic_eval=8)
LESIONS = ("large", "small")


def run_planted(root, recipes=("paper", "lr100"), seeds=(0,), device: str = "cpu", progress: bool = True,
                lesion: str = "large", inits=("transfer", "random")) -> list[dict]:
    """Train the 2D variants of ``recipes`` (:func:`experiments` from ``inits``: phase 1, then each
    recipe's chain and its run from random weights) on the planted cohort under ``root`` (cached like
    every run). ``lesion`` "large": 48 patients, 8 x 28 x 14, a FLAIR-bright lesion after 4.5 h filling
    a quarter of the hemisphere, at most 6 epochs; "small": :data:`PLANTED_SMALL`, 15 epochs. The
    cohort is the same for every seed; the seed changes the weights and the order of the batches."""
    if lesion not in LESIONS:
        raise ValueError(f"unknown planted lesion {lesion!r}; expected one of {', '.join(LESIONS)}")
    if lesion == "small":
        cohort, tp = planted_cohort(seed=0, device=device, **PLANTED_SMALL), PLANTED_SMALL_TRAIN
    else:
        cohort = planted_cohort(PLANTED_PATIENTS, PLANTED_SHAPE, seed=0, flair_gain=PLANTED_GAIN, device=device)
        tp = PLANTED_TRAIN
    out = []
    for s in seeds:
        out += _run_by_input(experiments("2d", inits=tuple(inits), recipes=recipes), cohort, RunTree(root).seed_dir(s),
                             "quick", s, progress=progress, train_profile=tp)
    return out


def styled(wide: pd.DataFrame):
    """:func:`pivot`'s table for a page: each test AUC above its CI, small type, no index."""
    return (wide.style.hide(axis="index").format(stats.ci_below, subset=[c for c in wide.columns if c.startswith("test")])
            .set_table_styles([{"selector": "td, th", "props": "padding: 0.15em 0.5em; font-size: 0.85em"},
                               {"selector": "td:not(:last-child)", "props": "white-space: nowrap"}]))


def said_small(t: pd.DataFrame, root=None) -> list[str]:
    """What the small planted cohort's runs (:func:`table` of ``results/planted-small``) say: each run's
    kept validation AUC, its test AUC and how far its training loss fell; and, where the paper's
    reading of the slice outputs and the logit one ran side by side, how far apart their validation
    curves came (``root``: where their ``epochs.csv`` are, default the runs' own folder names)."""
    out = []
    for _, r in t.sort_values(["recipe", "seed"]).iterrows():
        out.append(f"{r['experiment']} (seed {int(r['seed'])}): validation AUC {r['val_auc']:.2f} at epoch "
                   f"{int(r['best_epoch'])} of {int(r['epochs'])}, test {r['test_auc']:.2f} "
                   f"({int(r['n_test'])} patients); training loss {r['train_loss_first']:.2f} -> "
                   f"{r['train_loss_last']:.2f} (a constant prediction: {r['loss_at_prior']:.2f}).")
    if root is not None:
        for (*_, seed), g in t.groupby(["arch", "phase", "init", "seed"]):
            by = dict(zip(g["recipe"], g["experiment"]))
            if "paper" in by and "logits" in by:
                a, b = (pd.read_csv(RunTree(root).run_dir(by[k], seed) / "epochs.csv") for k in ("paper", "logits"))
                n = min(len(a), len(b))
                gap = float((a["val_auc"].iloc[:n] - b["val_auc"].iloc[:n]).abs().max())
                out.append(f"{by['paper']} and {by['logits']} (seed {seed}): their validation AUCs differ by at "
                           f"most {gap:.2f} over {n} epochs. From random weights the slice logits stay small, where "
                           "a mean of probabilities and a mean of logits rank hemispheres alike.")
    return out


def said(planted: pd.DataFrame, variants: pd.DataFrame | None, profile: str | None) -> list[str]:
    """What the planted control and the profile's variants say for the Results, in sentences computed
    from their tables (:func:`table`): the 2D transfer chain's TSS < 4.5 h validation AUC per recipe on
    the planted cohort, then the recipe chosen on the profile's validation split against the paper's."""
    out = []
    g = planted[(planted["init"] == "transfer") & (planted["phase"] == "tss45")] if not planted.empty else planted
    if not g.empty:
        per = g.groupby("recipe")["val_auc"].agg(["mean", "size"])
        per = per.loc[sorted(per.index, key=list(RECIPES).index)]  # the paper's first
        parts = [f"{r} {m:.2f}" + (f" (mean of {int(n)} seeds)" if n > 1 else "") for r, (m, n) in per.iterrows()]
        out.append("On the planted cohort, the 2D transfer chain's TSS < 4.5 h validation AUC by recipe: "
                   + ", ".join(parts) + ".")
    if variants is None or variants.empty:
        out.append(f"No recipe has been trained on {'the `' + profile + '`' if profile else 'a paper-scale'} cohort "
                   "yet: Table 2 and the Reproduction page show the paper's recipe alone.")
        return out
    for arch in sorted(variants["arch"].unique()):
        ranked = choose(variants, arch, "transfer")
        paper = ranked[ranked["recipe"] == "paper"]
        if ranked.empty or paper.empty:
            continue
        top = ranked.iloc[0]
        if top["recipe"] == "paper":
            out.append(f"On the `{profile}` cohort no recipe beats the paper's on validation for the {arch.upper()} "
                       f"transfer chain (validation AUC {top['val_mean']:.2f}); its test AUC {top['test_mean']:.2f}.")
        else:
            out.append(f"On the `{profile}` cohort the {arch.upper()} transfer chain's best recipe on validation is "
                       f"{top['recipe']} (validation {top['val_mean']:.2f} against the paper's "
                       f"{paper['val_mean'].iloc[0]:.2f}); its test AUC is {top['test_mean']:.2f} against "
                       f"{paper['test_mean'].iloc[0]:.2f}.")
        flat = ranked[~ranked["learned"].astype(bool)]["recipe"].tolist()
        if flat and len(flat) == len(ranked):
            out.append(f"No recipe tried on the {arch.upper()} transfer chain ({', '.join(flat)}) learned on `{profile}` "
                       "on every seed it ran: on at least one seed its kept model's validation AUC stays within what "
                       "chance reaches on the same patients, so Table 2 and the Reproduction page keep the paper's "
                       "recipe alone, and the target (test AUC >= 0.85) is missed.")
        elif flat:
            out.append(f"Recipes that did not learn on `{profile}` (validation AUC within chance): {', '.join(flat)}.")
    return out
