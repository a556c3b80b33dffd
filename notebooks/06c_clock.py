# %% [markdown]
# # Can the models learn the clock?
#
# The Results chapter finds no deep model near the paper's TSS < 4.5 h AUC, while one number per
# patient (the FLAIR lesion ratio) and the Lee et al. baseline separate the classes well. A
# negative result about the paper's method is only worth something once the same code has been seen
# to learn when the signal is there. This page asks where the signal goes, and whether another
# training recipe, changed one factor at a time, lets the paper's architectures learn it.
#
# 1. **The audit** follows the clock along the data flow, on the same test patients at every step:
#    the generator's truth; the native images (each series' lesion signal against the mirrored
#    contralateral tissue, found with the true head pose); the registered volumes; the hemisphere
#    tensors the models see, at three in-plane poolings, alone and against the mirrored hemisphere;
#    logistic-regression probes on frozen network features (the features before the output layer, pooled
#    as the network pools them; and two early feature maps of the 2D networks pooled over the true
#    lesion, as steps 2-4 measure within it, beside the same maps pooled over the hemisphere); and the
#    trained models. A single ratio
#    is a score with a fixed direction (a higher ratio is a later scan) and is not fitted; a step's
#    three ratios together, and every probe, are fitted on the training patients with their
#    regularisation chosen on validation.
# 2. **The recipes** change one thing of the paper's TSS phases at a time (learning rate, head first,
#    what is frozen, early stopping, regularisation). Each is a named run like any other
#    (`2d-tss45-transfer+lr100`), cached and resumable. The recipe is chosen on the validation
#    split; the test AUC of every variant is shown, the chosen one among them.
#
# `python -m tss audit --profile <profile> --probes` and `python -m tss clock --profile <profile>`
# compute the same from the command line. The suite's planted-signal test
# (`tests/train/test_clock.py`) trains the same machinery (phase 1, transfer, frozen-stage cache, precise
# batch norm, fp32 and bf16) on a small cohort whose label is a FLAIR-bright lesion after 4.5 h, and
# fails unless it reaches validation AUC > 0.9.

# %% tags=["parameters", "remove-cell"]
# Parameters (papermill injects new values below this cell)
profile = "quick"
seed = 0
jobs = -1            # torch CPU threads (-1: torch's default)
cache_dir = None     # None: results/<profile>/cache/preprocess
train = True         # measure and train this profile's audit and variants (cached); False: only show
recipes = "paper,lr100"  # the variants this build trains (lowres: `python -m tss clock`, all of them)
n_boot = 1000

# %% tags=["remove-cell"]
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display

from tss import audit, manifest, profiles, project, results, stats
from tss.train import Hemispheres, clock

profiles.check(profile)
P = project.paths(profile)
if jobs > 0:
    torch.set_num_threads(jobs)
device = "cuda" if torch.cuda.is_available() else "cpu"
if train:
    cache = Path(cache_dir or P.cache)
    audit.run(cache, P.cohort, P.audit, progress=False)
    audit.run_probes(cache, (P.runs, P.clock), P.audit, profile, seed=seed, device=device, progress=False)
    audit.run_lesion_probes(cache, (P.runs, P.clock), P.audit, profile, seed=seed, device=device, progress=False)
    cohort = Hemispheres.load(cache, profiles.MODEL[profile].downsample("2d"), device)
    chosen = clock.check_names(recipes, clock.RECIPES, "recipe")
    clock.run_planted(P.planted, chosen, seeds=(seed,), device=device, progress=False)
    clock.run_variants(cohort, P.clock, P.runs, profile, "2d", seeds=(seed,), inits=("transfer",),
                       recipes=chosen, progress=False)
    del cohort

# %% [markdown]
# ## A clock the models cannot miss
#
# The planted cohort (`tss.train.planted`): 48 patients, two hemispheres each (8 slices of 28 x 14);
# every stroke hemisphere has a DWI-bright lesion, which is also FLAIR-bright (twice the tissue) when
# the scan is 4.5 h or more after onset, and nothing else differs. The 2D chain is trained on it
# exactly as on the cohort (phase 1, then TSS < 3 h and < 4.5 h with the early layers frozen and
# cached, precise batch norm), at most 6 epochs, under each recipe; a model from random weights
# beside it. Validation and test hold 10 patients each, so one AUC is coarse: the curves say more.

