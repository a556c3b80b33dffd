# %% [markdown]
# # Grad-CAM: where the models look (Figure 9)
#
# The paper shows Grad-CAM maps of the penultimate convolutional layer for both models, from scratch
# and pretrained, and reports that an expert radiologist found "substantial overlap (>50%) between the
# lesion and activation" in 96% of the cases, on the slice most representative of the lesion. We
# compute Grad-CAM with `pytorch-grad-cam` (`tss.gradcam`) for the TSS < 4.5 h models and, because our
# lesion masks are known, *measure* the overlap instead of judging it:
#
# - **energy in lesion**: the share of the CAM's total (over the hemisphere's 26 slices) inside the
#   lesion mask;
# - **hit**: more than 50% of the CAM's high region (at least half its maximum) lies inside the lesion
#   mask dilated by one voxel in-plane: our objective stand-in for the radiologist's ">50% overlap"
#   (a visual judgement that we cannot replicate exactly);
# - **peak in lesion**: the CAM's maximum voxel is inside the dilated lesion.
#
# Masks and CAMs are compared at the model's input resolution: the quick profile pools slices 4x (2D)
# and 8x (3D) in-plane, lowres 4x for both, full not at all; pooled, a small lesion is a few voxels, a
# hard test.

# %% tags=["parameters"]
# Parameters (papermill injects new values below this cell)
profile = "quick"     # the profile make book ran; full, then lowres results, when present, are shown first
results_root = None  # None: the project's results/ folder
cohort_dir = None     # None: data/synthetic-<profile>
cache_dir = None      # None: results/<profile>/cache/preprocess
seed = 0              # bootstrap seed
n_boot = 1000         # bootstrap replicates for every confidence interval
jobs = -1

# %% tags=["hide-input", "remove-stderr"]
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import torch
from IPython.display import Markdown, display

from tss import profiles, project, stages

profiles.check(profile)
results_root = Path(results_root or project.paths(profile).results_root)
# the CAMs of the largest profile that has training runs here (full, lowres, then the one make book ran):
# measured where its checkpoints and processed images are, else read back; by this page's stage
device = "cuda" if torch.cuda.is_available() else "cpu"
page = stages.gradcam_chapter(results_root, profile, cohort_dir, cache_dir, device=device)
shown, T, said = page.profile, page.tables, page.said
print(f"results of the {shown} profile (make book ran {profile}); runs in {project.shown(said['runs_dir'])}")
if not said["computed"]:
    display(Markdown(f"No checkpoints or processed images of the **{shown}** profile here: read back from its "
                     f"committed files ({', '.join(said['stored']) or 'none'})."))

# %% tags=["hide-input"]
if "summary" in T:
    shown_t = T["summary"].drop(columns="hit_rate").rename(columns=lambda c: c.replace("_", " "))  # headers that wrap
    display(shown_t.style.format({"energy in lesion": "{:.1%}", "peak in lesion": "{:.0%}"}))
else:
    print("Neither checkpoints nor a stored overlap table: train the grid first (Training chapter).")

# %% [markdown]
# ## Figure 9
#
# The test patient with the largest lesion, on its most representative slice (largest lesion area):
# DWI b1000 and FLAIR with the CAM of each model over them, lesion outlined in white. Colour is
# relative to each hemisphere's CAM maximum.

# %% tags=["hide-input"]
if "figure9_gradcam" in page.figures:
    display(page.figures["figure9_gradcam"])

# %% [markdown] tags=["caption=fig-gradcam"]
# Grad-CAM of each model (the paper's Figure 9) on the test patient with the largest lesion: DWI b1000
# and FLAIR with the CAM over them, lesion outlined in white; colour relative to each hemisphere's CAM
# maximum.

# %% [markdown]
# ## The real ISLES'22 case
#
# The phase 1 stroke detectors and the same TSS models on the real acute stroke case (ISLES'22, CC
# BY-SA 4.0) preprocessed in the Preprocessing chapter, normalised with the cohort's histogram
# landmarks. Its expert lesion lies in one hemisphere: a stroke detector that learnt stroke should
# score that one higher. The expert mask gives the same overlap measures. The models never saw real
# data: this shows whether what they learnt on the synthetic cohort points at a real lesion.

# %% tags=["hide-input"]
if "isles" in T:
    display(Markdown(f"**{shown} profile.** *P*: the model's probability (stroke for phase 1, TSS < 4.5 h "
                     "after); the CAM measures are on the hemisphere with the expert lesion."))
    isles_t = T["isles"].rename(columns=lambda c: c.replace("_", " "))  # headers that wrap
    display(isles_t.style.format(precision=2).format({"energy in lesion": "{:.2%}", "high in lesion": "{:.0%}"})
            .hide(axis="index"))
    display(page.figures["isles"])
else:
    print("ISLES'22 case not preprocessed here (Preprocessing chapter) or no checkpoints: skipped.")

# %% [markdown] tags=["caption=fig-gradcam-isles"]
# Grad-CAM on the real ISLES'22 case, hemisphere with the expert lesion (outlined in white), for the
# phase 1 detectors and the TSS models; colour relative to each CAM's maximum.
