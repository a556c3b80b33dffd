"""Writes notebooks/*.ipynb from the cell sources below (outputs stripped).

Notebooks are the source of truth once written; this script exists so a reviewer can read the
notebook's code as plain Python and so the notebooks are rebuilt reproducibly.
Run: .venv/bin/python tools/build_notebooks.py
"""

from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parents[1]


def md(src):
    return nbf.v4.new_markdown_cell(src.strip())


def code(src, tags=()):
    c = nbf.v4.new_code_cell(src.strip())
    if tags:
        c.metadata["tags"] = list(tags)
    return c


COHORT = [
    md("""
# Data: a synthetic cohort with the paper's physics

The paper's 422 patients (UCLA, 2011-2019) are private. This chapter builds the cohort every later
chapter uses: **synthetic but physical**. Anatomy is the MNI152 template that nilearn ships
(1 mm GM and WM maps and brain mask); contrast comes from the MR signal equations with tissue
relaxation times and diffusivities; each patient is then "acquired" in native space with their own
head pose, voxel sizes and 6-6.5 mm slices, a FLAIR on its own grid, a bias field, Rician noise and a
skull/scalp shell. Lesions follow the physiology the paper relies on: the ADC falls within the first
hour, so **DWI is bright at every time since onset (TSS)**, while the lesion's T2 (and so its FLAIR
signal) rises as a sigmoid of TSS whose midpoint and amplitude vary between patients, so **FLAIR
becomes bright only hours later**: the DWI-FLAIR mismatch.

A real cohort in the same layout (a BIDS-like folder plus `manifest.csv`, schema in
`data_manifest/README.md`) goes through exactly the same code: set `cohort_dir` below to it.

What is ours and what is the paper's is always labelled: columns prefixed *paper* are copied
from the paper (Table 1, Table 2); every other number is computed here.
"""),
    code("""
# Parameters (papermill injects new values below this cell)
profile = "quick"    # quick: small cohort (CPU); full: the paper's 422 patients
n = None             # number of patients; None: the profile's size
seed = 0
jobs = -1            # worker processes for generation (-1: all cores)
cohort_dir = None    # None: ../data/synthetic-<profile>; or a real cohort folder with manifest.csv
results_dir = None   # None: ../results/<profile>/cohort
n_boot = 2000        # bootstrap replicates for confidence intervals
""", tags=["parameters"]),
    code("""
import json
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from tss import manifest, paper, profiles, results, stats, synth, tables, viz
from tss.synth.cohort import population_oracle_auc

profiles.check(profile)
n = n or profiles.COHORT[profile].n_patients
cohort_dir = Path(cohort_dir or f"../data/synthetic-{profile}")
results_dir = Path(results_dir or f"../results/{profile}/cohort")
results_dir.mkdir(parents=True, exist_ok=True)
sns.set_theme(context="notebook", style="whitegrid")
pd.options.display.float_format = "{:.3f}".format
""", tags=["hide-input"]),
    md("## Generating the cohort\n\nGeneration is cached per patient by the hash of its plan and the generator "
       "version: a rerun reuses finished patients, and an interrupted run resumes."),
    code("""
result = synth.generate(cohort_dir, n=n, seed=seed, jobs=jobs)
meta = json.loads((cohort_dir / "generator.json").read_text())
print(f"{result.n_patients} patients: {result.n_generated} generated, {result.n_cached} reused from cache, "
      f"{result.seconds:.0f} s wall time")
findings = manifest.validate(cohort_dir)  # reads every file fully: catches truncated images
print(manifest.format_findings(findings))
if any(f.fatal for f in findings):
    raise manifest.ManifestError(findings)
cohort = manifest.load_cohort(cohort_dir, check=False)
latent = synth.load_latent(cohort_dir)
results.record_cohort(cohort_dir, results_dir)  # its small tables travel with the results (committed)
df = cohort.table.merge(latent[["patient_id", "territory", "lesion_ml", "dwi_ratio", "b0_ratio", "flair_ratio",
                                "latent_t2_increase", "oracle_score"]], on="patient_id")
df["tss_lt_4_5h"] = (df["onset_to_mri_min"] < synth.TSS_45H).astype(int)
df.groupby("split").agg(patients=("patient_id", "size"), tss_lt_4_5h=("tss_lt_4_5h", "mean"),
                        median_lesion_ml=("lesion_ml", "median"))
""", tags=["remove-stderr"]),
    md("""
## Table 1: demographics

Ours (computed from the generated manifest) beside the paper's Table 1. Clinical rows are drawn to
match the paper's medians and interquartile ranges (quantile functions through the published
quartiles); onset-to-MRI time is a split log-normal through the median and both quartiles. The
paper's "training set" is training plus validation (340 patients).
"""),
    code("""
t1 = tables.table1(cohort.table)
t1.to_csv(results_dir / "table1.csv")
t1
"""),
    code("""
paper_medians = {"age": 70, "nihss": 8, "onset_to_mri_min": 222}
ours = tables.medians(cohort.table)
check = pd.DataFrame({"ours (all)": ours, "paper (all)": paper_medians})
check["relative difference"] = check["ours (all)"] / check["paper (all)"] - 1
check.style.format({"ours (all)": "{:.1f}", "paper (all)": "{:.0f}", "relative difference": "{:+.1%}"})
""", tags=["hide-input"]),
    md("""
## Figure 1: DWI-FLAIR mismatch

The paper's Figure 1 shows sample cases of DWI-FLAIR mismatch. Here: one early patient
(TSS < 3 h, lesion bright on DWI, barely visible on FLAIR: *mismatch*) and one late patient
(TSS 6-24 h, lesion bright on both: *no mismatch*), each at the slice with the largest lesion area,
in native DWI space (FLAIR resampled onto the DWI grid for display). The red contour is the lesion
mask. Images are shown in radiological orientation (patient left on the right of the picture).
"""),
    code("""
def pick(frame, early):
    t = frame["onset_to_mri_min"]
    cand = frame[(t < 180) if early else ((t > 360) & (t < 1440))]
    cand = cand[(cand["lesion_ml"] > 5) & (cand["stroke_side"] != "both")]
    key = -cand["flair_ratio"] if early else cand["flair_ratio"]
    return cand.loc[key.sort_values(ascending=False).index[0]]

cases = {"early": pick(df, True), "late": pick(df, False)}
fig, axes = plt.subplots(2, 3, figsize=(9, 6.4))
for row_axes, (label, case) in zip(axes, cases.items()):
    panel = viz.lesion_slice_panel({k: case[k] for k in ("b1000", "b0", "flair", "lesion_mask")})
    viz.draw_panel(row_axes, panel, f"{label}: TSS {case['onset_to_mri_min'] / 60:.1f} h\\n"
                   f"FLAIR ratio {case['flair_ratio']:.2f}, DWI ratio {case['dwi_ratio']:.2f}")
fig.suptitle("Synthetic DWI-FLAIR mismatch (top) and no mismatch (bottom)", fontsize=10)
fig.tight_layout()
fig.savefig(results_dir / "figure1_mismatch.png", dpi=120)
""", tags=["hide-input"]),
    md("""
## Lesion signal ratios against time since onset

For each patient, the lesion's signal on its own native images divided by the signal the same
voxels would have without the lesion (weighted by the lesion's partial-volume fraction, noise
included). DWI is bright at every TSS; FLAIR rises around the 3-4.5 h window, with a wide spread
between patients (collateral flow) and a blur from partial volume in small lesions on 6 mm slices;
b0 (T2w) rises more weakly. DWI rises too after a few hours: DWI = b0 exp(-b ADC) carries the
lesion's T2 elongation with it (T2 shine-through), on top of the low ADC. Lines: the 3 h and 4.5 h
thresholds; black: binned medians; colour: lesion volume.
"""),
    code("""
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharex=True)
bins = np.geomspace(df["onset_to_mri_min"].min(), df["onset_to_mri_min"].max() * 1.001, 12)
df["tss_bin"] = pd.cut(df["onset_to_mri_min"], bins)
for ax, (col, label) in zip(axes, [("dwi_ratio", "DWI b1000"), ("b0_ratio", "b0 (T2w)"), ("flair_ratio", "FLAIR")]):
    sc = ax.scatter(df["onset_to_mri_min"] / 60, df[col], c=np.log10(df["lesion_ml"]), cmap="viridis",
                    s=14, alpha=0.8, vmin=-0.5, vmax=2.2)
    med = df.groupby("tss_bin", observed=True)[col].median()
    centres = [np.sqrt(b.left * b.right) / 60 for b in med.index]
    ax.plot(centres, med.values, "k-o", ms=3, lw=1.5, label="binned median")
    for h, ls in ((3, "--"), (4.5, "-")):
        ax.axvline(h, color="tab:red", ls=ls, lw=1, label=f"{h} h")
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("time since onset (h)")
    ax.set_title(label)
axes[0].set_ylabel("lesion / healthy signal")
axes[0].legend(fontsize=8, loc="upper left")
fig.colorbar(sc, ax=axes, label="log10 lesion volume (mL)", shrink=0.85)
fig.savefig(results_dir / "signal_ratio_vs_tss.png", dpi=120, bbox_inches="tight")
print("patients with DWI ratio <= 1:", int((df["dwi_ratio"] <= 1).sum()))
print("Spearman rho (FLAIR ratio, TSS):", round(df[["flair_ratio", "onset_to_mri_min"]].corr("spearman").iloc[0, 1], 3))
""", tags=["hide-input"]),
    md("""
## Simulated readers of DWI-FLAIR mismatch

Three simulated neuroradiologists read each patient's visible FLAIR contrast (the measured lesion
FLAIR ratio above) through a shared case difficulty, extra uncertainty for small lesions and their
own perceptual noise, and call *mismatch* (predicting TSS < 4.5 h) below their own threshold. As in
the paper, they are scored on the test split; the aggregate reader is the majority call. Brackets:
95% bootstrap confidence intervals (patients resampled within each class). The paper's rows are
the paper's radiologists on its 82 test patients.
"""),
    code("""
readers = ["reader1", "reader2", "reader3"]
paper_rows = paper.table2()
paper_rows = paper_rows[paper_rows["stage"] == "DWI-FLAIR mismatch"].reset_index(drop=True)

def reader_report(frame):
    t = stats.reader_table(frame["tss_lt_4_5h"], frame[readers], n_boot=n_boot, seed=seed)
    for m in ("sensitivity", "specificity", "accuracy"):
        t[m] = [stats.with_ci(v, (lo, hi)) for v, lo, hi in zip(t[m], t[f"{m}_lo"], t[f"{m}_hi"])]
    t = t[["reader", "sensitivity", "specificity", "accuracy"]]
    t["reader"] = ["Reader 1", "Reader 2", "Reader 3", "Aggregate (majority)"]
    return t

test = df[df["split"] == "test"]
ours_test = reader_report(test)
side = ours_test.copy()
for m in ("sensitivity", "specificity", "accuracy"):
    side[f"paper {m}"] = paper_rows[m].map("{:.2f}".format).to_numpy()
side.insert(1, "n (ours)", len(test))
side.to_csv(results_dir / "readers_test.csv", index=False)
display(Markdown(f"**Test split** ({len(test)} patients, {int(test['tss_lt_4_5h'].sum())} with TSS < 4.5 h; "
                 f"paper: {paper.N_TEST} patients, 42 with TSS < 4.5 h)"))
side
"""),
    code("""
kappa = {name: stats.fleiss_kappa(frame[readers].to_numpy()) for name, frame in (("test", test), ("all", df))}
kappa_ci = {name: stats.bootstrap_ci(lambda c: stats.fleiss_kappa(c), frame[readers].to_numpy(), n_boot=n_boot, seed=seed)
            for name, frame in (("test", test), ("all", df))}
ours_all = reader_report(df)
display(Markdown(f"**All {len(df)} patients** (more patients, tighter intervals)"))
display(ours_all)
pd.DataFrame({
    "Fleiss' kappa (ours)": [stats.with_ci(kappa[k], kappa_ci[k]) for k in ("test", "all")],
    "paper": [f"{paper.FLEISS_KAPPA:.2f} (test, n=82)", ""],
}, index=["test split", "all patients"])
"""),
    md("""
## Oracle AUC: the ceiling of this cohort

The generator knows each patient's latent FLAIR evolution: the relative T2 elongation of the lesion
at the time of the scan. An oracle that sees it exactly (no partial volume, no noise, no anatomy)
ranks patients by it; its AUC for TSS < 4.5 h is the best any model can reach on this cohort, the
ceiling against which the book reports every model. The paper's best model reached 0.74 on its
cohort. The population value is a Monte Carlo estimate over 200,000 draws of the generator.
"""),
    code("""
from sklearn.metrics import roc_curve

oracle = {}
for name, frame in (("test", test), ("all", df)):
    y, s = frame["tss_lt_4_5h"], frame["oracle_score"]
    oracle[name] = (stats.auc(y, s), stats.bootstrap_ci(stats.auc, y, s, n_boot=n_boot, seed=seed, stratify=y))
pop = meta["population_oracle_auc_tss_lt_4_5h"]
display(pd.DataFrame({"oracle AUC, TSS < 4.5 h": [stats.with_ci(*oracle["test"], 3), stats.with_ci(*oracle["all"], 3), f"{pop:.3f}"]},
                     index=[f"test split (n={len(test)})", f"all patients (n={len(df)})", "generator population (Monte Carlo)"]))

fig, ax = plt.subplots(figsize=(4.6, 4.4))
fpr, tpr, _ = roc_curve(df["tss_lt_4_5h"], df["oracle_score"])
ax.plot(fpr, tpr, color="k", label=f"oracle, all patients (AUC {oracle['all'][0]:.2f})")
for r, mk in zip(readers + ["aggregate"], "os^D"):
    calls = stats.majority(df[readers].to_numpy()) if r == "aggregate" else df[r]
    m = stats.binary_metrics(df["tss_lt_4_5h"], calls)
    ax.plot(1 - m["specificity"], m["sensitivity"], mk, ms=7, label=f"simulated {r}")
for _, row in paper_rows.iterrows():
    ax.plot(1 - row["specificity"], row["sensitivity"], "x", color="tab:grey", ms=7)
ax.plot([], [], "x", color="tab:grey", label="paper's radiologists")
ax.plot([0, 1], [0, 1], ":", color="grey")
ax.set_xlabel("1 - specificity")
ax.set_ylabel("sensitivity")
ax.set_title("TSS < 4.5 h: oracle and readers", fontsize=10)
ax.legend(fontsize=7, loc="lower right")
fig.savefig(results_dir / "oracle_roc.png", dpi=120, bbox_inches="tight")
""", tags=["hide-input"]),
    md("""
## Every generator parameter

Each value with its unit and where it comes from: the paper, the MRI literature, an assumption, or
a calibration knob tuned to a stated target (Table 1 medians within 10%, readers' Fleiss' kappa
0.35-0.55, oracle AUC 0.80-0.95). The same list is stored with each cohort in `generator.json`.
"""),
    code("""
params = pd.DataFrame(synth.params.as_records())[["group", "name", "value", "unit", "source"]]
params["value"] = params["value"].map(lambda v: json.dumps(v) if isinstance(v, (tuple, list)) else v)
with pd.option_context("display.max_colwidth", 200, "display.max_rows", 200):
    display(params.style.hide(axis="index"))
"""),
    code("""
summary = {
    "profile": profile, "n": int(n), "seed": seed,
    "generation_seconds": meta["seconds"], "generated": meta["n_generated"], "jobs": meta["jobs"],
    "oracle_auc_test": oracle["test"][0], "oracle_auc_test_ci": oracle["test"][1],
    "oracle_auc_all": oracle["all"][0], "oracle_auc_all_ci": oracle["all"][1],
    "oracle_auc_population": pop,
    "fleiss_kappa_test": kappa["test"], "fleiss_kappa_all": kappa["all"],
    "table1_medians_all": ours,
}
(results_dir / "cohort_summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps({k: v for k, v in summary.items() if "oracle" in k or "kappa" in k}, indent=1))
""", tags=["hide-input"]),
]