# %% tags=["hide-input"]
pt = clock.table(P.planted, n_boot=n_boot) if any(P.planted.glob("seed*/*/summary.json")) else pd.DataFrame()
if pt.empty:
    display(Markdown("No planted run yet: `python -m tss clock --planted` trains them (minutes)."))
else:
    display(clock.styled(clock.pivot(pt)))
    logs = clock.curves(P.planted, [(e, seed) for e in ("2d-tss45-transfer", "2d-tss45-transfer+lr100",
                                                        "2d-tss45-random", "2d-tss45-random+lr100")])
    if logs:
        fig = clock.plot_curves(logs)
        plt.show()

# %% [markdown] tags=["caption"]
# The planted cohort's TSS < 4.5 h runs (seed 0) under the paper's recipe and at x100 its learning
# rate, by transfer from phase 1 and from random weights: training loss (left) and validation AUC
# (right; dashed: chance; dot: the epoch early stopping kept).

# %% [markdown]
# ## The same clock at the cohort's lesion size
#
# The control above plants a lesion that fills a quarter of the hemisphere. The cohort's lesions,
# at the models' lowres input (56 x 28 per slice), are a few pixels across on a few of 26 slices.
# The small planted cohort (`python -m tss clock --planted --lesion small --inits random`) keeps
# everything else: 120 patients (72 stroke hemispheres to train on, 24 patients each for
# validation and test), 26 slices of 56 x 28, a DWI-bright lesion of 1-4 slices and 2-4 pixels
# across that is FLAIR-bright (+50%) after 4.5 h, a label with no noise, 15 epochs from random
# weights. It is committed (`results/planted-small`), not retrained by the book: about 6 minutes
# per run on two CPU cores.

# %% tags=["hide-input"]
ps = clock.table(P.planted_small, n_boot=n_boot) if any(P.planted_small.glob("seed*/*/summary.json")) else pd.DataFrame()
if ps.empty:
    display(Markdown("No small planted run here: `python -m tss clock --planted --lesion small --inits random "
                     "--recipes paper,logits` trains them."))
else:
    display(clock.styled(clock.pivot(ps)))
    logs = clock.curves(P.planted_small, [(e, s) for e, s in zip(ps["experiment"], ps["seed"])])
    if logs:
        fig = clock.plot_curves(logs)
        plt.show()
    display(Markdown("\n".join(f"- {s}" for s in clock.said_small(ps, P.planted_small))))

# %% [markdown] tags=["caption"]
# The small planted cohort's TSS < 4.5 h runs from random weights: training loss (left) and
# validation AUC (right; dashed: chance; dot: the epoch kept).

# %% [markdown]
# ## Where the signal goes

# %% tags=["hide-input"]
shown = project.largest_with("audit/native.csv")
if shown is None:
    display(Markdown("No profile has an audit yet: `python -m tss audit --profile <profile>` measures one."))
else:
    A = project.paths(shown)
    cohort_dir = A.cohort if (A.cohort / "manifest.csv").exists() else A.results / "cohort"  # a clone: the committed copy
    man = manifest.load_cohort(cohort_dir, check=False).table
    latent_csv = A.results / "cohort" / "latent.csv"
    latent = pd.read_csv(latent_csv) if latent_csv.exists() else None
    sc = audit.scores(A.audit, man, latent, A.runs, audit.TRAINED, lee=A.lee)
    at = audit.table(sc, n_boot=n_boot)
    n_test = int(at["n"].max())
    display(Markdown(f"Profile `{shown}`: {n_test} test patients, TSS < 4.5 h."))
    # step 4 at the models' own input (4x pooling) only; 1x and 2x are in the table below
    at_fig = at[(at["step"] != "tensors") | at["measure"].str.contains("4x")]
    fig = audit.plot(at_fig, paper=max(v for k, v in results.paper_aucs().items() if k[1] in ("tss45", "attention")))
    plt.show()

