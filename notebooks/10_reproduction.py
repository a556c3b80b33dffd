# %% [markdown]
# # Reproduction: claim by claim
#
# Each claim of the paper's results and discussion, the paper's evidence, ours on the synthetic cohort,
# and a verdict computed from the result files when this page was built (so it follows the profile
# that ran: a `quick` CPU build and a `full` GPU build can disagree, and the page says which it shows).
#
# Verdicts for "A is better than B": *reproduced* when our A - B is positive and DeLong's test on the
# same test patients gives p < 0.05; *same direction, not significant* when positive but p >= 0.05;
# *not reproduced* when our difference has the other sign. A claim about a level ("AUC about 0.9")
# is *reproduced* when the paper's value lies inside our 95% CI or ours is above it.

# %% tags=["parameters"]
# Parameters (papermill injects new values below this cell)
profile = "quick"     # the profile make book ran; full, then lowres results, when present, are shown first
results_root = "../results"
cohort_dir = None     # None: ../data/synthetic-<profile>
cache_dir = None      # None: ../results/<profile>/cache/preprocess
seed = 0              # bootstrap seed
n_boot = 1000         # bootstrap replicates for every confidence interval
jobs = -1

# %% tags=["hide-input"]
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import pandas as pd
from IPython.display import Markdown, display

from tss import manifest, profiles, results, stats

profiles.check(profile)
results_root = Path(results_root)
# the largest profile that has training runs here (full, lowres, then the one make book ran), its folders
page = results.shown_profile(results_root, profile, cohort_dir, cache_dir)
shown, runs_dir, cohort_dir, cache_dir, out_dir = page.shown, page.runs_dir, page.cohort_dir, page.cache_dir, page.out_dir
print(f"results of the {shown} profile (make book ran {profile}); runs in {runs_dir}")

# %% tags=["hide-input"]
raw = pd.read_csv(out_dir / "table2_raw.csv") if (out_dir / "table2_raw.csv").exists() else None
if raw is None:
    raise SystemExit("table2_raw.csv missing: run 08_results first")
by = raw.set_index("experiment")
pap = results.paper_aucs()
claims = []

def add(claim, paper_says, **ours):
    claims.append({"claim": claim, "paper": paper_says, **ours})

add("Stroke detection is reliable: 2D AUC 0.89", "Table 2, phase 1",
    **results.reaches_paper(by, results.experiment_name("2d", "stroke", "random"), 0.8905))
add("Stroke detection is reliable: 3D AUC 0.95", "Table 2, phase 1 (ours from Models Genesis)",
    **results.reaches_paper(by, results.experiment_name("3d", "stroke", "random"), 0.946))
for phase, task in (("tss3", "TSS < 3 h"), ("tss45", "TSS < 4.5 h")):
    for arch in ("2d", "3d"):
        for base in (["random", "imagenet", "medical"] if arch == "2d" else ["random", "medical"]):
            a, b = pap.get((arch, phase, "transfer")), pap.get((arch, phase, base))
            add(f"{task}, {arch.upper()}: task-adaptive transfer beats {base} initialisation",
                f"AUC {a:.2f} vs {b:.2f}",
                **results.compare_claim(runs_dir, f"{arch}-{phase}-transfer", f"{arch}-{phase}-{base}"))
    for arch in ("2d", "3d"):
        a, b = pap.get((arch, phase, "medical")), pap.get((arch, phase, "random"))
        add(f"{task}, {arch.upper()}: medical-domain pretraining beats random", f"AUC {a:.2f} vs {b:.2f}",
            **results.compare_claim(runs_dir, f"{arch}-{phase}-medical", f"{arch}-{phase}-random"))
add("TSS < 4.5 h, 2D: ImageNet pretraining is worse than random", "AUC 0.61 vs 0.63",
    **results.compare_claim(runs_dir, "2d-tss45-random", "2d-tss45-imagenet"))
for arch in ("2d", "3d"):
    a, b = pap[(arch, "attention", "transfer")], pap[(arch, "tss45", "transfer")]
    add(f"Attention fine-tuning (phase 4) improves the {arch.upper()} phase 3 model", f"AUC {a:.4f} vs {b:.4f}",
        **results.compare_claim(runs_dir, f"{arch}-attention-transfer", f"{arch}-tss45-transfer"))
for phase, task in (("tss3", "TSS < 3 h"), ("tss45", "TSS < 4.5 h")):
    a, b = pap[("2d", phase, "random")], pap[("3d", phase, "random")]
    add(f"{task}: the 2D model beats the 3D model even from random weights", f"AUC {a:.2f} vs {b:.2f}",
        **results.compare_claim(runs_dir, f"2d-{phase}-random", f"3d-{phase}-random"))

# %% tags=["hide-input"]
lee_dir = results_root / shown / "baselines" / "lee"
cm_path = cohort_dir / "manifest.csv"
cohort_manifest = manifest.load_cohort(cohort_dir, check=False).table if cm_path.exists() else None

# deep model against the Lee et al. baseline, on the patients where the baseline has a prediction
add("The phase 4 2D model beats the Lee et al. ML method (on the ML method's subset)",
    "AUC 0.76 vs 0.72 on the subset; 0.74 on all",
    **results.compare_with_lee(runs_dir, "2d-attention-transfer", lee_dir))
