# %% [markdown]
# # How many patients does the method need?
#
# A clinical group planning its own cohort asks this first, and it decides how this companion can
# test the paper on two CPU cores: the paper trains its 2D model on 224 x 112 hemisphere slices, and
# a smaller input trains many times faster. This page measures both questions at once: the 2D
# transfer chain of the paper (phase 1 stroke detection from random weights, then TSS < 3 h, TSS <
# 4.5 h and the attention fine-tuning, each from the previous phase's weights with the early layers
# frozen) is trained from scratch on nested subsets of the training patients, at two in-plane input
# sizes, with the same validation and test patients throughout. A TSS < 4.5 h model from random
# weights at each size shows what the transfer adds as data shrinks.
#
# - **Sizes** count training stroke hemispheres (the examples of the TSS phases; phase 1 also sees
#   their contralateral hemispheres). A smaller subset's patients are among every larger one's, and
#   each keeps the training split's share of patients scanned before and after 4.5 h.
# - **Procedure** as the profile's grid: AdaBound at the paper's learning rates, early stopping on the
#   validation AUC with the profile's patience and epoch cap.
# - **Uncertainty**: each point is one training run (one seed); bars are stratified bootstrap 95% CIs
#   over the test patients (hemispheres for stroke detection). The spread between seeds is not in them.
#
# `python -m tss study --profile <profile>` runs the same study from the command line (cached and
# resumable like every run: a killed study continues where it stopped).

# %% tags=["parameters", "remove-cell"]
# Parameters (papermill injects new values below this cell)
profile = "quick"
seed = 0             # training seed of every run of the study
jobs = -1            # torch CPU threads (-1: torch's default)
cache_dir = None     # None: results/<profile>/cache/preprocess (written by 02_preprocessing)
train = True         # run (or read back) this profile's study; False: only show the committed ones
n_boot = 1000

# %% tags=["remove-cell"]
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from tss import profiles, project, results, stats
from tss.train import study

profiles.check(profile)
P = project.paths(profile)  # every folder from the project root, whatever the working directory
root = P.results_root
if jobs > 0:
    torch.set_num_threads(jobs)
if train:
    study.run_study(Path(cache_dir or P.cache), P.study, profile,
                    seed=seed, device="cuda" if torch.cuda.is_available() else "cpu", progress=False,
                    grid_root=P.runs)  # the grid's runs on the whole split are reused

# %% tags=["hide-input"]
shown = project.profiles_with("study/*x/n*/seed*/*/summary.json", root)  # every profile with a study, largest first
for p in shown:
    t = study.table(project.under(root, p).study, n_boot=n_boot)
    tp, cohort = profiles.TRAIN[p], profiles.COHORT[p]
    display(Markdown(f"## Profile `{p}`: {cohort.n_patients} patients, at most {tp.max_epochs} epochs, "
                     f"patience {tp.patience}"))
    fig = study.plot(t, profile=p, references=results.reference_aucs(root, p))
    plt.show()
    display(Markdown("Test AUC (95% CI) per input size and training-set size; the last columns give "
                     "phase 1's epochs (best epoch) and the wall time of all runs of that size."))
    wide = study.pivot(t)
    aucs = [c for c in wide.columns if c in study.LABELS.values()]
    display(wide.style.hide(axis="index")  # each AUC above its CI: eight columns fit the text column
            .format(stats.ci_below, subset=aucs)
            .set_table_styles([{"selector": "td, th", "props": "padding: 0.15em 0.6em; font-size: 0.85em"},
                               {"selector": "td", "props": "white-space: nowrap"}]))
    said = study.findings(t)
    if by_input := study.input_said(study.input_effect(t)):  # "" with one input size
        said.append(by_input)
    if said:
        display(Markdown("What the runs say (test AUC, read from the table; one seed each, so a difference "
                         "smaller than the CIs above is not evidence):\n\n" + "\n".join(f"- {s}" for s in said)))
if not shown:
    display(Markdown("No profile has a data-size study here yet: run `make book` or `python -m tss study`."))

# %% [markdown] tags=["caption"]
# Test AUC of the 2D transfer chain against the number of training stroke hemispheres, per input size,
# with 95% bootstrap confidence intervals; validation and test patients held fixed. The heading above
# names the profile.

# %% [markdown]
# ## What the study decided for the `lowres` profile
#
# The `lowres` grid of the Results chapter trains its 2D models at 56 x 28. The study asked whether
# that input, or the number of patients, is why the 2D transfer chain misses the paper. In these
# runs (one seed per point: the spread between training runs, visible where a curve dips at 200,
# is as large as some of the differences) the answer is no to both:
#
# - **Input.** Twice the input (112 x 56: four times the pixels, several times the minutes in the
#   table's last column) gave better stroke detection at three of the four sizes, nominally
#   significant at two and at none after correcting for the comparisons made. No TSS model differs
#   significantly between the two inputs at any size (85 test patients: the tests can miss a
#   difference of 0.1), and the transfer chain's test AUC stays under 0.5 at both. So the grid keeps
#   56 x 28 for 2D: the larger input would multiply its 2D time for no TSS result that the study
#   can tell apart.
# - **Patients.** At 56 x 28, more training patients help stroke detection and the TSS model from
#   random weights; at 112 x 56 only stroke detection. At neither input do they lift the transfer
#   chain's test AUC above 0.5.
# - The Results chapter (*Why a TSS model can rank below chance*) offers an explanation the study
#   cannot test: the chain's TSS models keep ranking patients as their stroke detector does, and in
#   this cohort the more conspicuous lesion is the later one.
