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

# %% tags=["hide-input"]
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from tss import profiles, project, results, stages

profiles.check(profile)
results_root = Path(results_root or project.paths(profile).results_root)
# the largest profile that has training runs here (full, lowres, then the one make book ran), its folders
page = results.shown_profile(results_root, profile, cohort_dir, cache_dir)
shown, runs_dir, cohort_dir, cache_dir, out_dir = page.shown, page.runs_dir, page.cohort_dir, page.cache_dir, page.out_dir
print(f"results of the {shown} profile (make book ran {profile}); runs in {project.shown(runs_dir)}")

# %% tags=["hide-input"]
import torch

from tss import gradcam
from tss.preprocess import PreprocessCache
from tss.runtree import RunTree
from tss.train import Experiment, Hemispheres

device = "cuda" if torch.cuda.is_available() else "cpu"
model_profile = profiles.MODEL[shown]
exps = ["2d-tss45-random", "2d-attention-transfer", "3d-tss45-random", "3d-attention-transfer"]
tree = RunTree(runs_dir)

# computed for the experiments whose checkpoints and processed images are here; the stored results of
# the others (trained in an earlier session, or a clone without checkpoints) are read back and kept
have = [e for e in exps if tree.checkpoint(e) is not None]
compute = bool(have) and PreprocessCache(cache_dir).assembled()
archs_here = sorted({Experiment.parse(e).arch for e in have})
cohorts = {a: Hemispheres.load(cache_dir, model_profile.downsample(a), device) for a in archs_here} if compute else None
seed0 = results.seeds(runs_dir, have[0])[0] if have else None
files = {k: out_dir / f for k, f in (("overlap", "gradcam_overlap.csv"), ("figure9", "figure9_cams.npz"),
                                      ("isles", "gradcam_isles.csv"), ("isles_cams", "gradcam_isles_cams.npz"))}
if not compute:
    stored = [f.name for f in files.values() if f.exists()]
    display(Markdown(f"No checkpoints or processed images of the **{shown}** profile here: read back from its "
                     f"committed files ({', '.join(stored) or 'none'})."))

# %% tags=["hide-input", "remove-stderr"]
if compute:
    study = gradcam.merge_table(gradcam.cam_study(tree.seed_dir(seed0), have, cohorts, cache_dir, split="test"),
                                files["overlap"], exps)
    study.to_csv(files["overlap"], index=False)
else:
    study = pd.read_csv(files["overlap"]) if files["overlap"].exists() else None
if study is not None:
    summary = stages.gradcam_summary(out_dir)  # computed and written from the overlap table (tss.stages)
    shown_t = summary.drop(columns="hit_rate").rename(columns=lambda c: c.replace("_", " "))  # headers that wrap
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
if compute:
    c1 = next(iter(cohorts.values()))  # every arch's cohort has the same rows (hemispheres)
    rows = c1.rows("test", "stroke")
    sizes = {int(r): gradcam.lesion_hemispheres(cache_dir, c1.index.at[r, "patient_id"], 1)[
        ("left", "right").index(c1.index.at[r, "hemisphere"])].sum() for r in rows}
    row = max(sizes, key=sizes.get)
    examples = []
    for e in have:
        c = cohorts[Experiment.parse(e).arch]
        model = gradcam.load_run_model(tree.run_dir(e, seed0), c.x.shape[2], device)
        examples.append(gradcam.cam_example(model, c, row, cache_dir, title=f"{e} ({shown})", experiment=e))
    gradcam.save_examples(files["figure9"], gradcam.merge_examples(examples, files["figure9"], exps))
examples = gradcam.load_examples(files["figure9"]) if files["figure9"].exists() else []
if examples:
    fig = gradcam.figure9(examples)
    fig.savefig(out_dir / "figure9_gradcam.png", dpi=110, bbox_inches="tight")
    plt.show()

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
isles_cache = PreprocessCache(cache_dir.parent / "preprocess-isles")
# the phase 1 (stroke detection) models first: which hemisphere each scores as stroke; then phase 3-4
detectors = [results.experiment_name(a, "stroke", "random") for a in ("2d", "3d")]
isles_exps = [e for e in detectors if tree.checkpoint(e) is not None] + have
isles_ids = isles_cache.patient_ids()
if PreprocessCache(cache_dir).assembled() and isles_exps and isles_ids:
    pid = isles_ids[0]
    rows_out, examples = [], []
    for e in isles_exps:
        row, ex = gradcam.external_case(tree.checkpoint(e).parent, isles_cache.root, pid,
                                        cache_dir, model_profile.downsample(Experiment.parse(e).arch), device)
        rows_out.append(row)
        examples.append(ex)
    order = [*detectors, *exps]
    gradcam.merge_table(pd.DataFrame(rows_out), files["isles"], order).to_csv(files["isles"], index=False)
    gradcam.save_examples(files["isles_cams"], gradcam.merge_examples(examples, files["isles_cams"], order))
if files["isles"].exists() and files["isles_cams"].exists():
    display(Markdown(f"**{shown} profile.** *P*: the model's probability (stroke for phase 1, TSS < 4.5 h "
                     "after); the CAM measures are on the hemisphere with the expert lesion."))
    isles_t = pd.read_csv(files["isles"]).rename(columns=lambda c: c.replace("_", " "))  # headers that wrap
    display(isles_t.style.format(precision=2).format({"energy in lesion": "{:.2%}", "high in lesion": "{:.0%}"})
            .hide(axis="index"))
    fig = gradcam.figure9(gradcam.load_examples(files["isles_cams"]))
    plt.show()
else:
    print("ISLES'22 case not preprocessed here (Preprocessing chapter) or no checkpoints: skipped.")

# %% [markdown] tags=["caption=fig-gradcam-isles"]
# Grad-CAM on the real ISLES'22 case, hemisphere with the expert lesion (outlined in white), for the
# phase 1 detectors and the TSS models; colour relative to each CAM's maximum.
