# %% [markdown]
# # Preprocessing: from native MRI to hemisphere tensors
#
# Paper section 2.1 (Figures 2 and 3): N4 bias-field correction, reorientation to the template,
# skull and neck removal (FSL BET), registration of the b0 (T2w) image to the T2w MNI152 atlas resized
# to 224 x 224 x 26 (FSL FLIRT), a second brain extraction, co-registration of b1000 and FLAIR to the
# registered b0, intensity normalisation and histogram matching to a reference study. Each brain is then
# split along the mid-sagittal plane into two hemispheres of 3 x 26 x 224 x 112 (channels DWI b1000,
# b0, FLAIR, values in [0, 1]), the right one flipped onto the left.
#
# **What we do differently, and why**
#
# - *Libraries.* SimpleITK (N4, registration, resampling), nibabel/torchio (reading, orientation,
#   histogram standardisation), nilearn (MNI152 template). FSL cannot be installed from our registries.
# - *Template.* The paper registers to the **T2w** MNI152 atlas; nilearn ships only the skull-stripped
#   T1 one. We synthesise a T2-weighted MNI152 *head* from nilearn's GM/WM maps and brain mask with the
#   spin-echo signal equation, plus extra-cerebral CSF, a dark skull and fat-suppressed scalp. A
#   brain-only template made the registration inflate the brain by ~20% to cover the bright CSF rim of
#   the b0. Caveat: the synthetic cohort is built from the same tissue maps, which makes registration
#   easier for synthetic patients than for real ones; the real ISLES'22 case below is the honest check.
# - *Skull and neck removal.* Template-mask propagation: the template's brain mask carried into the
#   patient's b0 space through the inverse of the registration. The second brain masking keeps, on the
#   registered grid, the template brain where the b0 has signal.
# - *Registration.* b0 -> template: affine (similarity first), Mattes mutual information, on a mask
#   of the template's brain plus its CSF and skull edge. b1000 shares b0's acquisition, so it reuses
#   b0's transform (and b0's N4 field). FLAIR has its own grid and pose: its own affine
#   mutual-information registration into the registered b0's (template) space, started from b0's
#   transform since the patient moves little between sequences. We first registered FLAIR rigidly to
#   the b0 in scanner space, as the paper's wording suggests; measured against the known truth, that
#   optimum was biased by 2-8 mm on some patients (thick slices on two different grids, inverted CSF
#   contrast), while the registration to the template stays near 2-3 mm.
# - *Sanity checks.* A registration fails when the volume change is implausible, the propagated brain
#   is not 0.9-2.6 L, or the registered b0 correlates less than 0.25 with the template.
# - *Normalisation.* torchio's HistogramStandardization (Nyul-Udupa landmarks, brain-masked) learned on
#   one reference study (the first training patient), applied to every patient; the standardised
#   1st-99th percentile range 0-100 is divided by 150 and clipped to [0, 1], so that hyperintense
#   lesions are not saturated.

# %% tags=["parameters"]
# Parameters (papermill injects new values below this cell)
profile = "quick"
seed = 0
jobs = -1
cohort_dir = None    # None: data/synthetic-<profile> (written by 01_cohort)
cache_dir = None     # None: results/<profile>/cache/preprocess
results_dir = None   # None: results/<profile>/preprocess
isles_manifest = None  # None: data_manifest/isles22-sample.csv
n_qc = None          # synthetic patients measured against their known truth (None: all, ~1 s each)

# %% tags=["hide-input"]
import json
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from tss import manifest, preprocess, profiles, project
from tss.preprocess import qc

profiles.check(profile)
P = project.paths(profile)  # every folder from the project root, whatever the working directory
cohort_dir = Path(cohort_dir or P.cohort)
cache_dir = Path(cache_dir or P.cache)
results_dir = Path(results_dir or P.stage("preprocess"))
results_dir.mkdir(parents=True, exist_ok=True)
pd.options.display.float_format = "{:.2f}".format

# %% [markdown]
# ## Figure 2: the pipeline

# %% tags=["hide-input"]
boxes = [("DWI b1000", "b0 (T2w)", "FLAIR"), "N4 bias field\n(SimpleITK)", "reorient\n(RAS, nibabel)",
         "register b0 -> T2w MNI head\naffine, mutual information", "skull/neck removal\ntemplate-mask propagation",
         "co-register\nb1000: b0's transform\nFLAIR: own affine MI\nfrom b0's start",
         "resample to 224x224x26\n+ second brain mask",
         "histogram matching\nto a reference (torchio)\nscale to [0, 1]",
         "split hemispheres\nflip right onto left\n2 x 3x26x224x112"]