PREPROCESS = [
    md("""
# Preprocessing: from native MRI to hemisphere tensors

Paper section 2.1 (Figures 2 and 3): N4 bias-field correction, reorientation to the template,
skull and neck removal (FSL BET), registration of the b0 (T2w) image to the T2w MNI152 atlas resized
to 224 x 224 x 26 (FSL FLIRT), a second brain extraction, co-registration of b1000 and FLAIR to the
registered b0, intensity normalisation and histogram matching to a reference study. Each brain is then
split along the mid-sagittal plane into two hemispheres of 3 x 26 x 224 x 112 (channels DWI b1000,
b0, FLAIR, values in [0, 1]), the right one flipped onto the left.

**What we do differently, and why**

- *Libraries.* SimpleITK (N4, registration, resampling), nibabel/torchio (reading, orientation,
  histogram standardisation), nilearn (MNI152 template). FSL cannot be installed from our registries.
- *Template.* The paper registers to the **T2w** MNI152 atlas; nilearn ships only the skull-stripped
  T1 one. We synthesise a T2-weighted MNI152 *head* from nilearn's GM/WM maps and brain mask with the
  spin-echo signal equation, plus extra-cerebral CSF, a dark skull and fat-suppressed scalp. A
  brain-only template made the registration inflate the brain by ~20% to cover the bright CSF rim of
  the b0. Caveat: the synthetic cohort is built from the same tissue maps, which makes registration
  easier for synthetic patients than for real ones; the real ISLES'22 case below is the honest check.
- *Skull and neck removal.* Template-mask propagation: the template's brain mask carried into the
  patient's b0 space through the inverse of the registration. The second brain masking keeps, on the
  registered grid, the template brain where the b0 has signal.
- *Registration.* b0 -> template: affine (similarity first), Mattes mutual information, on a mask
  of the template's brain plus its CSF and skull edge. b1000 shares b0's acquisition, so it reuses
  b0's transform (and b0's N4 field). FLAIR has its own grid and pose: its own affine
  mutual-information registration into the registered b0's (template) space, started from b0's
  transform since the patient moves little between sequences. We first registered FLAIR rigidly to
  the b0 in scanner space, as the paper's wording suggests; measured against the known truth, that
  optimum was biased by 2-8 mm on some patients (thick slices on two different grids, inverted CSF
  contrast), while the registration to the template stays near 2-3 mm.
- *Sanity checks.* A registration fails when the volume change is implausible, the propagated brain
  is not 0.9-2.6 L, or the registered b0 correlates less than 0.25 with the template.
- *Normalisation.* torchio's HistogramStandardization (Nyul-Udupa landmarks, brain-masked) learned on
  one reference study (the first training patient), applied to every patient; the standardised
  1st-99th percentile range 0-100 is divided by 150 and clipped to [0, 1], so that hyperintense
  lesions are not saturated.
"""),
    code(r"""
# Parameters (papermill injects new values below this cell)
profile = "quick"
seed = 0
jobs = -1
cohort_dir = None    # None: ../data/synthetic-<profile> (written by 01_cohort)
cache_dir = None     # None: ../results/<profile>/cache/preprocess
results_dir = None   # None: ../results/<profile>/preprocess
isles_manifest = "../data_manifest/isles22-sample.csv"
n_qc = None          # synthetic patients measured against their known truth (None: all, ~1 s each)
""", tags=["parameters"]),
    code(r"""
import json
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import SimpleITK as sitk
from IPython.display import Markdown, display

from tss import manifest, preprocess, profiles
from tss.preprocess import qc, steps

profiles.check(profile)
cohort_dir = Path(cohort_dir or f"../data/synthetic-{profile}")
cache_dir = Path(cache_dir or f"../results/{profile}/cache/preprocess")
results_dir = Path(results_dir or f"../results/{profile}/preprocess")
results_dir.mkdir(parents=True, exist_ok=True)
pd.options.display.float_format = "{:.2f}".format
""", tags=["hide-input"]),
    md("## Figure 2: the pipeline"),
    code(r"""
boxes = [("DWI b1000", "b0 (T2w)", "FLAIR"), "N4 bias field\n(SimpleITK)", "reorient\n(RAS, nibabel)",
         "register b0 -> T2w MNI head\naffine, mutual information", "skull/neck removal\ntemplate-mask propagation",
         "co-register\nb1000: b0's transform\nFLAIR: own affine MI\nfrom b0's start", "resample to 224x224x26\n+ second brain mask",
         "histogram matching\nto a reference (torchio)\nscale to [0, 1]", "split hemispheres\nflip right onto left\n2 x 3x26x224x112"]
fig, ax = plt.subplots(figsize=(12, 4.2))
ax.set_xlim(0, 5); ax.set_ylim(0, 2); ax.axis("off")
pos = [(i + 0.5, 1.5) for i in range(5)] + [(i + 0.5, 0.5) for i in range(3, -1, -1)]  # a snake: 5 then 4
for i, (b, (x, y)) in enumerate(zip(boxes, pos)):
    text = "\n".join(b) if isinstance(b, tuple) else b
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5,
            bbox=dict(boxstyle="round,pad=0.5", fc="#e8f0fb" if i else "#fdf0d5", ec="#4a6fa5"))
for (x0, y0), (x1, y1) in zip(pos[:-1], pos[1:]):
    if y0 == y1:
        d = 0.3 if x1 > x0 else -0.3
        ax.annotate("", xy=(x1 - d * 1.25 + (0 if x1 > x0 else 0), y1), xytext=(x0 + d, y0),
                    arrowprops=dict(arrowstyle="->", color="#4a6fa5"))
    else:
        ax.annotate("", xy=(x1, y1 + 0.3), xytext=(x0, y0 - 0.3), arrowprops=dict(arrowstyle="->", color="#4a6fa5"))
ax.set_title("Figure 2 (ours): preprocessing pipeline, paper order", fontsize=10)
fig.savefig(results_dir / "figure2_pipeline.png", dpi=130, bbox_inches="tight")
""", tags=["hide-input"]),
    md("## Running it\n\nEach patient is cached by the hashes of its input files and the pipeline version; "
       "a rerun reads the cache and an interrupted run resumes. A patient whose input is bad is reported with "
       "its step and reason and the others go on."),
    code(r"""
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
""", tags=["remove-stderr"]),
    md("""
## Quality control against the known truth

For synthetic patients the generator knows where every point of the head lies in the template. The
**registration error** is the mean distance, over brain points, between the template position our
registration assigns and the true one, for the b0/b1000 and for the FLAIR registration. It includes
the smooth anatomical deformation of each synthetic head, which no affine registration can follow:
the **affine floor** column is the error of the best affine any method could find. **Brain Dice**
compares the propagated brain mask with the true brain mask in the patient's native b0 space, and the
last column is the fraction of the synthetic skull/scalp/neck shell left inside the mask. Targets:
mean error < 2 mm, Dice >= 0.95. Every processed patient is measured; the *worst patient* column
names the one with the largest error (smallest Dice) and its value. An affine registration that
lands a few millimetres off can pass every sanity check: before pipeline 1.3 one synthetic b0 of
this cohort landed 6.1 mm off with brain Dice 0.91. Its similarity stage had been 2.7 mm off; the
affine stage had made the alignment worse, so the pipeline now keeps an affine stage only when it
improves the registration metric (judged on a sample of its own).
"""),
    code(r"""
ok_ids = [o.patient_id for o in run.outcomes if o.ok]
ids = ok_ids if n_qc is None else ok_ids[:n_qc]
qct = qc.qc_table(cohort_dir, cache_dir, ids)
qct.to_csv(results_dir / "qc.csv", index=False)
display(Markdown(f"**{len(ids)} synthetic patients** ({profile} profile)"))
qc.summarise(qct).round(3)
"""),
    md("## Figure 3: registered DWI, FLAIR and b0\n\nAs in the paper's Figure 3, top to bottom: DWI (b1000), "
       "FLAIR, T2w (b0), after registration and normalisation, on the 224 x 224 x 26 grid (neurological "
       "orientation: patient left on the left). Left: a synthetic patient; right: the real ISLES'22 case "
       "(red: expert lesion mask carried through the same transforms)."),
    code(r"""
isles_csv = Path(isles_manifest)
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
""", tags=["remove-stderr"]),
    code(r"""
landmarks = json.loads((cache_dir / "cohort" / "cohort.json").read_text())["landmarks"]
landmarks = {k: np.array(v) for k, v in landmarks.items()}
cases = [("synthetic " + ok_ids[0], preprocess.load_patient(cache_dir, ok_ids[0]))]
if isles_ok:
    cases.append(("ISLES'22 (real)", isles))
slices = (9, 12, 15)
fig, axes = plt.subplots(3, 3 * len(cases), figsize=(3.0 * 3 * len(cases), 9.6))
axes = np.atleast_2d(axes)
for c, (name, p) in enumerate(cases):
    v = preprocess.pipeline.normalise(p["volume"].astype(np.float32), p["brain"], landmarks)
    for r, ch in enumerate((0, 2, 1)):  # DWI, FLAIR, b0 as in the paper
        for j, k in enumerate(slices):
            ax = axes[r, 3 * c + j]
            ax.imshow(np.rot90(v[ch][:, :, k]), cmap="gray", vmin=0, vmax=1)
            if "lesion" in p and p["lesion"][:, :, k].any():
                ax.contour(np.rot90(p["lesion"][:, :, k]), [0.5], colors="tab:red", linewidths=0.7)
            ax.set_xticks([]); ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{name}\nslice {k}", fontsize=8)
            if 3 * c + j == 0:
                ax.set_ylabel(["DWI (b1000)", "FLAIR", "T2w (b0)"][r])
fig.tight_layout()
fig.savefig(results_dir / "figure3_registered.png", dpi=110)
""", tags=["hide-input"]),
    md("## The hemisphere tensors\n\nOne patient's two hemispheres as the models see them: the right "
       "hemisphere flipped onto the left, so that both run from the lateral edge (left of each panel) to "
       "the midline (right of each panel). Channels shown: DWI b1000. Title: the hemisphere's label."),
    code(r"""
row = index[index["label"] == 1].iloc[0]
pid = row["patient_id"]
pair = index[index["patient_id"] == pid]
fig, axes = plt.subplots(1, 2, figsize=(6, 5))
for ax, (_, r) in zip(axes, pair.iterrows()):
    h = np.asarray(hemis[r["row"]], dtype=np.float32)  # (3, 26, 224, 112)
    k = 13
    ax.imshow(h[0, k][::-1], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{pid} {r['hemisphere']}: label {r['label']} ({r['label_source']})", fontsize=8)
    ax.set_xlabel("lateral -> midline"); ax.set_xticks([]); ax.set_yticks([])
fig.tight_layout()
""", tags=["hide-input"]),
    code(r"""
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
""", tags=["hide-input"]),
]


