"""The Reproduction page's table: each claim of the paper, its evidence, ours, and a verdict.

Every claim is one row built from the result files (``results/<profile>/...``) by a function here;
the page calls :func:`claims` and draws the table. The verdicts (:data:`VERDICTS`):

- *reproduced*: "A beats B" with our A - B positive and significant (DeLong's test on the same test
  patients, p < 0.05); a level ("AUC about 0.9") when the paper's value lies in our 95% CI or ours
  is above it.
- *not reproduced*: the data contradict the claim: a significant difference the other way, or a
  95% CI that excludes the paper's value.
- *inconclusive*: neither; the evidence says which difference the test split could have detected
  (80% power, two-sided 0.05).
- *not testable*: the model the claim credits (the better one, or the one said to reach a level) did
  not learn: its validation AUC stayed within the band that chance reaches
  (:func:`learned`). A model that beats one which learned nothing still supports a claim.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import results, stats
from .results import READERS, experiment_name
from .task import Task

# the paper's phase 1 test AUCs (Table 2), which the "stroke detection is reliable" claims test
PAPER_STROKE_AUC = {"2d": 0.8905, "3d": 0.946}
# the paper: 221 of 422 patients had an ROI large enough for the Lee et al. method
LEE_PAPER_USABLE = 221 / 422
LEE_STRINGENT_BELOW = 0.75  # a usable share under this still says "the ROI is stringent"
# the paper: the model's sensitivity against the aggregate reader's
PAPER_SENSITIVITY = (0.70, 0.57)
CAM_HIT_REPRODUCED = 0.9  # the paper: >50% overlap in 96% of cases, read visually; ours is measured
KAPPA_TARGET = (0.35, 0.55)  # the readers' calibration target (tss.synth.params, "readers"; paper 0.46)


# ------------------------------------------------------------------------------------------------
# the verdicts (moved from tss.results: the claims are this module's)


# The Reproduction page's verdicts, in the order its summary lists them. "A beats B" is *reproduced*
# when A - B is positive and significant (DeLong, p < ALPHA), *not reproduced* when the data
# contradict the claim (significant the other way, or a CI that excludes the paper's value),
# *inconclusive* otherwise (with the difference the test split could detect at POWER), and *not
# testable* when the model the claim credits did not learn (see :func:`learned`).
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not testable", "not run")
ALPHA, POWER = 0.05, 0.8


def verdict(diff: float, p: float, alpha: float = ALPHA) -> str:
    """The category of a claim "A beats B" on our data: ``diff`` = ours A - B, ``p`` its test's
    p-value. A difference that is not significant is *inconclusive* whatever its sign."""
    if diff is None or np.isnan(diff) or p is None or np.isnan(p):
        return "not run"
    if p < alpha:
        return "reproduced" if diff > 0 else "not reproduced"
    return "inconclusive"


def learned(runs_root, experiment: str, seed: int, level: float = 0.95) -> dict:
    """Did a run learn its task? :func:`tss.stats.learned` on its kept model's validation predictions."""
    v = results.predictions(runs_root, experiment, seed).query("split == 'val'")
    return stats.learned(v["target"], v["prob"], level)


def did_not_learn(runs_root, runs) -> str:
    """"" when every (experiment, seed) in ``runs`` learned (:func:`learned`); else what a
    reader needs, e.g. "2d-tss45-transfer did not learn (validation AUC 0.49, chance reaches 0.62)"."""
    out = []
    for e, s in runs:
        r = learned(runs_root, e, s)
        if not r["learned"]:
            out.append(f"{e} did not learn (validation AUC {r['val_auc']:.2f}, chance reaches {r['chance_upper']:.2f})")
    return "; ".join(out)