fig, ax = plt.subplots(figsize=(12, 4.2))
ax.set_xlim(0, 5)
ax.set_ylim(0, 2)
ax.axis("off")
pos = [(i + 0.5, 1.5) for i in range(5)] + [(i + 0.5, 0.5) for i in range(3, -1, -1)]  # a snake: 5 then 4
for i, (b, (x, y)) in enumerate(zip(boxes, pos)):
    text = "\n".join(b) if isinstance(b, tuple) else b
    ax.text(x, y, text, ha="center", va="center", fontsize=10.5,
            bbox=dict(boxstyle="round,pad=0.5", fc="#e8f0fb" if i else "#fdf0d5", ec="#4a6fa5"))
for (x0, y0), (x1, y1) in zip(pos[:-1], pos[1:]):
    if y0 == y1:
        d = 0.3 if x1 > x0 else -0.3
        ax.annotate("", xy=(x1 - d * 1.25 + (0 if x1 > x0 else 0), y1), xytext=(x0 + d, y0),
                    arrowprops=dict(arrowstyle="->", color="#4a6fa5"))
    else:
        ax.annotate("", xy=(x1, y1 + 0.3), xytext=(x0, y0 - 0.3), arrowprops=dict(arrowstyle="->", color="#4a6fa5"))
ax.set_title("Figure 2 (ours): preprocessing pipeline, paper order", fontsize=12)
fig.savefig(results_dir / "figure2_pipeline.png", dpi=130, bbox_inches="tight")

# %% [markdown] tags=["caption=fig-pipeline"]
# The preprocessing pipeline in the paper's order (our Figure 2), with the library that does each
# step.

# %% [markdown]
# ## Running it
#
# Each patient is cached by the hashes of its input files and the pipeline version; a rerun reads
# the cache and an interrupted run resumes. A patient whose input is bad is reported with its step
# and reason and the others go on.

# %% tags=["remove-stderr"]
run = preprocess.preprocess_cohort(cohort_dir, cache_dir, jobs=jobs)
print(run.summary())
arr_path = preprocess.assemble(cache_dir, cohort_dir)
hemis, index = preprocess.load_hemispheres(cache_dir)
print(f"hemisphere tensors: {tuple(hemis.shape)} {hemis.dtype}, {hemis.nbytes / 2**30:.2f} GiB; "
      f"{int(index['label'].sum())} of {len(index)} hemispheres with stroke")
print(f"at the paper's 422 patients: {hemis.nbytes / len(hemis) * 844 / 2**30:.1f} GiB in float16 "
      "(fits one GPU's memory)")
seconds = pd.Series([o.seconds for o in run.outcomes if o.ok])
print(f"seconds per patient on one core: median {seconds.median():.1f}, max {seconds.max():.1f} "
      f"(from each patient's first run)")

# %% [markdown]
# ## Quality control against the known truth
#
# For synthetic patients the generator knows where every point of the head lies in the template. The
# **registration error** is the mean distance, over brain points, between the template position our
# registration assigns and the true one, for the b0/b1000 and for the FLAIR registration. It includes
# the smooth anatomical deformation of each synthetic head, which no affine registration can follow:
# the **affine floor** column is the error of the best affine any method could find. **Brain Dice**
# compares the propagated brain mask with the true brain mask in the patient's native b0 space, and the
# last column is the fraction of the synthetic skull/scalp/neck shell left inside the mask. Targets:
# mean error < 2 mm, Dice >= 0.95. Every processed patient is measured; the *worst patient* column
# names the one with the largest error (smallest Dice) and its value. An affine registration that
# lands a few millimetres off can pass every sanity check: before pipeline 1.3 one synthetic b0 of
# this cohort landed 6.1 mm off with brain Dice 0.91. Its similarity stage had been 2.7 mm off; the
# affine stage had made the alignment worse, so the pipeline now keeps an affine stage only when it
# improves the registration metric (judged on a sample of its own).

# %%
ok_ids = [o.patient_id for o in run.outcomes if o.ok]
ids = ok_ids if n_qc is None else ok_ids[:n_qc]
qct = qc.qc_table(cohort_dir, cache_dir, ids)
qct.to_csv(results_dir / "qc.csv", index=False)
display(Markdown(f"**{len(ids)} synthetic patients** ({profile} profile)"))
qc.summarise(qct).round(3)

# %% [markdown]
# ## Figure 3: registered DWI, FLAIR and b0
#
# As in the paper's Figure 3, top to bottom: DWI (b1000), FLAIR, T2w (b0), after registration and
# normalisation, on the 224 x 224 x 26 grid (neurological orientation: patient left on the left).
# Left: a synthetic patient; right: the real ISLES'22 case (red: expert lesion mask carried through
# the same transforms).

