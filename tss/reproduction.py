"""The Reproduction page's table: each claim of the paper, its evidence, ours, and a verdict.

Every claim is one row built from the result files (``results/<profile>/...``) by a function here;
the page calls :func:`claims` and draws the table. Verdict rules (see :func:`tss.results.verdict`):
"A beats B" is *reproduced* when our A - B is positive and significant (DeLong's test on the same
test patients, p < 0.05); a level ("AUC about 0.9") is *reproduced* when the paper's value lies in
our 95% CI or ours is above it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import results, stats
from .results import READERS, compare_claim, compare_with_lee, experiment_name, reaches_paper

# the paper's phase 1 test AUCs (Table 2), which the "stroke detection is reliable" claims test
PAPER_STROKE_AUC = {"2d": 0.8905, "3d": 0.946}
# the paper: 221 of 422 patients had an ROI large enough for the Lee et al. method
LEE_PAPER_USABLE = 221 / 422
LEE_STRINGENT_BELOW = 0.75  # a usable share under this still says "the ROI is stringent"
# the paper: the model's sensitivity against the aggregate reader's
PAPER_SENSITIVITY = (0.70, 0.57)
CAM_HIT_REPRODUCED = 0.9  # the paper: >50% overlap in 96% of cases, read visually; ours is measured


def _row(claim: str, paper_says: str, **ours) -> dict:
    return {"claim": claim, "paper": paper_says, **ours}


def model_claims(runs_dir, by: pd.DataFrame) -> list[dict]:
    """The claims about the deep models' AUCs: phase 1 reaches the paper's level; transfer beats
    each other initialisation; medical beats random; ImageNet is worse than random; phase 4 improves
    phase 3; 2D beats 3D. ``by``: :func:`tss.results.table2`'s raw rows indexed by experiment."""
    pap = results.paper_aucs()
    rows = [_row(f"Stroke detection is reliable: {arch.upper()} AUC {auc:.2f}",
                 "Table 2, phase 1" + (" (ours from Models Genesis)" if arch == "3d" else ""),
                 **reaches_paper(by, experiment_name(arch, "stroke", "random"), auc))
            for arch, auc in PAPER_STROKE_AUC.items()]
    tasks = (("tss3", "TSS < 3 h"), ("tss45", "TSS < 4.5 h"))
    for phase, task in tasks:
        for arch in ("2d", "3d"):
            for base in (["random", "imagenet", "medical"] if arch == "2d" else ["random", "medical"]):
                a, b = pap.get((arch, phase, "transfer")), pap.get((arch, phase, base))
                rows.append(_row(f"{task}, {arch.upper()}: task-adaptive transfer beats {base} initialisation",
                                 f"AUC {a:.2f} vs {b:.2f}",
                                 **compare_claim(runs_dir, f"{arch}-{phase}-transfer", f"{arch}-{phase}-{base}")))
        for arch in ("2d", "3d"):
            a, b = pap.get((arch, phase, "medical")), pap.get((arch, phase, "random"))
            rows.append(_row(f"{task}, {arch.upper()}: medical-domain pretraining beats random", f"AUC {a:.2f} vs {b:.2f}",
                             **compare_claim(runs_dir, f"{arch}-{phase}-medical", f"{arch}-{phase}-random")))
    rows.append(_row("TSS < 4.5 h, 2D: ImageNet pretraining is worse than random", "AUC 0.61 vs 0.63",
                     **compare_claim(runs_dir, "2d-tss45-random", "2d-tss45-imagenet")))
    for arch in ("2d", "3d"):
        a, b = pap[(arch, "attention", "transfer")], pap[(arch, "tss45", "transfer")]
        rows.append(_row(f"Attention fine-tuning (phase 4) improves the {arch.upper()} phase 3 model",
                         f"AUC {a:.4f} vs {b:.4f}",
                         **compare_claim(runs_dir, f"{arch}-attention-transfer", f"{arch}-tss45-transfer")))
    for phase, task in tasks:
        a, b = pap[("2d", phase, "random")], pap[("3d", phase, "random")]
        rows.append(_row(f"{task}: the 2D model beats the 3D model even from random weights", f"AUC {a:.2f} vs {b:.2f}",
                         **compare_claim(runs_dir, f"2d-{phase}-random", f"3d-{phase}-random")))
    return rows


def lee_share_claim(lee_predictions: pd.DataFrame) -> dict:
    """"Lee et al.'s ROI is stringent": the share of patients whose ROI the method can use."""
    share = lee_predictions["usable"].mean()
    return _row("Lee et al.'s ROI is stringent: only about half the patients (221 of 422) have one large enough",
                f"{LEE_PAPER_USABLE:.0%} usable",
                ours=f"{share:.0%} usable ({int(lee_predictions['usable'].sum())} of {len(lee_predictions)})",
                verdict="reproduced" if share < LEE_STRINGENT_BELOW else "not reproduced (most patients usable here)")