MODELS = [
    md("""
# Models: the 2D slice-wise attention network, the 3D attention network and Models Genesis

The paper's section 2.2 and Figure 4 describe two classifiers of one hemisphere (3 channels: DWI
b1000, b0, FLAIR; 26 slices of 224 x 112), and section 2.3 the self-supervised Models Genesis
pretraining of the 3D one. This chapter builds both from `tss.models` and prints what they are:
parameters per part, tensor shapes through each network, the attention maps, and the four Genesis
distortions on a real slice of our cohort. Nothing here is trained; the Training chapter does that.

**2D: self-weighted slice-wise attention** (`tss.models.SliceAttentionNet`). Every slice runs through
the four residual stages of torchvision's ResNet-18. A soft grid attention gate (Oktay et al. 2018,
Schlemper et al. 2019) weights the pixels of the penultimate stage (layer3, 256 channels) with a
gate computed from the last stage (layer4, 512 channels). The pooled layer4 features (512) and the
pooled attended map (256) are concatenated, and a linear layer gives one logit z_s per slice. A
learnable weight per slice w_s = sigmoid(v_s) in [0, 1] combines the slices into one hemisphere
probability, p = sum_s w_s sigmoid(z_s) / sum_s w_s (computed in log space so that it stays exact
under bf16).

**3D: attention on a 3D U-Net encoder** (`tss.models.Attention3DNet`). The down path of a 3D U-Net with
the Models Genesis widths (levels 32-64, 64-128, 128-256, 256-512, max pooling between levels). Two
grid attention gates sit on the 128- and 256-channel outputs, both gated by the deepest (512-channel)
features; the globally pooled deepest features and both attended maps (512 + 128 + 256) feed one
logit. The full U-Net (`tss.models.UNet3D`, the same encoder plus a decoder) is what Models Genesis
trains to restore distorted sub-volumes; its encoder weights initialise the classifier by name.

**Where we differ from Figure 4, and why.** The caption gives a 512 x 7 x 4 final map and a
256-channel attention map of 28 x 14 for a 224 x 112 slice. ResNet-18 halves the grid at every stage,
so its 256-channel stage (layer3) is 14 x 7; 28 x 14 is the grid of the 128-channel stage (layer2).
The two numbers of the caption cannot both hold: we keep the 256 channels and the gate from the final
map, so our attention map is 14 x 7 (the shapes table below). The final map is 512 x 7 x 4, as in the
caption.
"""),
    code("""
# Parameters (papermill injects new values below this cell)
profile = "quick"
seed = 0
jobs = -1            # torch threads (-1: torch's default)
cache_dir = None     # None: ../results/<profile>/cache/preprocess (written by 02_preprocessing)
results_dir = None   # None: ../results/<profile>/models
bench_dir = "../results/bench"   # written by `make bench` (benchmarks/bench_models.py)
""", tags=["parameters"]),
    code("""
import json
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from tss import paper, preprocess, profiles
from tss.models import Attention3DNet, SliceAttentionNet, UNet3D, genesis, imagenet
from scipy import ndimage
from tss.preprocess import steps

profiles.check(profile)
cache_dir = Path(cache_dir or f"../results/{profile}/cache/preprocess")
results_dir = Path(results_dir or f"../results/{profile}/models")
results_dir.mkdir(parents=True, exist_ok=True)
if jobs > 0:
    torch.set_num_threads(jobs)
torch.manual_seed(seed)
FULL = profiles.MODEL["full"].input_shape("2d")
print("input per hemisphere (slices, rows, columns): " + "; ".join(
    f"{p} {a.upper()} {profiles.MODEL[p].input_shape(a)}" for p in ("full", "quick") for a in ("2d", "3d")))
print(f"this book's profile: {profile}")
""", tags=["hide-input"]),
    md("""
## Parameters per part

A *part* is the unit that the training phases freeze or train (`model.parts()`). In phases 2 and 3
the paper freezes the early layers: for the 2D model conv1 with its batch norm (our *stem*) and the
conv2_x stage (*layer1*); for the 3D model the first two levels of the down path. Phase 4 trains the
attention modules only. A frozen part keeps its weights and its batch-norm statistics.
"""),
    code("""
def part_table(model, name):
    rows = []
    for part, n in model.count_parameters().items():
        rows.append({"model": name, "part": part, "parameters": n,
                     "phases 2-3": "frozen" if part in model.EARLY else "trained",
                     "phase 4": "trained" if part in model.ATTENTION else "frozen"})
    return rows

nets = {"2D slice-wise attention": SliceAttentionNet(n_slices=FULL[0]), "3D attention": Attention3DNet()}
rows = [r for name, m in nets.items() for r in part_table(m, name)]
unet = UNet3D()
for part, n in unet.count_parameters().items():
    if part in ("decoder", "out"):
        rows.append({"model": "3D U-Net (Genesis only)", "part": part, "parameters": n,
                     "phases 2-3": "", "phase 4": ""})
params = pd.DataFrame(rows)
params.to_csv(results_dir / "parameters.csv", index=False)
totals = params.groupby("model", sort=False)["parameters"].sum()
display(Markdown(" ".join(f"**{k}**: {v:,} parameters." for k, v in totals.items())))
params.style.format({"parameters": "{:,}"}).hide(axis="index")
""", tags=["hide-input"]),
    md("""
## Tensor shapes through the networks

Output shapes of each module for one hemisphere, at the `full` input (the paper's 26 x 224 x 112) and
at the `quick` input (each slice averaged in-plane, 4 x 4 for the 2D model and 8 x 8 for the 3D one,
so that CPU training takes minutes). The 2D
model folds the 26 slices into the batch: its shapes are per slice. The U-Net runs on Models Genesis
sub-volumes (`genesis_cube` of each profile), not whole hemispheres.
"""),
    code("""
def shapes(model, modules, x):
    out = {}
    hooks = []
    for name in modules:
        def hook(_, __, y, name=name):
            y = y[1] if isinstance(y, tuple) else y  # attention gates return (pooled, map, alpha)
            out[name] = " x ".join(map(str, y.shape[1:]))
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return out

two_d = ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "attention", "fc"]
three_d = ["encoder.down1", "encoder.down2", "encoder.down3", "encoder.down4", "attention1", "attention2", "fc"]
u_net = ["encoder.down1", "encoder.down2", "encoder.down3", "encoder.down4", "up3", "up2", "up1", "out"]
tables = []
for label, make, modules, size in [
        ("2D (per slice)", lambda s: SliceAttentionNet(n_slices=s[0]), two_d, lambda p: profiles.MODEL[p].input_shape("2d")),
        ("3D", lambda s: Attention3DNet(), three_d, lambda p: profiles.MODEL[p].input_shape("3d")),
        ("U-Net (Genesis)", lambda s: UNet3D(), u_net, lambda p: profiles.MODEL[p].genesis_cube)]:
    cols = {}
    for p in ("full", "quick"):
        s = size(p)
        cols[p] = {"input": " x ".join(map(str, (3,) + s)), **shapes(make(s), modules, torch.rand(1, 3, *s))}
    t = pd.DataFrame(cols)
    t.index = pd.MultiIndex.from_product([[label], t.index], names=["model", "module"])
    tables.append(t)
shape_table = pd.concat(tables)
shape_table.to_csv(results_dir / "shapes.csv")
shape_table
""", tags=["hide-input"]),
    md("""
### The attention maps

Each gate returns a one-channel map alpha in [0, 1] on the grid of the features it weights. At the
full input (untrained weights, so the values are near 0.5 and carry no meaning yet):
"""),
    code("""
torch.manual_seed(seed)
x = torch.rand(1, 3, *FULL)
with torch.no_grad():
    _, d2 = SliceAttentionNet(n_slices=FULL[0]).eval()(x, details=True)
    _, d3 = Attention3DNet().eval()(x, details=True)
att = pd.DataFrame([
    {"model": "2D", "gate": "layer3 (256 ch) gated by layer4", "map shape": " x ".join(map(str, d2["attention"].shape[1:])),
     "min": d2["attention"].min().item(), "max": d2["attention"].max().item(),
     "paper (Fig. 4)": "256 ch, 28 x 14 (see above)"},
    {"model": "3D", "gate": "down2 (128 ch) gated by down4", "map shape": " x ".join(map(str, d3["attention1"].shape[2:])),
     "min": d3["attention1"].min().item(), "max": d3["attention1"].max().item(), "paper (Fig. 4)": "128 ch"},
    {"model": "3D", "gate": "down3 (256 ch) gated by down4", "map shape": " x ".join(map(str, d3["attention2"].shape[2:])),
     "min": d3["attention2"].min().item(), "max": d3["attention2"].max().item(), "paper (Fig. 4)": "256 ch"},
])
display(Markdown(f"2D final map: {' x '.join(map(str, d2['final_map']))} (paper: 512 x 7 x 4); "
                 f"2D map shape is slices x rows x columns."))
att.style.format({"min": "{:.3f}", "max": "{:.3f}"}).hide(axis="index")
""", tags=["hide-input"]),
    md("""
## Models Genesis: the four distortions

Models Genesis (Zhou et al. 2019) pretrains the full 3D U-Net to restore sub-volumes that were
distorted by four transforms: a **non-linear** intensity mapping through a random Bezier curve,
**local pixel shuffling** inside small windows (each window refilled with its own voxels in a random
order, the later window winning where two overlap: texture destroyed, anatomy kept), **in-painting**
(inner boxes replaced by noise) and **out-painting** (everything outside large boxes replaced by
noise). Training composes them with the Models Genesis probabilities, decided per cube
(`genesis.distort_batch`: vectorised over a training batch on the training device). We wrote
them from the paper's description (`tss.models.genesis`; the official code's licence is
non-commercial). Below, each transform on one real sub-volume of our cohort: a
`full`-profile cube (16 x 64 x 64 voxels) cut from a hemisphere with a lesion, middle slice, DWI and
FLAIR channels; the yellow line bounds the region the transform was allowed to change. The boxes are
drawn in 3D, so a draw can miss the displayed slice: each column shows the first draw (numbered) whose
region crosses it. Quick-profile
training uses the same transforms on smaller cubes of the downsampled hemispheres.
"""),
    code("""
if (cache_dir / "cohort" / "hemispheres.npy").exists():
    hemis, index = preprocess.load_hemispheres(cache_dir)
    # the training hemisphere with the largest lesion, its mask split and flipped like the images
    best = (0, None, None)
    for _, r in index[(index["label"] == 1) & (index["split"] == "train")].iterrows():
        p = preprocess.load_patient(cache_dir, r["patient_id"])
        if "lesion" in p:
            m = preprocess.pipeline.hemispheres(p["lesion"][None].astype(np.float32))[0 if r["hemisphere"] == "left" else 1, 0]
            if m.sum() > best[0]:
                best = (m.sum(), r, m)
    _, row, lesion = best
    h = torch.from_numpy(np.asarray(hemis[row["row"]], dtype=np.float32))  # (3, 26, 224, 112)
    cz, cy, cx = profiles.MODEL["full"].genesis_cube
    # centre: the lesion's deepest voxel (a large lesion's centroid can fall outside it)
    depth = ndimage.distance_transform_edt(lesion > 0.5, sampling=(6.5, 1, 1))
    z, y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    z0, y0, x0 = (int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip((z, y, x), (cz, cy, cx), h.shape[1:]))
    cube = h[:, z0:z0 + cz, y0:y0 + cy, x0:x0 + cx]
    k = z - z0  # the displayed slice of the cube
    results = [("original", cube, None)]
    for i, (name, fn) in enumerate(genesis.TRANSFORMS.items()):
        for draw in range(100):  # boxes are random in 3D: take the first draw whose region crosses slice k
            out, changed = fn(cube, torch.Generator().manual_seed(seed * 1000 + 10 * i + draw))
            if 0 < changed[k].float().mean() < 1 or name == "non-linear":
                break
        results.append((f"{name} (draw {draw})", out, changed))
    results.append(("composed (training)", genesis.distort(cube, torch.Generator().manual_seed(seed)), None))
    fig, axes = plt.subplots(2, len(results), figsize=(2.2 * len(results), 4.9))
    for j, (name, v, changed) in enumerate(results):
        for i, (ch, label) in enumerate([(0, "DWI b1000"), (2, "FLAIR")]):
            ax = axes[i, j]
            ax.imshow(v[ch, k].numpy()[::-1], cmap="gray", vmin=0, vmax=1)
            if changed is not None and not changed[k].all():
                ax.contour(changed[k].numpy()[::-1].astype(float), [0.5], colors="yellow", linewidths=0.8)
            ax.set_xticks([]); ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle(f"Models Genesis distortions on patient {row['patient_id']} ({row['hemisphere']} hemisphere, "
                 f"lesion {lesion.sum() * np.prod(np.diag(steps.target_affine())[:3]) / 1000:.0f} mL on the template grid): cube of slices {z0}-{z0 + cz - 1}, rows "
                 f"{y0}-{y0 + cy - 1}, columns {x0}-{x0 + cx - 1}; slice {z0 + k} shown", fontsize=9)
    fig.tight_layout()
    fig.savefig(results_dir / "genesis_transforms.png", dpi=120)
else:
    print(f"No hemisphere tensors in {cache_dir}: run the Preprocessing chapter first.")
""", tags=["hide-input"]),
    md("""
## ImageNet weights

The paper's ImageNet baseline initialises the 2D trunk with ImageNet ResNet-18 weights. Nothing is
downloaded at run time: `tss.models.load_imagenet` reads torchvision's `resnet18-f37072fd.pth` from
`$TSS_IMAGENET_WEIGHTS` or torch's hub cache, and says where to put it when it is absent; the ImageNet
rows of the Training and Results chapters are then skipped with that message.
"""),
    code("""
try:
    path = imagenet.find_weights()
    report = imagenet.load_imagenet(SliceAttentionNet(n_slices=FULL[0]), path)
    print(f"ImageNet weights found ({path.name}): {report}")
except imagenet.WeightsUnavailable as e:
    print(e)
""", tags=["hide-input"]),
    md("""
## Training-step throughput and memory

`make bench` (`benchmarks/bench_models.py`) times bare training steps (forward, binary
cross-entropy, backward, AdaBound step) on random hemispheres at the full input size, each
configuration in a fresh process, and records the peak memory: resident memory above the
model and batch on the CPU, `torch.cuda.max_memory_allocated` on a GPU (bf16 autocast, the paper's
batch 8). Beside it, the ceiling measured on an H100 for the same bare models
(`../shared/gpu/README.md`, bf16 autocast, batch 8) and the paper's reported GPU memory at batch 8.
"""),
    code("""
rows = []
for f in sorted(Path(bench_dir).glob("models-*.json")):
    rows += json.loads(f.read_text())
if rows:
    b = pd.DataFrame(rows)
    b["ceiling hemis/s (H100 bf16 b8)"] = b["arch"].map(lambda a: paper.H100_CEILING_BF16_BATCH8[a]["hemis_per_s"])
    b["ceiling peak GiB"] = b["arch"].map(lambda a: paper.H100_CEILING_BF16_BATCH8[a]["peak_gib"])
    b["paper GB at b8"] = b["arch"].map(paper.GPU_MEMORY_GB_BATCH8)
    b = b[["arch", "device", "precision", "batch", "threads", "seconds_per_step", "hemis_per_s", "peak_gib",
           "ceiling hemis/s (H100 bf16 b8)", "ceiling peak GiB", "paper GB at b8"]]
    display(b.style.format({"seconds_per_step": "{:.2f}", "hemis_per_s": "{:.1f}", "peak_gib": "{:.2f}"}).hide(axis="index"))
    if not (b["device"] != "cpu").any():
        display(Markdown("No GPU row yet: these numbers come from a CPU. `make bench` on a machine with a CUDA "
                         "GPU adds `models-cuda.json`."))
else:
    print(f"No benchmark results in {bench_dir}: run `make bench`.")
""", tags=["hide-input"]),
    code("""
summary = {"profile": profile,
           "inputs": {p: {a: profiles.MODEL[p].input_shape(a) for a in ("2d", "3d")} for p in ("full", "quick")},
           "parameters": {k: int(v) for k, v in totals.items()},
           "imagenet_weights": imagenet.available()}
(results_dir / "models_summary.json").write_text(json.dumps(summary, indent=1))
summary
""", tags=["hide-input"]),
]