def reaches_paper(by: pd.DataFrame, experiment: str, paper_auc: float, runs_root=None) -> dict:
    """Our evidence for "``experiment`` reaches the paper's test AUC": reproduced when our AUC is at
    least ``paper_auc`` or its 95% CI holds it, not reproduced when the CI lies below it; not
    testable when the run did not learn (checked when ``runs_root`` is given). ``by``:
    :func:`table2`'s raw rows indexed by experiment."""
    if experiment not in by.index or by.at[experiment, "status"] != "ok":
        return {"ours": "not run", "verdict": "not run", "seeds": 0}
    r = by.loc[experiment]
    ok = r["auc_lo"] <= paper_auc <= r["auc_hi"] or r["auc"] >= paper_auc
    ours = f"{stats.with_ci(r['auc'], (r['auc_lo'], r['auc_hi']))} ({r['n']:.0f} test {r.get('level', 'patient')}s)"
    if r["n_seeds"] > 1:  # the verdict is the first seed's; the others' spread beside it
        ours += f"; {r['n_seeds']:.0f} seeds: {r['auc_seeds_mean']:.2f} ± {r['auc_seeds_sd']:.2f}"
    flat = did_not_learn(runs_root, [(experiment, int(r["seed"]))]) if runs_root is not None else ""
    if flat:
        return {"ours": f"{ours}; {flat}", "verdict": "not testable", "seeds": int(r["n_seeds"])}
    return {"ours": ours, "verdict": "reproduced" if ok else "not reproduced", "seeds": int(r["n_seeds"])}


def _judged(diff: float, p: float, se: float, runs_root, runs) -> tuple[str, str, float]:
    """(verdict, what to add to the evidence, detectable difference): the category of "A beats B";
    when inconclusive, the difference the test split detects with :data:`POWER`; not testable when
    a run in ``runs`` did not learn."""
    v = verdict(diff, p)
    if v == "not run":
        return v, "", np.nan
    flat = did_not_learn(runs_root, runs)
    if flat:
        return "not testable", f"; {flat}", np.nan
    if v == "inconclusive":
        d = stats.detectable_difference(se, ALPHA, POWER)
        return v, f"; detectable difference {d:.2f} ({POWER:.0%} power)", d
    return v, "", np.nan


def compare_claim(runs_root, better: str, worse: str) -> dict:
    """Our evidence for "``better`` has a higher test AUC than ``worse``": DeLong on the first seed
    of each (:func:`_judged` gives the verdict); ``seeds``: how many seeds both have (with several,
    how many agree in sign)."""
    r = results.delong_vs(runs_root, better, worse)
    both = sorted(set(results.seeds(runs_root, better)) & set(results.seeds(runs_root, worse)))
    if "auc1" not in r:
        return {"ours": r.get("why", "not run"), "verdict": "not run", "seeds": len(both)}
    # only the model said to be better must have learned: one that beats a model which learned nothing
    # supports the claim; one that learned nothing itself says nothing about the method
    v, more, detectable = _judged(r["diff"], r["p"], r["se"], runs_root, [(better, results.seeds(runs_root, better)[0])])
    out = {"ours": f"{r['auc1']:.2f} vs {r['auc2']:.2f} (DeLong p = {r['p']:.2g})", "verdict": v, "seeds": len(both),
           "detectable": detectable}
    if len(both) > 1:  # the verdict is the first seed's; say how many seeds point the same way
        diffs = [_test_auc(runs_root, better, s) - _test_auc(runs_root, worse, s) for s in both]
        out["ours"] += f"; higher in {sum(d > 0 for d in diffs)} of {len(both)} seeds"
    out["ours"] += more
    return out


def _test_auc(runs_root, experiment: str, seed: int) -> float:
    t = results.predictions(runs_root, experiment, seed).query("split == 'test'")
    return stats.auc_or_nan(t["target"], t["prob"])