# %% [markdown] tags=["caption"]
# The clock along the data flow: each score's test AUC for TSS < 4.5 h with a stratified bootstrap
# 95% CI, grouped by step (1 truth, 2 native images, 3 registered volumes, 4 the model input at the
# models' 4x pooling (1x and 2x in the table below), 5 probes of frozen features, 6 the trained
# models); filled: the best score of its step; dotted: the
# paper's best deep model on its own cohort (the paper's number, for scale). A row with fewer patients
# (the Lee baseline's measurable ones) says so in the table below. In step 5 a row *over the true
# lesion* pools the same feature map as the row *over the hemisphere* above it, but within the true
# lesion mask, which steps 2-4 measure within and no network is given: the difference between the
# two is what pooling over the whole hemisphere, where the lesion is a few pixels, costs.

# %% tags=["hide-input"]
if shown is not None:
    display(Markdown("The best score of each step, and its change from the step before:\n\n"
                     + "\n".join(f"- {s}" for s in audit.said(audit.headline(at)))))
    with pd.option_context("display.max_rows", 200):
        display(at.assign(step=at["step"].map(audit.STEP_TITLE),
                          auc=[stats.with_ci(a, (lo, hi)) for a, lo, hi in zip(at["auc"], at["lo"], at["hi"])])
                .drop(columns=["lo", "hi"]).rename(columns={"auc": "test AUC (95% CI)", "n": "patients"})
                .style.hide(axis="index")
                .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.6em; font-size: 0.85em"}]))

# %% [markdown]
# ## The TSS phases under other recipes

# %% tags=["hide-input"]
cp = project.largest_with("clock/seed*/*/summary.json")
if cp is None:
    display(Markdown("No variant has finished yet: `python -m tss clock --profile <profile>` trains them."))
else:
    C = project.paths(cp)
    ct = clock.table(C.clock, n_boot=n_boot, grid_root=C.runs)  # the grid's paper-recipe runs where none ran here
    small = (" The `quick` profile proves the code runs; its 16 test patients are too few to choose a recipe or "
             "to judge one." if cp == "quick" else "")
    display(Markdown(f"Profile `{cp}`. Validation AUC (per patient) and test AUC with its 95% CI of every "
                     f"variant run, per seed; the paper's recipe is the first row of each model. *trained*: the "
                     "precision and where: *here* (this study, on this machine) or *grid* (the grid's own run of the "
                     f"paper's recipe, the control where this study did not retrain it).{small}"))
    display(clock.styled(clock.pivot(ct)))
    display(Markdown("Did each run fit its training patients at all? Its training loss at the first and last "
                     "epoch beside the loss of a constant prediction at the label's prevalence, and the spread "
                     "(SD) of its validation probabilities; a run that stays at the prior, with outputs that "
                     "barely spread, has learnt nothing, not even to memorise."))
    fits = ct.sort_values(["arch", "phase", "init", "recipe", "seed"])[
        ["experiment", "seed", "trained", "train_loss_first", "train_loss_last", "loss_at_prior", "val_prob_sd"]]
    display(fits.rename(columns={"train_loss_first": "train loss, first epoch", "train_loss_last": "last epoch",
                                 "loss_at_prior": "constant prediction", "val_prob_sd": "SD of validation prob."})
            .style.hide(axis="index").format(precision=3)
            .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.5em; font-size: 0.85em"}]))
    lines = []
    for arch in sorted(ct["arch"].unique()):
        for init in ("transfer", "random"):
            ranked = clock.choose(ct, arch, init)
            if ranked.empty:
                continue
            top, paper = ranked.iloc[0], ranked[ranked["recipe"] == "paper"]
            vs = (f"; the paper's: validation {paper['val_mean'].iloc[0]:.2f}, test {paper['test_mean'].iloc[0]:.2f}"
                  if not paper.empty and top["recipe"] != "paper" else "")
            lines.append(f"{arch.upper()} TSS < 4.5 h, {init}: **{top['recipe']}** has the best mean validation AUC "
                         f"({top['val_mean']:.2f} over {int(top['seeds'])} seed{'s' if top['seeds'] > 1 else ''}; "
                         f"its test AUC {top['test_mean']:.2f}){vs}"
                         + ("" if top["learned"] else "; it did not learn (validation AUC within chance)") + ".")
    display(Markdown("Chosen on validation (the mean validation AUC over the seeds run; the test AUC plays no "
                     "part in the choice):\n\n" + "\n".join(f"- {s}" for s in lines)))
    diag = ct[ct["recipe"].isin(clock.DIAGNOSTICS)]
    for _, d in diag.iterrows():
        base = ct[(ct["arch"] == d["arch"]) & (ct["init"] == d["init"]) & (ct["phase"] == d["phase"])
                  & (ct["recipe"] == "paper") & (ct["seed"] == d["seed"])]
        vs = (f", against validation {base['val_auc'].iloc[0]:.2f} and test {base['test_auc'].iloc[0]:.2f} with the "
              "whole hemisphere" if not base.empty else "")
        display(Markdown(
            f"**A diagnostic: shown only where the lesion is.** `{d['experiment']}` (seed {d['seed']}) sees each "
            "hemisphere with everything outside its DWI-bright region zeroed (brain voxels more than 3 SD above "
            "the hemisphere's mean DWI, grown by 2 pixels; found from the image, not from the true mask). Not "
            "the paper's input, and not a recipe to choose: it asks whether the same network, trained the same "
            f"way, learns the clock once it cannot look elsewhere. Validation AUC {d['val_auc']:.2f}, test "
            f"{stats.with_ci(d['test_auc'], (d['test_lo'], d['test_hi']))}{vs}"
            + ("; it left the validation chance band." if d["learned"] else "; inside the validation chance band.")))
    sizes = clock.at_input_sizes(C.study, n_boot=n_boot)
    if not sizes.empty and sizes["downsample"].nunique() > 1:
        display(Markdown("**A larger input.** The data-size study (*How much data does it need?*) trained the "
                         "same TSS < 4.5 h runs under the paper's recipe at two input sizes, with every training "
                         "patient. At twice the input a lesion has four times the pixels and layer3's grid grows "
                         "from 4 x 2 to 7 x 4; a lesion's share of the hemisphere, which the pooling averages "
                         "over, stays the same:"))
        display(sizes.assign(**{"test AUC (95% CI)": [stats.with_ci(a, (lo, hi)) for a, lo, hi in
                                                      zip(sizes["test_auc"], sizes["test_lo"], sizes["test_hi"])]})
                [["input", "init", "train_n", "val_auc", "test AUC (95% CI)", "learned", "trained"]]
                .rename(columns={"train_n": "training hemispheres", "val_auc": "validation AUC",
                                 "learned": "left the chance band"})
                .style.hide(axis="index").format(precision=2))
    ranked = clock.choose(ct, "2d", "transfer")
    if not ranked.empty:
        top = ranked.iloc[0]["recipe"]
        pick = [("2d-tss45-transfer", seed)] + ([(f"2d-tss45-transfer+{top}", seed)] if top != "paper" else [])
        logs = clock.curves(C.clock, pick)
        if f"2d-tss45-transfer (seed {seed})" not in logs:  # the control is the grid's own run
            logs = {f"{k} (grid)": v for k, v in clock.curves(C.runs, pick[:1]).items()} | logs
        if logs:
            fig = clock.plot_curves(logs)
            plt.show()

# %% [markdown] tags=["caption"]
# The 2D TSS < 4.5 h transfer run of the profile shown, under the paper's recipe and under the recipe
# chosen on validation: training loss (left) and validation AUC (right; dashed: chance; dot: the
# epoch early stopping kept).

# %% [markdown]
# ## What this changes in the Results

# %% tags=["hide-input"]
variants = clock.table(project.paths(cp).clock, n_boot=n_boot, grid_root=project.paths(cp).runs) if cp else None
display(Markdown("\n".join(f"- {s}" for s in clock.said(pt, variants, cp))))