def phase_notebook(intro, phases, extra=()):
    """A Training-chapter notebook: runs the experiments of ``phases`` for each architecture and
    seed (cached: a finished run is read back, a killed one resumes), then plots from the files."""
    return [
        md(intro),
        code(f"""
# Parameters (papermill injects new values below this cell)
profile = "quick"
seed = 0             # first seed; the profile says how many (quick 1, full 5)
n_seeds = None       # None: the profile's number of seeds
archs = "2d,3d"      # architectures to run
inits = "all"        # all, or e.g. "random,transfer"
jobs = -1            # torch CPU threads (-1: torch's default)
cache_dir = None     # None: ../results/<profile>/cache/preprocess (written by 02_preprocessing)
runs_dir = None      # None: ../results/<profile>/runs
phases = {list(phases)!r}
""", tags=["parameters"]),
        code("""
import json
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display

from tss import profiles
from tss.models import imagenet
from tss.train import Cohort, grid, report, run_grid

profiles.check(profile)
cache_dir = Path(cache_dir or f"../results/{profile}/cache/preprocess")
runs_dir = Path(runs_dir or f"../results/{profile}/runs")
if jobs > 0:
    torch.set_num_threads(jobs)
device = "cuda" if torch.cuda.is_available() else "cpu"
tp = profiles.TRAIN[profile]
seeds = [seed + i for i in range(n_seeds or len(tp.seeds))]
arch_list = [a.strip() for a in archs.split(",")]
exps = [e for e in grid(arch_list, phases, imagenet=True) if inits == "all" or e.init in inits.split(",")]
print(f"profile {profile}: at most {tp.max_epochs} epochs, patience {tp.patience}, seeds {seeds}, device {device}")
pd.DataFrame([{"experiment": e.name, "phase": e.spec.title, "init": e.init, "weights from": e.source() or e.init,
               "frozen": e.frozen(), "lr -> final": f"{e.spec.lr:g} -> {e.spec.final_lr:g}",
               "batch": e.spec.batch_size, "examples": e.spec.hemispheres} for e in exps])
""", tags=["hide-input"]),
        code("""
results = []
for arch in arch_list:
    cohort = Cohort.load(cache_dir, profiles.MODEL[profile].downsample(arch), device)
    for s in seeds:
        results += run_grid([e for e in exps if e.arch == arch], cohort, runs_dir / f"seed{s}", profile, s)
    del cohort
for r in results:
    if "skipped" in r:
        print(f"{r['experiment']} (seed {r['seed']}) skipped: {r['skipped']}")
""", tags=["remove-stderr"]),
        md("## Learning curves\n\nTop: training loss (solid) and validation loss (dashed); bottom: the score "
           "early stopping watches (validation AUC for the classifiers; -MSE for Genesis; AUC for the 2D and "
           "Dice for the 3D tumour task); the star is the epoch whose weights were kept."),
        code("""
# every profile with runs here, the largest first (committed lowres / full results), then this build's
views = report.views("../results", profile, runs_dir)
for p, d in views.items():
    for arch in arch_list:
        names = [e.name for e in exps if e.arch == arch]
        if any(report.epochs(d, n).size for n in names):
            fig = report.plot_curves(d, names, title=f"{arch.upper()} ({p} profile)")
            plt.show()
""", tags=["hide-input"]),
        md("## Runs\n\nRead back from each run's `summary.json` (mean over seeds; `sd` columns with several "
           "seeds). AUCs here are a first look on small validation and test splits; the Results chapter gives "
           "them with confidence intervals beside the paper's Table 2."),
        code("""
names = [e.name for e in exps]
for p, d in views.items():
    df = report.summaries(d)
    df = df[df["experiment"].isin(names)] if not df.empty else df
    if p == profile:
        df = df[df["seed"].isin(seeds)] if not df.empty else df
    if not df.empty:
        display(Markdown(f"**{p} profile** ({profiles.COHORT[p].n_patients} patients):"))
        display(report.table(df).style.format(precision=3, na_rep="-")
                .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.4em; font-size: 0.8em"}]))
""", tags=["hide-input"]),
        *extra,
    ]