def compare_with_lee(runs_root, experiment: str, lee_dir) -> dict:
    """Our model against the Lee et al. baseline on the test patients the baseline could measure
    (DeLong on the shared patients)."""
    f = Path(lee_dir) / "predictions.csv"
    s = results.seeds(runs_root, experiment)
    if not f.exists() or not s:
        return {"ours": "not run", "verdict": "not run"}
    lee = pd.read_csv(f).query("split == 'test' and usable")
    ours = results.predictions(runs_root, experiment, s[0]).query("split == 'test'")
    both = ours.merge(lee[["patient_id", "prob"]], on="patient_id", suffixes=("", "_lee"))
    try:
        r = stats.delong(both["target"], both["prob"], both["prob_lee"])
    except ValueError as e:
        return {"ours": f"{len(both)} shared test patients: {e}", "verdict": "not run"}
    v, more, detectable = _judged(r["diff"], r["p"], r["se"], runs_root, [(experiment, s[0])])
    return {"ours": f"{r['auc1']:.2f} vs {r['auc2']:.2f} on {len(both)} patients (DeLong p = {r['p']:.2g}){more}",
            "verdict": v, "detectable": detectable}


def _row(claim: str, paper_says: str, **ours) -> dict:
    return {"claim": claim, "paper": paper_says, **ours}


def model_claims(runs_dir, by: pd.DataFrame) -> list[dict]:
    """The claims about the deep models' AUCs: phase 1 reaches the paper's level; transfer beats
    each other initialisation; medical beats random; ImageNet is worse than random; phase 4 improves
    phase 3; 2D beats 3D. ``by``: :func:`tss.results.table2`'s raw rows indexed by experiment."""
    pap = results.paper_aucs()
    rows = [_row(f"Stroke detection is reliable: {arch.upper()} AUC {auc:.2f}",
                 "Table 2, phase 1" + (" (ours from Models Genesis)" if arch == "3d" else ""),
                 **reaches_paper(by, experiment_name(arch, "stroke", "random"), auc, runs_root=runs_dir))
            for arch, auc in PAPER_STROKE_AUC.items()]
    tasks = [(t.phase, t.title) for t in (Task.TSS3, Task.TSS45)]
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
                           n_boot: int = 1000, seed: int = 0, not_learned: str = "") -> dict:
    """"The model is more sensitive than the mismatch reads": on the test patients with TSS < 4.5 h,
    the model's calls at the validation threshold against the majority reader's, paired by patient;
    the 95% CI of the difference is a bootstrap over those patients. ``not_learned``: why the model
    did not learn (:func:`did_not_learn`); non-empty makes the claim not testable."""
    t = patients[patients["split"] == "test"].merge(manifest[["patient_id", *READERS]], on="patient_id")
    pos = t[t["target"] == 1]
    model_call = (pos["prob"] >= threshold).to_numpy(float)
    reader_call = stats.majority(pos[READERS].to_numpy()).astype(float)
    diff = model_call.mean() - reader_call.mean()
    lo, hi = stats.bootstrap_ci(lambda a, b: a.mean() - b.mean(), model_call, reader_call, n_boot=n_boot, seed=seed)
    a, b = PAPER_SENSITIVITY
    ours = (f"{model_call.mean():.2f} vs {reader_call.mean():.2f} "
            f"(difference {diff:+.2f}, 95% CI {lo:+.2f} to {hi:+.2f}; validation threshold)")
    if not_learned:
        v, ours = "not testable", f"{ours}; {not_learned}"
    elif lo > 0 or hi < 0:
        v = "reproduced" if lo > 0 else "not reproduced"
    else:  # the bootstrap CI's half-width over 1.96 is the difference's standard error
        detectable = stats.detectable_difference((hi - lo) / (2 * 1.959964))
        v, ours = "inconclusive", f"{ours}; detectable difference {detectable:.2f} (80% power)"
    return _row("The model is more sensitive than the DWI-FLAIR mismatch reads (aggregate reader)",
                f"sensitivity {a:.2f} vs {b:.2f}", ours=ours, verdict=v,
                detectable=detectable if v == "inconclusive" else np.nan)


