# %% [markdown] tags=["page=04_training_pretrain"]
# # Training I: pretraining and Phase 1, stroke detection
#
# The paper trains its models through a sequence of tasks (section 2.3). This page runs the first
# ones; every phase is a declared record in `tss.train.PHASES` (task, label, which hemispheres, optimiser
# settings, batch size) and every experiment an `Experiment` (architecture, phase, initialisation), so
# the table below is the configuration, not a description of it.
#
# - **Models Genesis (3D only)**: the full 3D U-Net learns to restore sub-volumes of our training
#   hemispheres distorted by the four Genesis transforms (Models chapter), minimising the MSE; a fresh
#   draw of cubes and distortions every epoch, and early stopping on the restoration MSE of a fixed set
#   of distorted cubes from the validation hemispheres.
# - **Medical pretraining**: the paper initialises its "Medical" baseline from external brain-tumour
#   classification (2D) and segmentation (3D) models. Those datasets cannot be shipped, so we use a
#   tumour task from the same synthetic anatomy: tumour-like masses with mass effect, a necrotic core
#   and vasogenic oedema (`tss.train.add_tumour`) inserted into our training hemispheres; the 2D model
#   learns to classify tumour / no tumour, the 3D U-Net to segment it. This is a stand-in, and much
#   closer to our cohort than the paper's external data are to theirs.
# - **Phase 1, stroke detection**: every hemisphere, stroke / no stroke; the 2D model from random
#   weights, the 3D model from the Genesis encoder.
#
# Optimiser (paper section 2.3): AdaBound, binary cross-entropy, lr 5e-4 (final 1e-2), batch 16;
# early stopping on validation AUC with patience 10, at most 100 epochs in the `full` profile. The
# `quick` profile keeps these settings but stops after a few epochs on downsampled hemispheres (Models
# chapter), so the whole grid runs in minutes on a CPU. Every run checkpoints each epoch and resumes
# where it stopped; a finished run is read back instead of retrained.
#
# **Where the grid can run.** These pages train in the notebook's own process. The same grid runs
# from a shell (`python -m tss train --profile P`, with `--archs`, `--phases`, `--inits`, `--seeds`)
# and on a [Dask](https://distributed.dask.org) cluster: `--workers N` starts a local one,
# `--scheduler tcp://HOST:8786` uses an existing one (for example from dask-jobqueue on a SLURM
# system). Each (seed, experiment) is then one task that waits for the task of its weight source, so
# independent runs and seeds train at once; `--gpus` gives each task one GPU; a task whose worker dies
# goes to another worker and resumes from its last checkpoint (`tests/test_engine.py` kills one to
# check). The runs land in the same run tree, so these pages then read them back instead of training.

# %% [markdown] tags=["page=05_training_tss"]
# # Training II: Phases 2 and 3, time since onset
#
# Phase 2 classifies TSS < 3 h and phase 3 TSS < 4.5 h, on the stroke hemispheres only (a patient's
# TSS probability is the mean over their stroke hemisphere(s)). Each is trained from every
# initialisation of the paper's Table 2:
#
# - **random**: all layers trained;
# - **ImageNet** (2D only): torchvision's ImageNet ResNet-18, when its weights file is present (Models
#   chapter); otherwise the row says why it is missing;
# - **medical**: our synthetic tumour task's weights (Training I);
# - **transfer**, the paper's method: phase 2 from phase 1 (stroke detection), phase 3 from phase 2.
#
# Pretrained initialisations freeze the early layers as the paper does (2D: conv1 with its batch norm
# and layer1; 3D: the first two levels of the down path); a random initialisation trains everything.
# A new output layer is learned in each phase. Optimiser: AdaBound, lr 1e-5 (final 1e-3), batch 8.

# %% [markdown] tags=["page=06_training_attention"]
# # Training III: Phase 4, attention fine-tuning, and the run summary
#
# Phase 4 starts from the phase 3 transfer model (output layer included: the task is the same,
# TSS < 4.5 h) and trains only the attention modules, everything else frozen. The last section sums up
# every run of the grid: wall time per phase and training throughput.