TRAIN_PRETRAIN = phase_notebook("""
# Training I: pretraining and Phase 1, stroke detection

The paper trains its models through a sequence of tasks (section 2.3). This page runs the first
ones; every phase is a declared record in `tss.train.PHASES` (task, label, which hemispheres, optimiser
settings, batch size) and every experiment an `Experiment` (architecture, phase, initialisation), so
the table below is the configuration, not a description of it.

- **Models Genesis (3D only)**: the full 3D U-Net learns to restore sub-volumes of our training
  hemispheres distorted by the four Genesis transforms (Models chapter), minimising the MSE; a fresh
  draw of cubes and distortions every epoch, and early stopping on the restoration MSE of a fixed set
  of distorted cubes from the validation hemispheres.
- **Medical pretraining**: the paper initialises its "Medical" baseline from external brain-tumour
  classification (2D) and segmentation (3D) models. Those datasets cannot be shipped, so we use a
  tumour task from the same synthetic anatomy: tumour-like masses with mass effect, a necrotic core
  and vasogenic oedema (`tss.train.add_tumour`) inserted into our training hemispheres; the 2D model
  learns to classify tumour / no tumour, the 3D U-Net to segment it. This is a stand-in, and much
  closer to our cohort than the paper's external data are to theirs.
- **Phase 1, stroke detection**: every hemisphere, stroke / no stroke; the 2D model from random
  weights, the 3D model from the Genesis encoder.

Optimiser (paper section 2.3): AdaBound, binary cross-entropy, lr 5e-4 (final 1e-2), batch 16;
early stopping on validation AUC with patience 10, at most 100 epochs in the `full` profile. The
`quick` profile keeps these settings but stops after a few epochs on downsampled hemispheres (Models
chapter), so the whole grid runs in minutes on a CPU. Every run checkpoints each epoch and resumes
where it stopped; a finished run is read back instead of retrained.
""", ["genesis", "medical", "stroke"])