def sensitivity_vs_readers(patients: pd.DataFrame, threshold: float, manifest: pd.DataFrame,
                           n_boot: int = 1000, seed: int = 0) -> dict:
    """"The model is more sensitive than the mismatch reads": on the test patients with TSS < 4.5 h,
    the model's calls at the validation threshold against the majority reader's, paired by patient;
    the 95% CI of the difference is a bootstrap over those patients."""
    t = patients[patients["split"] == "test"].merge(manifest[["patient_id", *READERS]], on="patient_id")
    pos = t[t["target"] == 1]
    model_call = (pos["prob"] >= threshold).to_numpy(float)
    reader_call = stats.majority(pos[READERS].to_numpy()).astype(float)
    diff = model_call.mean() - reader_call.mean()
    lo, hi = stats.bootstrap_ci(lambda a, b: a.mean() - b.mean(), model_call, reader_call, n_boot=n_boot, seed=seed)
    a, b = PAPER_SENSITIVITY
    return _row("The model is more sensitive than the DWI-FLAIR mismatch reads (aggregate reader)",
                f"sensitivity {a:.2f} vs {b:.2f}",
                ours=f"{model_call.mean():.2f} vs {reader_call.mean():.2f} "
                     f"(difference {diff:+.2f}, 95% CI {lo:+.2f} to {hi:+.2f}; validation threshold)",
                verdict="reproduced" if lo > 0 else ("same direction, not significant" if diff > 0 else "not reproduced"))


def gradcam_claim(cam_summary: pd.DataFrame) -> dict:
    """"Grad-CAM localises the lesion", from the Grad-CAM page's summary (one row per model)."""
    return _row("Grad-CAM localises the lesion: >50% overlap in 96% of cases", "radiologist's reading",
                ours="; ".join(f"{e}: {r['hit rate (95% CI)']}" for e, r in cam_summary.iterrows()),
                verdict="reproduced" if cam_summary["hit_rate"].max() >= CAM_HIT_REPRODUCED
                else "not reproduced (lower overlap, measured not judged)")


def kappa_claim(manifest: pd.DataFrame) -> dict:
    """The readers' agreement on the test split (calibrated by construction in the synthetic cohort)."""
    k = stats.fleiss_kappa(manifest.query("split == 'test'")[READERS].to_numpy())
    return _row("Readers agree moderately (Fleiss' kappa 0.46)", "kappa 0.46", ours=f"kappa {k:.2f} (test split)",
                verdict="by construction: the simulated readers are calibrated to it (Data chapter)")


def claims(runs_dir, raw: pd.DataFrame, lee_dir=None, manifest: pd.DataFrame | None = None,
           cam_summary=None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every claim the Reproduction page checks, in the paper's order.

    Args:
        runs_dir: the profile's run tree (``results/<profile>/runs``).
        raw: :func:`tss.results.table2`'s raw rows (``table2_raw.csv``).
        lee_dir: the Lee et al. baseline's folder (``predictions.csv``); None or missing: not run.
        manifest: the cohort manifest with the readers' calls; None: the reader claims are left out.
        cam_summary: the Grad-CAM page's ``gradcam_summary.csv`` (path or table); None: left out.
        n_boot, seed: the bootstrap of the sensitivity difference.

    Returns:
        One row per claim: claim, paper, ours, verdict and seeds (how many training seeds the
        verdict rests on; "-" for claims that are not a training result).
    """
    by = raw.set_index("experiment")
    rows = model_claims(runs_dir, by)
    lee_dir = Path(lee_dir) if lee_dir is not None else None
    rows.append(_row("The phase 4 2D model beats the Lee et al. ML method (on the ML method's subset)",
                     "AUC 0.76 vs 0.72 on the subset; 0.74 on all",
                     **(compare_with_lee(runs_dir, "2d-attention-transfer", lee_dir) if lee_dir is not None
                        else {"ours": "not run", "verdict": "not run"})))
    if lee_dir is not None and (lee_dir / "predictions.csv").exists():
        rows.append(lee_share_claim(pd.read_csv(lee_dir / "predictions.csv")))
    best = "2d-attention-transfer"
    s = results.seeds(runs_dir, best)
    if s and manifest is not None:
        rows.append(sensitivity_vs_readers(results.predictions(runs_dir, best, s[0]), by.at[best, "threshold_val"],
                                           manifest, n_boot=n_boot, seed=seed))
    if cam_summary is not None and not isinstance(cam_summary, pd.DataFrame):
        cam_summary = pd.read_csv(cam_summary, index_col=0) if Path(cam_summary).exists() else None
    if cam_summary is not None:
        rows.append(gradcam_claim(cam_summary))
    if manifest is not None:
        rows.append(kappa_claim(manifest))
    table = pd.DataFrame(rows)
    if "seeds" in table:  # how many training seeds each verdict rests on ("-": not a training result)
        table["seeds"] = table["seeds"].map(lambda v: "-" if pd.isna(v) else str(int(v)))
    return table


def counts(table: pd.DataFrame) -> str:
    """"3 reproduced, 2 not run of 5 claims": the verdicts, most frequent first."""
    c = table["verdict"].value_counts()
    return ", ".join(f"{v} {k}" for k, v in c.items()) + f" of {len(table)} claims"