# %% tags=["parameters"]
# One notebook, three chapters: `make book` executes this notebook three times with papermill, once
# per value of `phases` ("genesis,medical,stroke"; "tss3,tss45"; "attention"), into the pages
# 04_training_pretrain, 05_training_tss and 06_training_attention. A cell tagged "page=NAME" belongs
# to that page only (tools/prepare_pages.py drops it from the others). By hand: set `phases`.
# Parameters (papermill injects new values below this cell)
profile = "quick"
seed = 0             # first seed; the profile says how many (quick 1, full 5)
n_seeds = None       # None: the profile's number of seeds
archs = "2d,3d"      # architectures to run
inits = "all"        # all, or e.g. "random,transfer"
jobs = -1            # torch CPU threads (-1: torch's default)
cache_dir = None     # None: results/<profile>/cache/preprocess (written by 02_preprocessing)
runs_dir = None      # None: results/<profile>/runs
phases = "genesis,medical,stroke"  # this page's phases (see above)

# %% tags=["hide-input"]
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display

from tss import profiles, project
from tss.runtree import RunTree
from tss.train import Hemispheres, grid, report, run_grid

profiles.check(profile)
P = project.paths(profile)  # every folder from the project root, whatever the working directory
cache_dir = Path(cache_dir or P.cache)
runs_dir = Path(runs_dir or P.runs)
if jobs > 0:
    torch.set_num_threads(jobs)
device = "cuda" if torch.cuda.is_available() else "cpu"
tp = profiles.TRAIN[profile]
seeds = [seed + i for i in range(n_seeds or len(tp.seeds))]
arch_list = [a.strip() for a in archs.split(",")]
phase_list = [p.strip() for p in phases.split(",")]
exps = [e for e in grid(arch_list, phase_list, imagenet=True) if inits == "all" or e.init in inits.split(",")]
# the settings of every profile this page shows (committed lowres / full runs first, then this build's)
shown_settings = []
for p, d in report.views(P.results_root, profile, runs_dir).items():
    t_p = profiles.TRAIN[p]
    what = "this build's runs (what CI trains)" if p == profile else "committed runs, read back"
    run_seeds = seeds if p == profile else sorted(int(x.name[4:]) for x in Path(d).glob("seed*"))
    shown_settings.append(f"- **{p}** ({what}): {profiles.COHORT[p].n_patients} patients, at most {t_p.max_epochs} "
                          f"epochs, patience {t_p.patience}, seeds {run_seeds}, 2D input pooled "
                          f"{profiles.MODEL[p].downsample('2d')}x in-plane")
display(Markdown("Training settings of the profiles on this page:\n\n" + "\n".join(shown_settings)
                 + f"\n\nThis build trains on `{device}`, seeds {seeds}."))
pd.DataFrame([{"experiment": e.name, "phase": e.spec.title, "init": e.init, "weights from": e.source() or e.init,
               "frozen": e.frozen(), "lr -> final": f"{e.spec.lr:g} -> {e.spec.final_lr:g}",
               "batch": e.spec.batch_size, "examples": e.spec.hemispheres} for e in exps])

# %% tags=["remove-stderr"]
results = []
for arch in arch_list:
    cohort = Hemispheres.load(cache_dir, profiles.MODEL[profile].downsample(arch), device)
    for s in seeds:
        results += run_grid([e for e in exps if e.arch == arch], cohort, RunTree(runs_dir).seed_dir(s), profile, s)
    del cohort
for r in results:
    if "skipped" in r:
        print(f"{r['experiment']} (seed {r['seed']}) skipped: {r['skipped']}")

# %% [markdown]
# ## Learning curves
#
# Top: training loss (solid) and validation loss (dashed); bottom: the score early stopping watches
# (validation AUC for the classifiers; -MSE for Genesis; AUC for the 2D and Dice for the 3D tumour
# task); the star is the epoch whose weights were kept.