def gradcam_claim(cam_summary: pd.DataFrame, not_learned: str = "") -> dict:
    """"Grad-CAM localises the lesion", from the Grad-CAM page's summary (one row per model):
    reproduced when a model's hit rate reaches :data:`CAM_HIT_REPRODUCED`; not testable when the
    models did not learn (``not_learned``: :func:`did_not_learn`), since the map of a
    model that learned nothing says nothing of the method."""
    ours = "; ".join(f"{e}: {r['hit rate (95% CI)']}" for e, r in cam_summary.iterrows())
    if cam_summary["hit_rate"].max() >= CAM_HIT_REPRODUCED:
        v = "reproduced"
    elif not_learned:
        v, ours = "not testable", f"{ours}; {not_learned}"
    else:
        v = "not reproduced"
    return _row("Grad-CAM localises the lesion: >50% overlap in 96% of cases", "radiologist's reading (visual)",
                ours=ours, verdict=v)


def kappa_claim(manifest: pd.DataFrame) -> dict:
    """The readers' agreement on the test split. The simulated readers are calibrated to
    :data:`KAPPA_TARGET` on the whole cohort, so this is a check of that calibration, not a finding:
    *by construction* inside the target, *off its target* outside it."""
    k = stats.fleiss_kappa(manifest.query("split == 'test'")[READERS].to_numpy())
    every = stats.fleiss_kappa(manifest.dropna(subset=READERS)[READERS].to_numpy())
    lo, hi = KAPPA_TARGET
    inside = lo <= k <= hi
    return _row("Readers agree moderately (Fleiss' kappa 0.46)", "kappa 0.46",
                ours=f"kappa {k:.2f} (test split); {every:.2f} on all {len(manifest)} patients; "
                     f"the simulated readers aim at {lo:.2f}-{hi:.2f}",
                verdict="by construction" if inside else "off its target")


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
        One row per claim: claim, paper, ours, verdict, seeds (how many training seeds the verdict
        rests on; "-" for claims that are not a training result) and detectable (the difference
        an inconclusive comparison could have detected; NaN otherwise).
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
                                           manifest, n_boot=n_boot, seed=seed,
                                           not_learned=did_not_learn(runs_dir, [(best, s[0])])))
    if cam_summary is not None and not isinstance(cam_summary, pd.DataFrame):
        cam_summary = pd.read_csv(cam_summary, index_col=0) if Path(cam_summary).exists() else None
    if cam_summary is not None:
        shown = [(e, results.seeds(runs_dir, e)[0]) for e in cam_summary.index if results.seeds(runs_dir, e)]
        flat = [did_not_learn(runs_dir, [r]) for r in shown]  # not testable only when none learned
        rows.append(gradcam_claim(cam_summary, not_learned="; ".join(flat)
                                  if shown and all(flat) and len(shown) == len(cam_summary) else ""))
    if manifest is not None:
        rows.append(kappa_claim(manifest))
    table = pd.DataFrame(rows)
    if "detectable" not in table:
        table["detectable"] = np.nan
    if "seeds" in table:  # how many training seeds each verdict rests on ("-": not a training result)
        table["seeds"] = table["seeds"].map(lambda v: "-" if pd.isna(v) else str(int(v)))
    return table


def counts(table: pd.DataFrame) -> str:
    """"3 reproduced, 2 not run of 5 claims": the verdicts, most frequent first."""
    c = table["verdict"].value_counts()
    return ", ".join(f"{v} {k}" for k, v in c.items()) + f" of {len(table)} claims"