TRAIN_TSS = phase_notebook("""
# Training II: Phases 2 and 3, time since onset

Phase 2 classifies TSS < 3 h and phase 3 TSS < 4.5 h, on the stroke hemispheres only (a patient's
TSS probability is the mean over their stroke hemisphere(s)). Each is trained from every
initialisation of the paper's Table 2:

- **random**: all layers trained;
- **ImageNet** (2D only): torchvision's ImageNet ResNet-18, when its weights file is present (Models
  chapter); otherwise the row says why it is missing;
- **medical**: our synthetic tumour task's weights (Training I);
- **transfer**, the paper's method: phase 2 from phase 1 (stroke detection), phase 3 from phase 2.

Pretrained initialisations freeze the early layers as the paper does (2D: conv1 with its batch norm
and layer1; 3D: the first two levels of the down path); a random initialisation trains everything.
A new output layer is learned in each phase. Optimiser: AdaBound, lr 1e-5 (final 1e-3), batch 8.
""", ["tss3", "tss45"])

TRAIN_ATTENTION = phase_notebook("""
# Training III: Phase 4, attention fine-tuning, and the run summary

Phase 4 starts from the phase 3 transfer model (output layer included: the task is the same,
TSS < 4.5 h) and trains only the attention modules, everything else frozen. The last section sums up
every run of the grid: wall time per phase and training throughput.
""", ["attention"], extra=[
    md("""
## Wall time and throughput, every run

Wall time is the sum over a run's epochs (training, batch-norm recalibration and validation),
including any resumed part. Throughput is the median over epochs of training examples (hemispheres,
Genesis sub-volumes or tumour examples) per second of training steps. The ceiling for bare training
steps at the full input on one H100 is 369 hemispheres/s (2D) and 245 (3D) with bf16 autocast at
batch 8 (`../shared/gpu/README.md`); `of_ceiling` compares a phase with it only for GPU runs of the
`full` profile on hemispheres (Genesis cubes and tumour examples are other inputs, and CPU runs of
the quick profile are not comparable). The goals for the full profile: the whole grid, 5 seeds, in
at most 15 minutes on one H100, with training steps at 70% or more of the ceiling.
"""),
    code("""
every = report.summaries(runs_dir)
if not every.empty:
    display(Markdown(f"**{report.grid_verdict(every)}**"))
    display(report.throughput(every).style.format({"wall_minutes": "{:.2f}", "seconds_per_run": "{:.0f}",
                                                   "epochs": "{:.1f}", "examples_per_s": "{:.1f}",
                                                   "of_ceiling": "{:.0%}"}, na_rep="-").hide(axis="index"))
""", tags=["hide-input"]),
    md("""
## Speed on two CPU cores

What `make bench` measured on this project's machine (2 cores, AVX512-BF16), each as a ratio of two
measurements taken side by side in one run (absolute times on these machines vary from run to run):
the training loop (batch selection, precise BN, validation, checkpoints) against its bare training
steps; the quick grid with the CPU speed-ups (bf16 autocast, frozen stages computed once per
hemisphere, precise BN from 8 batches) against the loop before them; and channels_last against the
default memory layout (adopted for the 3D models only, where it paid).
"""),
    code("""
speed = report.cpu_speedups("../results/bench")
if speed.empty:
    display(Markdown("No CPU benchmark results here: run `make bench`."))
else:
    display(speed.style.format({"ratio": "{:.2f}"}).hide(axis="index")
            .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.8em"}]))
""", tags=["hide-input"]),
])