lee_pred = lee_dir / "predictions.csv"
if lee_pred.exists():
    lp = pd.read_csv(lee_pred)
    share = lp["usable"].mean()
    add("Lee et al.'s ROI is stringent: only about half the patients (221 of 422) have one large enough",
        "52% usable", ours=f"{share:.0%} usable ({int(lp['usable'].sum())} of {len(lp)})",
        verdict="reproduced" if share < 0.75 else "not reproduced (most patients usable here)")

# sensitivity of the best model against the aggregate reader, paired by patient
s = results.seeds(runs_dir, "2d-attention-transfer")
if s and cohort_manifest is not None:
    p = results.predictions(runs_dir, "2d-attention-transfer", s[0])
    thr = by.at["2d-attention-transfer", "threshold_val"]
    t = p[p["split"] == "test"].merge(cohort_manifest[["patient_id", "reader1", "reader2", "reader3"]], on="patient_id")
    pos = t[t["target"] == 1]
    model_call = (pos["prob"] >= thr).to_numpy(float)
    reader_call = stats.majority(pos[["reader1", "reader2", "reader3"]].to_numpy()).astype(float)
    diff = model_call.mean() - reader_call.mean()
    lo, hi = stats.bootstrap_ci(lambda a, b: a.mean() - b.mean(), model_call, reader_call, n_boot=n_boot, seed=seed)
    add("The model is more sensitive than the DWI-FLAIR mismatch reads (aggregate reader)",
        "sensitivity 0.70 vs 0.57",
        ours=f"{model_call.mean():.2f} vs {reader_call.mean():.2f} "
             f"(difference {diff:+.2f}, 95% CI {lo:+.2f} to {hi:+.2f}; validation threshold)",
        verdict="reproduced" if lo > 0 else ("same direction, not significant" if diff > 0 else "not reproduced"))

cam_summary = out_dir / "gradcam_summary.csv"
if cam_summary.exists():
    cs = pd.read_csv(cam_summary, index_col=0)
    best = cs["hit_rate"].max()
    add("Grad-CAM localises the lesion: >50% overlap in 96% of cases", "radiologist's reading",
        ours="; ".join(f"{e}: {r['hit rate (95% CI)']}" for e, r in cs.iterrows()),
        verdict="reproduced" if best >= 0.9 else "not reproduced (lower overlap, measured not judged)")
if cohort_manifest is not None:
    calls = cohort_manifest.query("split == 'test'")[["reader1", "reader2", "reader3"]].to_numpy()
    k = stats.fleiss_kappa(calls)
    add("Readers agree moderately (Fleiss' kappa 0.46)", "kappa 0.46", ours=f"kappa {k:.2f} (test split)",
        verdict="by construction: the simulated readers are calibrated to it (Data chapter)")

table = pd.DataFrame(claims)
if "seeds" in table:  # how many training seeds each verdict rests on ("-": not a training result)
    table["seeds"] = table["seeds"].map(lambda v: "-" if pd.isna(v) else str(int(v)))
table.to_csv(out_dir / "reproduction.csv", index=False)
counts = table["verdict"].value_counts()
display(Markdown(f"**{shown} profile**: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" of {len(table)} claims."))
with pd.option_context("display.max_colwidth", 120):
    display(table.style.hide(axis="index").set_properties(**{"text-align": "left", "font-size": "9pt"}))

# %% [markdown]
# ## Why a claim can fail to reproduce here
#
# - **Size.** The quick profile has 16 test patients and trains for a few epochs on hemispheres pooled
#   4x (2D) and 8x (3D) in-plane, so that the whole book builds on two CPU cores. An AUC on 16 patients
#   has a 95% CI about 0.4 wide: differences of the paper's size (0.03-0.13) cannot be significant
#   there, and their sign is noisy. The `lowres` profile has the paper's 422 patients (85 test
#   patients: a CI about 0.2 wide), its grid and early stopping, at 56 x 28 slices (4x pooling) and
#   with one seed, trained on two CPU cores; the `full` profile (the paper's input size, up to 100
#   epochs, five seeds) needs a GPU (README). The *seeds* column says how many training seeds a
#   verdict rests on.
# - **The cohort is synthetic.** Its FLAIR signal follows time since onset by construction (a sigmoid
#   with a per-patient midpoint and amplitude), and its oracle AUC (Data chapter) bounds every model;
#   the paper's patients have physiology, scanners and confounders that we do not simulate. A
#   reproduced ranking here says the method can exploit the signal the paper relies on, not that the
#   paper's numbers hold on real patients.
# - **The stand-ins.** "Medical" pretraining uses a synthetic tumour task on the same anatomy (closer to
#   the target than the paper's external datasets, which can favour it); ImageNet weights cannot be
#   downloaded here, so that row runs only when the file is supplied; the readers are simulated and
#   calibrated to the paper's agreement, so their kappa is a target, not a finding.
# - **The paper's own numbers.** Several stated gains do not follow from its Table 2 (Results page), the
#   text reports AUC values as "% increase", and the operating points appear to be chosen on the test
#   set; we report both a validation-chosen and a test-optimal threshold.