def findings(table: pd.DataFrame, raw: pd.DataFrame, profile: str, n_patients: int | None = None,
             link: str | None = None) -> str:
    """The findings box of the intro and of the Reproduction page, as MyST markdown: the profile,
    its test patients and seeds; the clock's best deep model beside the Lee baseline; which claims
    held, which did not, which cannot be told at this size and which are not testable.

    Args:
        table: :func:`claims` (``reproduction.csv``).
        raw: :func:`tss.results.table2`'s raw rows (``table2_raw.csv``).
        profile: the profile both come from.
        n_patients: the cohort's size, when known.
        link: the Reproduction page's address, to link to from the box (None: no link).
    """
    ok = raw[raw["status"] == "ok"]
    tss = ok[ok["experiment"].str.contains("-tss45-|-attention-", regex=True)]
    seeds = sorted({int(v) for v in ok["n_seeds"].dropna()})
    n_test = int(tss["n"].max()) if len(tss) else 0
    head = f"{profile} profile" + (f": {n_patients} patients" if n_patients else "") + f", {n_test} test patients, "
    head += ("one training seed per run" if seeds == [1] else
             f"{seeds[0]}-{seeds[-1]} training seeds per run" if seeds else "no training run")
    lines = [f"**What this companion finds** ({head}; every number computed from the committed result files):", ""]
    if len(tss):
        best = tss.loc[tss["auc"].idxmax()]
        lee = ok[ok["experiment"] == "lee-et-al-2020"]
        s = (f"- **TSS < 4.5 h.** The best deep model ({best['experiment']}) reaches test AUC "
             f"{stats.with_ci(best['auc'], (best['auc_lo'], best['auc_hi']))}")
        if len(lee):
            r = lee.iloc[0]
            s += (f"; the Lee et al. radiomics baseline {stats.with_ci(r['auc'], (r['auc_lo'], r['auc_hi']))} on the "
                  f"{r['n']:.0f} test patients it can measure")
        lines.append(s + ".")
    by = {v: table[table["verdict"] == v] for v in table["verdict"].unique()}

    def named(rows: pd.DataFrame) -> str:
        return "; ".join(rows["claim"])

    if "reproduced" in by:
        lines.append(f"- **Held ({len(by['reproduced'])}):** {named(by['reproduced'])}.")
    if "not reproduced" in by:
        lines.append(f"- **Did not hold ({len(by['not reproduced'])}):** {named(by['not reproduced'])}.")
    if "inconclusive" in by:
        d = by["inconclusive"]["detectable"].dropna()
        span = (f" (differences up to {d.max():.2f} can go undetected on this test split at 80% power; "
                "the paper's gains are 0.03-0.13)") if len(d) else ""
        lines.append(f"- **Cannot be told at this size ({len(by['inconclusive'])}):** {named(by['inconclusive'])}{span}.")
    if "not testable" in by:
        flat = sorted({m for o in by["not testable"]["ours"] for m in re.findall(r"(\S+) did not learn", o)})
        lines.append(f"- **Not testable ({len(by['not testable'])}):** the model these claims credit did not learn "
                     f"(its validation AUC stayed within chance: {', '.join(flat)}), so our runs say nothing of the "
                     "method there.")
    for v, rows in by.items():
        if v not in ("reproduced", "not reproduced", "inconclusive", "not testable"):
            lines.append(f"- **{v[0].upper() + v[1:]} ({len(rows)}):** {named(rows)}.")
    if link:
        lines += ["", f"Every claim, its evidence and ours: [Reproduction]({link})."]
    return "\n".join(lines)


def beside(paper_recipe: pd.DataFrame, other: pd.DataFrame, recipe: str) -> pd.DataFrame:
    """The claims that ran under another training recipe (:func:`claims` of
    :func:`tss.train.clock.recipe_view`), each beside its verdict under the paper's recipe: claim,
    the paper's recipe's evidence and verdict, the other recipe's. Claims that did not run under
    ``recipe`` are left out; the headline stays the paper's recipe."""
    o = other[other["verdict"] != "not run"].set_index("claim")
    p = paper_recipe.set_index("claim")
    rows = [{"claim": c, "paper's recipe": p.at[c, "ours"] if c in p.index else "not run",
             "verdict (paper's recipe)": p.at[c, "verdict"] if c in p.index else "not run",
             f"{recipe}": o.at[c, "ours"], f"verdict ({recipe})": o.at[c, "verdict"]} for c in o.index]
    return pd.DataFrame(rows, columns=["claim", "paper's recipe", "verdict (paper's recipe)", recipe,
                                       f"verdict ({recipe})"])
