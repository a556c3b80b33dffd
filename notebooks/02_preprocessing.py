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

# %% tags=["hide-input", "remove-stderr"]
import warnings

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import pandas as pd
from IPython.display import Markdown, display

from tss import profiles, stages

profiles.check(profile)
pd.options.display.float_format = "{:.2f}".format
# the pipeline over the cohort (cached per patient), its quality control, the ISLES'22 case and every
# figure of this page, by its stage (tss.stages); the cells below show what it returns
page = stages.preprocessing_chapter(profile, cohort_dir, cache_dir, results_dir, isles_manifest, n_qc, jobs)
T, said = page.tables, page.said

# %% [markdown]
# ## Figure 2: the pipeline

# %% tags=["hide-input"]
display(page.figures["figure2_pipeline"])

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
print(said["run"])
print(f"hemisphere tensors: {said['hemis_shape']} {said['hemis_dtype']}, {said['hemis_gib']:.2f} GiB; "
      f"{said['stroke']} of {said['hemispheres']} hemispheres with stroke")
print(f"at the paper's 422 patients: {said['paper_gib']:.1f} GiB in float16 (fits one GPU's memory)")
seconds = said["seconds"]
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

# %% tags=["hide-input"]
if said["qc_patients"]:
    display(Markdown(f"**{said['qc_patients']} synthetic patients** ({profile} profile)"))
    display(T["qc_summary"].round(3))
else:
    display(Markdown("This cohort has no known truth (it is not synthetic): no patient was measured."))

# %% [markdown]
# ## Figure 3: registered DWI, FLAIR and b0
#
# As in the paper's Figure 3, top to bottom: DWI (b1000), FLAIR, T2w (b0), after registration and
# normalisation, on the 224 x 224 x 26 grid (neurological orientation: patient left on the left).
# Left: a synthetic patient; right: the real ISLES'22 case (red: expert lesion mask carried through
# the same transforms).

# %% tags=["remove-stderr"]
if said["isles_ok"]:
    print(said["isles_run"])
    print(said["isles_meta"])
else:
    print("The ISLES'22 sample is not next to this repository (../shared/data/isles22-sample): real-case panels skipped.")

# %% tags=["hide-input"]
display(page.figures["figure3_registered"])

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
display(page.figures["hemispheres"])

# %% [markdown] tags=["caption=fig-hemispheres"]
# One patient's two hemisphere tensors as the models see them (DWI b1000, middle slice): the right
# hemisphere is flipped onto the left, so both run from the lateral edge to the midline.

# %% tags=["remove-cell"]
said["summary"]