DATA_SIZE = [
    md("""
# How many patients does the method need?

A clinical group planning its own cohort asks this first, and it decides how this companion can
test the paper on two CPU cores: the paper trains its 2D model on 224 x 112 hemisphere slices, and
a smaller input trains many times faster. This page measures both questions at once: the 2D
transfer chain of the paper (phase 1 stroke detection from random weights, then TSS < 3 h, TSS <
4.5 h and the attention fine-tuning, each from the previous phase's weights with the early layers
frozen) is trained from scratch on nested subsets of the training patients, at two in-plane input
sizes, with the same validation and test patients throughout. A TSS < 4.5 h model from random
weights at each size shows what the transfer adds as data shrinks.

- **Sizes** count training stroke hemispheres (the examples of the TSS phases; phase 1 also sees
  their contralateral hemispheres). A smaller subset's patients are among every larger one's, and
  each keeps the training split's share of patients scanned before and after 4.5 h.
- **Procedure** as the profile's grid: AdaBound at the paper's learning rates, early stopping on the
  validation AUC with the profile's patience and epoch cap.
- **Uncertainty**: each point is one training run (one seed); bars are stratified bootstrap 95% CIs
  over the test patients (hemispheres for stroke detection). The spread between seeds is not in them.

`python -m tss study --profile <profile>` runs the same study from the command line (cached and
resumable like every run: a killed study continues where it stopped).
"""),
    code("""
# Parameters (papermill injects new values below this cell)
profile = "quick"
seed = 0             # training seed of every run of the study
jobs = -1            # torch CPU threads (-1: torch's default)
cache_dir = None     # None: ../results/<profile>/cache/preprocess (written by 02_preprocessing)
train = True         # run (or read back) this profile's study; False: only show the committed ones
n_boot = 1000
""", tags=["parameters", "remove-cell"]),
    code("""
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from tss import profiles
from tss.train import study

profiles.check(profile)
root = Path("../results")
if jobs > 0:
    torch.set_num_threads(jobs)
if train:
    study.run_study(Path(cache_dir or root / profile / "cache" / "preprocess"), root / profile / "study", profile,
                    seed=seed, device="cuda" if torch.cuda.is_available() else "cpu", progress=False,
                    grid_root=root / profile / "runs")  # the grid's runs on the whole split are reused
""", tags=["remove-cell"]),
    code("""
shown = [p for p in profiles.BY_SIZE if any((root / p / "study").glob("*x/n*/seed*/*/summary.json"))]
for p in shown:
    t = study.table(root / p / "study", n_boot=n_boot)
    tp, cohort = profiles.TRAIN[p], profiles.COHORT[p]
    display(Markdown(f"## Profile `{p}`: {cohort.n_patients} patients, at most {tp.max_epochs} epochs, "
                     f"patience {tp.patience}"))
    fig = study.plot(t, profile=p)
    plt.show()
    display(Markdown("Test AUC (95% CI) per input size and training-set size; the last columns give "
                     "phase 1's epochs (best epoch) and the wall time of all runs of that size."))
    display(study.pivot(t).style.hide(axis="index")
            .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.6em; font-size: 0.85em"}]))
if not shown:
    display(Markdown("No profile has a data-size study here yet: run `make book` or `python -m tss study`."))
""", tags=["hide-input"]),
]