# %% tags=["hide-input"]
# every profile with runs here, the largest first (committed lowres / full results), then this build's
views = report.views(P.results_root, profile, runs_dir)
for p, d in views.items():
    for arch in arch_list:
        names = [e.name for e in exps if e.arch == arch]
        if any(report.epochs(d, n).size for n in names):
            fig = report.plot_curves(d, names, title=f"{arch.upper()} ({p} profile)")
            plt.show()

# %% [markdown] tags=["caption"]
# Learning curves, one column per run: training loss (solid) and validation loss (dashed) on top, the
# score early stopping watches below; the star marks the epoch whose weights were kept. Title: the
# architecture and the profile whose runs these are.

# %% [markdown]
# ## Runs
#
# Read back from each run's `summary.json` (mean over every seed that has run, with its sd where
# there are several; *seeds* says how many). AUCs here are a first look on small validation and test
# splits; the Results chapter gives them with confidence intervals beside the paper's Table 2.

# %% tags=["hide-input"]
names = [e.name for e in exps]
for p, d in views.items():
    df = report.summaries(d)
    df = df[df["experiment"].isin(names)] if not df.empty else df  # every seed that has run, as in Results
    if not df.empty:
        display(Markdown(f"**{p} profile** ({profiles.COHORT[p].n_patients} patients):"))
        display(report.readable(report.table(df)).style.hide(axis="index")
                .set_properties(subset=["experiment"], **{"white-space": "nowrap"})
                .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.4em; font-size: 0.8em"}]))

# %% [markdown] tags=["page=06_training_attention"]
# ## Wall time and throughput, every run
#
# Wall time is the sum over a run's epochs (training, batch-norm recalibration and validation),
# including any resumed part. Throughput is the median over epochs of training examples (hemispheres,
# Genesis sub-volumes or tumour examples) per second of training steps. The ceiling for bare training
# steps at the full input on one H100 is 369 hemispheres/s (2D) and 245 (3D) with bf16 autocast at
# batch 8 (`../shared/gpu/README.md`); `of_ceiling` compares a phase with it only for GPU runs of the
# `full` profile on hemispheres (Genesis cubes and tumour examples are other inputs, and CPU runs of
# the quick profile are not comparable). The goals for the full profile: the whole grid, 5 seeds, in
# at most 15 minutes on one H100, with training steps at 70% or more of the ceiling.

# %% tags=["hide-input", "page=06_training_attention"]
every = report.summaries(runs_dir)
if not every.empty:
    display(Markdown(f"**{report.grid_verdict(every)}**"))
    display(report.throughput(every).style.format({"wall_minutes": "{:.2f}", "seconds_per_run": "{:.0f}",
                                                   "epochs": "{:.1f}", "examples_per_s": "{:.1f}",
                                                   "of_ceiling": "{:.0%}"}, na_rep="-").hide(axis="index"))

# %% [markdown] tags=["page=06_training_attention"]
# ## Speed on two CPU cores
#
# What `make bench` measured on this project's machine (2 cores, AVX512-BF16), each as a ratio of two
# measurements taken side by side in one run (absolute times on these machines vary from run to run):
# the training loop (batch selection, precise BN, validation, checkpoints) against its bare training
# steps; the quick grid with the CPU speed-ups (bf16 autocast, frozen stages computed once per
# hemisphere, precise BN from 8 batches) against the loop before them; channels_last against the
# default memory layout (adopted for the 3D models only, where it paid); and two independent runs
# side by side, one thread each (`tss train --workers 2 --threads 1`), against one run on both cores.

# %% tags=["hide-input", "page=06_training_attention"]
speed = report.cpu_speedups(P.bench)
if speed.empty:
    display(Markdown("No CPU benchmark results here: run `make bench`."))
else:
    display(speed.style.format({"ratio": "{:.2f}"}).hide(axis="index")
            .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.8em"}]))