# %% tags=["remove-stderr"]
isles_csv = Path(isles_manifest or P.manifests / "isles22-sample.csv")
isles_ok = isles_csv.exists() and all(p is None or Path(p).exists() for p in
                                      manifest.load_cohort(isles_csv, check=False).table[["b1000", "flair"]].iloc[0])
if isles_ok:
    isles_cache = cache_dir.parent / "preprocess-isles"
    isles_run = preprocess.preprocess_cohort(isles_csv, isles_cache, jobs=1, progress=False,
                                             data_roots=[isles_csv.parent / "../../shared/data/isles22-sample"])
    print(isles_run.summary())
    isles = preprocess.load_patient(isles_cache, "sub-strokecase0009")
    print({k: isles["meta"][k] for k in ("b0_source", "label_left", "label_right", "label_source", "template_correlation")})
else:
    print("The ISLES'22 sample is not next to this repository (../shared/data/isles22-sample): real-case panels skipped.")

# %% tags=["hide-input"]
landmarks = preprocess.PreprocessCache(cache_dir).cohort_meta()["landmarks"]
landmarks = {k: np.array(v) for k, v in landmarks.items()}
cases = [("synthetic " + ok_ids[0], preprocess.load_patient(cache_dir, ok_ids[0]))]
if isles_ok:
    cases.append(("ISLES'22 (real)", isles))
slices = (10, 14)  # two slices per case: the labels stay readable at the text column's width
ns = len(slices)
fig, axes = plt.subplots(3, ns * len(cases), figsize=(2.6 * ns * len(cases), 8.4))
axes = np.atleast_2d(axes)
for c, (name, p) in enumerate(cases):
    v = preprocess.pipeline.normalise(p["volume"].astype(np.float32), p["brain"], landmarks)
    for r, ch in enumerate((0, 2, 1)):  # DWI, FLAIR, b0 as in the paper
        for j, k in enumerate(slices):
            ax = axes[r, ns * c + j]
            ax.imshow(np.rot90(v[ch][:, :, k]), cmap="gray", vmin=0, vmax=1)
            if "lesion" in p and p["lesion"][:, :, k].any():
                ax.contour(np.rot90(p["lesion"][:, :, k]), [0.5], colors="tab:red", linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{name}\nslice {k}", fontsize=12)
            if ns * c + j == 0:
                ax.set_ylabel(["DWI (b1000)", "FLAIR", "T2w (b0)"][r], fontsize=13)
fig.tight_layout()
fig.savefig(results_dir / "figure3_registered.png", dpi=110)

# %% [markdown] tags=["caption=fig-registered"]
# Registered and normalised DWI b1000, FLAIR and b0 on the 224 x 224 x 26 grid (the paper's Figure 3),
# two slices each: a synthetic patient (left) and the real ISLES'22 case (right; red: its expert
# lesion mask, carried through the same transforms). Neurological orientation.

# %% [markdown]
# ## The hemisphere tensors
#
# One patient's two hemispheres as the models see them: the right hemisphere flipped onto the left,
# so that both run from the lateral edge (left of each panel) to the midline (right of each panel).
# Channels shown: DWI b1000. Title: the hemisphere's label.

# %% tags=["hide-input"]
row = index[index["label"] == 1].iloc[0]
pid = row["patient_id"]
pair = index[index["patient_id"] == pid]
fig, axes = plt.subplots(1, 2, figsize=(6, 5))
for ax, (_, r) in zip(axes, pair.iterrows()):
    h = np.asarray(hemis[r["row"]], dtype=np.float32)  # (3, 26, 224, 112)
    k = 13
    ax.imshow(h[0, k][::-1], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{pid} {r['hemisphere']}: label {r['label']}\n({r['label_source']})", fontsize=11)
    ax.set_xlabel("lateral -> midline", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %% [markdown] tags=["caption=fig-hemispheres"]
# One patient's two hemisphere tensors as the models see them (DWI b1000, middle slice): the right
# hemisphere is flipped onto the left, so both run from the lateral edge to the midline.

# %% tags=["remove-cell"]
summary_out = {
    "profile": profile, "patients": len(run.outcomes), "failed": len(run.failures),
    "seconds_per_patient_median": float(seconds.median()),
    "qc_patients": len(ids),
    "dwi_error_mean_mm": float(qct["dwi_error_mean_mm"].mean()),
    "flair_error_mean_mm": float(qct["flair_error_mean_mm"].mean()),
    "affine_floor_mean_mm": float(qct["affine_floor_mm"].mean()),
    "brain_dice_mean": float(qct["brain_dice"].mean()),
    "hemispheres_shape": list(hemis.shape),
}
(results_dir / "preprocess_summary.json").write_text(json.dumps(summary_out, indent=1))
summary_out