PROVENANCE = [
    md("""
# Appendix: how these results were made

Every number in this book comes from files under `results/<profile>/`. This page says, for each
profile that has results here, what made them: the wall time of each stage (notebook) of
`make book` at its last execution, the machine and software it ran on (Python, processor, threads,
GPU, the versions of the key packages, the hash of `requirements.lock`, the git commit), and which
machine trained each training run (recorded in the run's `summary.json` when it was trained; a
rebuild that reads finished runs back does not change it). `provenance.json` beside the results
lists every installed package.
"""),
    code("""
# Parameters (papermill injects new values below this cell); the page shows every profile
profile = "quick"
seed = 0
""", tags=["parameters", "remove-cell"]),
    code("""
from pathlib import Path

from IPython.display import Markdown, display

from tss import profiles, provenance

root = Path("../results")
shown = [p for p in profiles.PROFILES if (root / p / "provenance.json").exists() or (root / p / "runs").exists()]
for p in shown:
    display(Markdown(f"## Profile `{p}`"))
    stages = provenance.stages_table(root / p)
    if stages.empty:
        display(Markdown("No stage of `make book` has recorded its provenance for this profile."))
    else:
        total = stages["seconds"].sum()
        display(Markdown(f"**Stages of `make book`**, last execution of each: {total / 60:.1f} minutes in all "
                         "(a stage that read cached results back is fast)."))
        display(stages.style.format({"seconds": "{:.0f}"}).hide(axis="index")
                .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.8em"}]))
        display(Markdown("**Environment** of those stages (one column per distinct environment):"))
        display(provenance.environment_table(root / p))
    runs = provenance.runs_table(root / p / "runs")
    if not runs.empty:
        display(Markdown(f"**Training runs** by the machine that trained them: {int(runs['runs'].sum())} runs, "
                         f"{runs['hours'].sum():.2f} hours of training wall time."))
        display(runs.style.format({"hours": "{:.2f}"}).hide(axis="index")
                .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.8em"}]))
if not shown:
    display(Markdown("No profile has results here yet: run `make book`."))
""", tags=["hide-input"]),
]

def write(name, cells):
    nb = nbf.v4.new_notebook()
    for i, c in enumerate(cells):
        c["id"] = f"{name}-{i:02d}"  # stable ids: rebuilding does not churn the diff
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, ROOT / "notebooks" / f"{name}.ipynb")


if __name__ == "__main__":
    write("01_cohort", COHORT)
    write("02_preprocessing", PREPROCESS)
    write("03_models", MODELS)
    write("04_training_pretrain", TRAIN_PRETRAIN)
    write("05_training_tss", TRAIN_TSS)
    write("06_training_attention", TRAIN_ATTENTION)
    write("06b_data_size", DATA_SIZE)
    from nb_results import GRADCAM, LEE, REPRODUCTION, RESULTS

    write("07_baseline_lee", LEE)
    write("08_results", RESULTS)
    write("09_gradcam", GRADCAM)
    write("10_reproduction", REPRODUCTION)
    write("11_provenance", PROVENANCE)
    print("wrote notebooks/01_cohort ... 11_provenance")
