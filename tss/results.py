"""The paper's results from our result files (never from notebook state, never retraining).

Table 2 row by row beside the paper's, the relative AUC gains of its Figures 6-7 (with the paper's
own text checked against its table), and the ROC curves of its Figure 8. Everything here reads
``results/<profile>/...``: the training runs (``runs/seed*/<experiment>/``), the Lee et al.
baseline (``baselines/lee/``) and the cohort manifest (reader calls).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import paper, profiles, project, stats
from .atomic import write_text
from .runtree import RunTree
from .task import Task
from .train.config import Experiment, grid, stroke_init

# Table 2's rows: (stage, model, paper's "weights") -> our experiment
PAPER_WEIGHTS = {"Random": "random", "ImageNet": "imagenet", "Medical": "medical", "Phase 1": "transfer",
                 "Phase 2": "transfer", "Phase 3 + attention fine-tune": "transfer"}
STAGE_PHASE = {"Phase 1": "stroke", "Phase 2": "tss3", "Phase 3": "tss45", "Phase 4": "attention"}
INIT_LABEL = {"random": "Random", "imagenet": "ImageNet", "medical": "Medical", "transfer": "Ours (task-adaptive)",
              "genesis": "Models Genesis"}
ML_MODEL = "ML (Lee et al. 2020)"

# The paper's text and captions state relative AUC gains of its transfer over other initialisations.
# Each claim is checked against the paper's own Table 2 (``paper_gain_claims``).
PAPER_GAIN_CLAIMS = [
    {"where": "Fig. 6 caption", "arch": "2d", "phase": "tss3", "claim_pct": 5.1},
    {"where": "Fig. 6 caption", "arch": "3d", "phase": "tss3", "claim_pct": 8.3},
    {"where": "Section 3, phase 2", "arch": "2d", "phase": "tss3", "claim_pct": 14.0},
    {"where": "Section 3, phase 2", "arch": "3d", "phase": "tss3", "claim_pct": 21.6},
    {"where": "Fig. 7 caption and section 3", "arch": "2d", "phase": "tss45", "claim_pct": 22.1},
    {"where": "Fig. 7 caption and section 3", "arch": "3d", "phase": "tss45", "claim_pct": 20.9},
    {"where": "Section 3, phase 3 (ours)", "arch": "2d", "phase": "tss45", "claim_pct": 17.1},
    {"where": "Section 3, phase 3 (ours)", "arch": "3d", "phase": "tss45", "claim_pct": 20.9},
    {"where": "Section 3, phase 3 (medical)", "arch": "2d", "phase": "tss45", "claim_pct": 12.9, "of": "medical"},
    {"where": "Section 3, phase 3 (medical)", "arch": "3d", "phase": "tss45", "claim_pct": 5.9, "of": "medical"},
    {"where": "Section 3, phase 4", "arch": "2d", "phase": "attention", "claim_pct": 17.4},
    {"where": "Section 3, phase 4", "arch": "3d", "phase": "attention", "claim_pct": 25.7},
]


def experiment_name(arch: str, phase: str, init: str) -> str:
    """Our experiment for a row of Table 2; its phase 1 "random" row is our phase 1 from where the
    paper's method starts it (:func:`~tss.train.config.stroke_init`: Models Genesis for 3D)."""
    if phase == "stroke" and init == "random":
        init = stroke_init(arch)
    return Experiment(arch, phase, init).name


def profile_of(results_root, preferred=("full", "lowres", "quick")) -> str | None:
    """The first profile in ``preferred`` whose training runs exist under ``results_root``
    (:func:`tss.project.profiles_with`)."""
    found = project.profiles_with(project.FINISHED_RUNS, results_root, tuple(preferred))
    return found[0] if found else None


@dataclass(frozen=True)
class ShownProfile:
    """Where a results page reads and writes: the profile it shows and that profile's folders."""

    shown: str
    runs_dir: Path
    cohort_dir: Path  # manifest.csv and latent.csv: the cohort's folder, or their committed copies
    cache_dir: Path   # the processed cohort (absent in a clone)
    out_dir: Path     # the page's tables and figures (created)


def shown_profile(results_root, profile: str, cohort_dir=None, cache_dir=None) -> ShownProfile:
    """The Results chapter's pages show the largest profile with training runs under ``results_root``
    (full, lowres, then ``profile``, the one make book ran); ``cohort_dir`` and ``cache_dir`` are the
    page's parameters and apply only when the shown profile is ``profile``."""
    root = Path(results_root)
    shown = profile_of(root, [p for p in profiles.BY_SIZE if p != "quick"] + [profile]) or profile
    mine = shown == profile
    where = project.under(root, shown)
    where.outputs.mkdir(parents=True, exist_ok=True)
    return ShownProfile(shown, where.runs, cohort_tables(root, shown, cohort_dir if mine else None),
                        Path(cache_dir) if cache_dir and mine else where.cache, where.outputs)


COHORT_TABLES = ("manifest.csv", "latent.csv")


def record_cohort(cohort_dir, dest) -> list[Path]:
    """Copy the cohort's small tables (manifest: splits, onset times, reader calls; latent: the
    generator's truth, for the oracle) to ``dest`` (``results/<profile>/cohort/``, committed), so that
    a clone without the images renders the Results chapter; returns what it wrote."""
    out = []
    for name in COHORT_TABLES:
        src = Path(cohort_dir) / name
        if src.exists():
            Path(dest).mkdir(parents=True, exist_ok=True)
            write_text(Path(dest) / name, src.read_text())
            out.append(Path(dest) / name)
    return out


def cohort_tables(results_root, profile: str, cohort_dir=None) -> Path:
    """Where a profile's ``manifest.csv`` and ``latent.csv`` are read: the cohort's folder (default
    ``data/synthetic-<profile>`` beside ``results_root``) when it holds a manifest, else the copies
    :func:`record_cohort` left under ``results/<profile>/cohort/``."""
    where = project.under(results_root, profile)
    d = Path(cohort_dir) if cohort_dir else where.cohort
    return d if (d / "manifest.csv").exists() else where.cohort_tables


def seeds(runs_root, experiment: str) -> list[int]:
    return RunTree(runs_root).seeds(experiment)


def predictions(runs_root, experiment: str, seed: int) -> pd.DataFrame:
    """Test and validation predictions of one run: per patient for TSS (``patients.csv``); per
    hemisphere for stroke detection (``predictions.csv``: every synthetic patient has a stroke, so
    only hemispheres have both classes)."""
    d = RunTree(runs_root).run_dir(experiment, seed)
    f = d / ("predictions.csv" if Experiment.parse(experiment).phase == "stroke" else "patients.csv")
    if not f.exists():
        raise FileNotFoundError(f"{experiment} (seed {seed}) has no {f.name} in {d}")
    return pd.read_csv(f)


def evaluate(pred: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """``stats.metric_summary`` on the test rows, with the Youden threshold from the validation rows."""
    test, val = pred[pred["split"] == "test"], pred[pred["split"] == "val"]
    return stats.metric_summary(test["target"], test["prob"], val["target"], val["prob"], n_boot=n_boot, seed=seed)


def experiment_metrics(runs_root, experiment: str, n_boot: int = 1000) -> dict:
    """Metrics of an experiment's first seed with bootstrap CIs, and its test AUC over all seeds."""
    run_seeds = seeds(runs_root, experiment)
    if not run_seeds:
        skipped = RunTree(runs_root).skipped(experiment)
        why = json.loads(skipped[0].read_text())["skipped"] if skipped else "not run"
        return {"experiment": experiment, "status": why}
    preds = [predictions(runs_root, experiment, s) for s in run_seeds]
    out = {"experiment": experiment, "status": "ok", "seed": run_seeds[0], "n_seeds": len(run_seeds),
           "level": "hemisphere" if Experiment.parse(experiment).phase == "stroke" else "patient",
           **evaluate(preds[0], n_boot=n_boot)}
    per_seed = [stats.auc_or_nan(t["target"], t["prob"]) for t in (p.query("split == 'test'") for p in preds)]
    out["auc_seeds_mean"] = float(np.nanmean(per_seed))
    out["auc_seeds_sd"] = float(np.nanstd(per_seed, ddof=1)) if len(per_seed) > 1 else np.nan
    return out


def reader_metrics(manifest: pd.DataFrame, split: str = "test", n_boot: int = 1000) -> pd.DataFrame:
    """Each simulated (or real) reader's DWI-FLAIR mismatch call against TSS < 4.5 h, with CIs,
    the majority reader, and Fleiss' kappa of the three."""
    m = manifest[manifest["split"] == split].dropna(subset=["reader1", "reader2", "reader3"])
    y = Task.TSS45.label(m["onset_to_mri_min"]).to_numpy()
    calls = m[["reader1", "reader2", "reader3"]].astype(int)
    calls.columns = ["Reader 1", "Reader 2", "Reader 3"]
    out = stats.reader_table(y, calls, n_boot=n_boot)
    out["n"] = len(m)
    out.attrs["fleiss_kappa"] = stats.fleiss_kappa(calls.to_numpy()) if len(m) else np.nan
    return out


READERS = ["reader1", "reader2", "reader3"]  # the manifest's reader columns


def reader_report(y, calls: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The Data chapter's reader table: sensitivity, specificity and accuracy of each reader's calls
    (columns of ``calls``) and of their majority against ``y`` (TSS < 4.5 h), each as "value (95% CI)"."""
    t = stats.reader_table(y, calls, n_boot=n_boot, seed=seed)
    for m in ("sensitivity", "specificity", "accuracy"):
        t[m] = [stats.with_ci(v, (lo, hi)) for v, lo, hi in zip(t[m], t[f"{m}_lo"], t[f"{m}_hi"])]
    t = t[["reader", "sensitivity", "specificity", "accuracy"]].copy()
    t["reader"] = [f"Reader {i + 1}" for i in range(calls.shape[1])] + ["Aggregate (majority)"]
    return t


def _fmt(m: dict, key: str) -> str:
    return stats.with_ci(m.get(key, np.nan), (m.get(f"{key}_lo", np.nan), m.get(f"{key}_hi", np.nan)))


def table2(runs_root, lee_dir=None, manifest: pd.DataFrame | None = None, n_boot: int = 1000,
           profile: str = "") -> pd.DataFrame:
    """Every row of the paper's Table 2 with ours beside it: AUC with its 95% CI, sensitivity,
    specificity and accuracy at the Youden threshold chosen on validation, and at the test-optimal
    Youden threshold (the paper's apparent choice). ``raw`` holds the numbers behind the strings."""
    rows, raw = [], []
    readers = reader_metrics(manifest, n_boot=n_boot) if manifest is not None else None
    for r in paper.table2().itertuples(index=False):
        phase = STAGE_PHASE.get(r.stage)
        if r.model in ("2D", "3D"):
            exp = experiment_name(r.model.lower(), phase, PAPER_WEIGHTS[r.weights])
            m = experiment_metrics(runs_root, exp, n_boot=n_boot)
            ours = INIT_LABEL[Experiment.parse(exp).init]
        elif r.model == ML_MODEL:
            exp, ours = "lee-et-al-2020", "Lee et al. 2020 (reimplemented)"
            m = lee_metrics(lee_dir, n_boot=n_boot) if lee_dir is not None else {"status": "not run"}
        else:  # a radiologist: the simulated reader of the same number
            exp, ours = r.model, r.model.replace("Radiologist", "Simulated reader").replace(
                "Aggregate radiologist", "Majority of simulated readers")
            m = _reader_row(readers, r.model) if readers is not None else {"status": "no manifest"}
        raw.append({"stage": r.stage, "task": r.task, "model": r.model, "weights": r.weights, "experiment": exp, **m})
        ok = m.get("status") == "ok"
        rows.append({
            "stage": r.stage, "task": r.task, "model": r.model, "paper weights": "" if pd.isna(r.weights) else r.weights,
            "ours": ours if ok else f"{ours}: {str(m.get('status')).split('. ')[0]}",
            "profile": profile if ok else "",
            "n test": f"{m['n']} {m.get('level', 'patient')}s" if ok else "",
            "AUC (95% CI)": (_fmt(m, "auc") if ok and "auc" in m
                             else "a call, no AUC" if ok and r.model not in ("2D", "3D", ML_MODEL) else ""),
            "sens @val thr": _fmt(m, "sens_val") if ok else "",
            "spec @val thr": _fmt(m, "spec_val") if ok else "",
            "acc @val thr": _fmt(m, "acc_val") if ok else "",
            "sens @test-opt": _fmt(m, "sens_test") if ok and "sens_test" in m else "",
            "spec @test-opt": _fmt(m, "spec_test") if ok and "spec_test" in m else "",
            "AUC over seeds": (f"{m['auc_seeds_mean']:.2f} ± {m['auc_seeds_sd']:.2f} ({m['n_seeds']})"
                               if ok and m.get("n_seeds", 1) > 1 else ""),
            "paper AUC": "" if pd.isna(r.auc) else f"{r.auc:.2f}",
            "ours - paper": (f"{m['auc'] - r.auc:+.2f}" if ok and not pd.isna(m.get("auc", np.nan)) and not pd.isna(r.auc)
                             else ""),
            "paper sens": f"{r.sensitivity:.2f}", "paper spec": f"{r.specificity:.2f}", "paper acc": f"{r.accuracy:.2f}",
        })
    out = pd.DataFrame(rows)
    out.attrs["raw"] = pd.DataFrame(raw)
    return out


def _reader_row(t: pd.DataFrame, model: str) -> dict:
    name = "Aggregate (majority)" if model.startswith("Aggregate") else model.replace("Radiologist", "Reader")
    row = t.set_index("reader").loc[name]
    out = {"status": "ok", "n": int(row["n"]), "level": "patient"}
    for short, long in (("sens", "sensitivity"), ("spec", "specificity"), ("acc", "accuracy")):
        out[f"{short}_val"], out[f"{short}_val_lo"], out[f"{short}_val_hi"] = row[long], row[f"{long}_lo"], row[f"{long}_hi"]
    return out


def table2_parts(t2: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 2 as two tables that fit a page: the AUCs (ours beside the paper's), and the operating
    points (sensitivity, specificity, accuracy at both thresholds beside the paper's)."""
    rows = ["stage", "task", "model", "paper weights"]
    auc = t2[rows + ["ours", "n test", "AUC (95% CI)", "AUC over seeds", "paper AUC"]].copy()
    if "ours - paper" in t2:  # one column, so that the table fits the text column: "0.74 (-0.38)"
        auc["paper AUC"] = [f"{p} ({d})" if d else p for p, d in zip(t2["paper AUC"], t2["ours - paper"])]
        auc = auc.rename(columns={"paper AUC": "paper AUC (ours - paper)"})
    ops = t2[rows + [c for c in t2.columns if "@" in c] + ["paper sens", "paper spec", "paper acc"]]
    measured = ops[[c for c in ops.columns if "@" in c]].replace("n/a", np.nan).notna().any(axis=1)
    return auc, ops[measured]


def lee_metrics(lee_dir, subset: str = "usable", n_boot: int = 1000) -> dict:
    """The Lee et al. baseline's test metrics on the patients its ROI method could measure."""
    f = Path(lee_dir) / "predictions.csv"
    if not f.exists():
        return {"status": f"not run (no {f})"}
    pred = pd.read_csv(f)
    if subset == "usable":
        pred = pred[pred["usable"].astype(bool)]
    return {"status": "ok", "level": "patient", **evaluate(pred, n_boot=n_boot)}


# ------------------------------------------------------------------------------------------------
# relative gains (Figures 6-7)


def gain_pct(auc: float, baseline: float) -> float:
    """Relative AUC gain in percent, the paper's measure: 100 (AUC - baseline) / baseline."""
    return 100 * (auc - baseline) / baseline


def paper_aucs() -> dict[tuple[str, str, str], float]:
    """(arch, phase, init) -> the paper's test AUC (Table 2)."""
    out = {}
    for r in paper.table2().itertuples(index=False):
        if r.model in ("2D", "3D"):
            out[(r.model.lower(), STAGE_PHASE[r.stage], PAPER_WEIGHTS[r.weights])] = r.auc
    return out


def gains(aucs: dict[tuple[str, str, str], float]) -> pd.DataFrame:
    """Gain of each initialisation over each other one, per architecture and phase, from a table of
    AUCs keyed (arch, phase, init); phase 4 is compared with phase 3's baselines (training from
    scratch, as the paper does)."""
    rows = []
    for (arch, phase, init), a in aucs.items():
        ref_phase = "tss45" if phase == "attention" else phase
        for (a2, p2, base), b in aucs.items():
            if (a2, p2) == (arch, ref_phase) and (base, p2) != (init, phase) and not np.isnan(a) and not np.isnan(b):
                rows.append({"arch": arch, "phase": phase, "init": init, "over": base, "auc": a, "baseline_auc": b,
                             "gain_pct": gain_pct(a, b)})
    return pd.DataFrame(rows, columns=["arch", "phase", "init", "over", "auc", "baseline_auc", "gain_pct"])


def gains_table(raw: pd.DataFrame, runs_root) -> pd.DataFrame:
    """Our relative gains of the transfer and medical initialisations (TSS phases) over the other
    initialisations, beside the gain the paper's Table 2 gives for the same comparison, with DeLong's
    p for our paired AUC difference on the same test patients (first seed). ``raw``: :func:`table2`'s
    raw rows. Our 3D phase 1 (Models Genesis) stands for the paper's "Random" phase 1 row."""
    ok = raw[(raw["status"] == "ok") & raw["model"].isin(["2D", "3D"])]
    ours = {}
    for name, a in zip(ok["experiment"], ok["auc"] if "auc" in ok else []):
        e = Experiment.parse(name)
        ours[(e.arch, e.phase, "random" if e.init == "genesis" else e.init)] = a
    g = gains(ours).merge(gains(paper_aucs())[["arch", "phase", "init", "over", "gain_pct"]],
                          on=["arch", "phase", "init", "over"], how="left", suffixes=("", "_paper"))
    g = g[g["init"].isin(["transfer", "medical"]) & (g["phase"] != "stroke")]

    def p_value(r) -> float:
        base_phase = "tss45" if r["phase"] == "attention" else r["phase"]
        return delong_vs(runs_root, experiment_name(r["arch"], r["phase"], r["init"]),
                         experiment_name(r["arch"], base_phase, r["over"])).get("p", np.nan)

    g["DeLong p"] = g.apply(p_value, axis=1) if len(g) else pd.Series(dtype=float)
    return g.rename(columns={"gain_pct": "gain % (ours)", "gain_pct_paper": "gain % (paper's table)"})


def paper_gain_claims(tolerance_pct: float = 0.3) -> pd.DataFrame:
    """Each gain the paper's text states, beside the gains its own Table 2 gives for that
    architecture and phase, and which comparison (if any) reproduces the stated number."""
    g = gains(paper_aucs())
    rows = []
    for c in PAPER_GAIN_CLAIMS:
        init = c.get("of", "transfer")
        cand = g[(g["arch"] == c["arch"]) & (g["phase"] == c["phase"]) & (g["init"] == init)]
        match = cand[(cand["gain_pct"] - c["claim_pct"]).abs() <= tolerance_pct]
        rows.append({"where": c["where"], "arch": c["arch"].upper(), "phase": c["phase"], "claim": f"{init} +{c['claim_pct']}%",
                     "table 2 gives": ", ".join(f"over {b}: {v:+.1f}%" for b, v in zip(cand["over"], cand["gain_pct"])),
                     "consistent": "yes: over " + ", ".join(match["over"]) if len(match) else "no"})
    return pd.DataFrame(rows)


def case_key(experiment: str) -> list[str]:
    """The columns that name one case of an experiment's predictions (:func:`predictions`)."""
    return ["patient_id", "hemisphere"] if Experiment.parse(experiment).phase == "stroke" else ["patient_id"]


def paired(a: pd.DataFrame, b: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """Two runs' test rows side by side on the cases both have (``b``'s columns suffixed ``_b``)."""
    return a.query("split == 'test'").merge(b.query("split == 'test'"), on=case_key(experiment), suffixes=("", "_b"))


def delong_vs(runs_root, experiment: str, baseline: str) -> dict:
    """DeLong's test of two experiments' test AUCs on their shared test cases (first seed of each)."""
    s1, s2 = seeds(runs_root, experiment), seeds(runs_root, baseline)
    if not s1 or not s2:
        return {"p": np.nan}
    both = paired(predictions(runs_root, experiment, s1[0]), predictions(runs_root, baseline, s2[0]), experiment)
    try:
        return stats.delong(both["target"], both["prob"], both["prob_b"])
    except ValueError as e:
        return {"p": np.nan, "why": str(e)}


# the TSS runs whose rankings are compared with their phase 1 detector (random ones are the control)
TSS_DIAGNOSED = [e.name for e in grid(("2d", "3d"), ("tss3", "tss45", "attention"), imagenet=False)
                 if e.init in ("transfer", "random")]


def detector_scores(runs_root, arch: str, seed: int | None = None) -> pd.DataFrame:
    """Each patient's phase 1 score: the ``arch`` stroke detector's probability averaged over the
    patient's stroke hemispheres (how a TSS model scores a patient), with the split."""
    det = experiment_name(arch, "stroke", "random")
    s = seeds(runs_root, det)
    if not s:
        raise FileNotFoundError(f"{det} has no finished run in {runs_root}")
    p = predictions(runs_root, det, s[0] if seed is None else seed)
    p = p[p["label"] == 1]
    return p.groupby(["patient_id", "split"], as_index=False)["prob"].mean()


def inherited_ranking(runs_root, experiments, seed: int = 0) -> pd.DataFrame:
    """Does a TSS model rank patients as its phase 1 stroke detector does? Per experiment and split:
    the model's AUC for its TSS target, the AUC of the detector's own stroke score taken as a TSS
    score, and Spearman's rho between the two scores over the same patients. A rho near 1 says the
    TSS model still outputs the detector's stroke evidence (lesion size and conspicuity), so its AUC
    is whatever that evidence says about TSS in this cohort."""
    from scipy.stats import spearmanr

    rows, detectors = [], {}  # arch -> its detector's patient scores (read once), None when it has not run
    for name in experiments:
        e = Experiment.parse(name)
        if e.arch not in detectors:
            ran = seeds(runs_root, experiment_name(e.arch, "stroke", "random"))
            detectors[e.arch] = detector_scores(runs_root, e.arch) if ran else None
        if seed not in seeds(runs_root, name) or detectors[e.arch] is None:
            continue
        both = predictions(runs_root, name, seed).merge(detectors[e.arch], on=["patient_id", "split"],
                                                        suffixes=("", "_detector"))
        for split in ("val", "test"):
            d = both[both["split"] == split]
            rows.append({"experiment": name, "split": split, "n": len(d), "auc": stats.auc_or_nan(d["target"], d["prob"]),
                         "detector_auc": stats.auc_or_nan(d["target"], d["prob_detector"]),
                         # constant scores have no rank correlation (and scipy would warn)
                         "spearman": float(spearmanr(d["prob"], d["prob_detector"])[0])
                         if len(d) > 2 and d["prob"].nunique() > 1 and d["prob_detector"].nunique() > 1 else np.nan})
    return pd.DataFrame(rows, columns=["experiment", "split", "n", "auc", "detector_auc", "spearman"])


# what a synthetic cohort's latent table holds about each patient's lesion, as the Results page names it
LESION_FEATURES = {"lesion_ml": "lesion volume (mL)", "dwi_ratio": "DWI lesion / mirror ratio",
                   "flair_ratio": "FLAIR lesion / mirror ratio", "oracle_score": "oracle (true FLAIR change)"}


def feature_aucs(latent, manifest: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """AUC for TSS < 4.5 h of each of :data:`LESION_FEATURES` of a synthetic cohort's ``latent.csv``
    taken alone as a score (higher = earlier), on one split; below 0.5: the feature rises with time."""
    lat = pd.read_csv(latent).drop(columns=["split", "onset_to_mri_min"], errors="ignore")
    lat = lat.merge(manifest[["patient_id", "split", "onset_to_mri_min"]], on="patient_id")
    lat = lat[lat["split"] == split]
    y = Task.TSS45.label(lat["onset_to_mri_min"])
    return pd.DataFrame([{"feature": label, "column": c, "n": len(lat), "auc": stats.auc_or_nan(y, lat[c])}
                         for c, label in LESION_FEATURES.items() if c in lat])


# ------------------------------------------------------------------------------------------------
# figures


def plot_auc_by_init(raw: pd.DataFrame, phase: str, ax=None):
    """Figures 6 and 7: test AUC per initialisation and architecture, ours with 95% CIs beside the
    paper's, and ours' gain over random printed on each bar of the transfer."""
    import matplotlib.pyplot as plt

    stage = {v: k for k, v in STAGE_PHASE.items()}[phase]
    d = raw[(raw["stage"] == stage) & raw["model"].isin(["2D", "3D"])]
    pap = paper.table2()
    pap = pap[(pap["stage"] == stage) & pap["model"].isin(["2D", "3D"])]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.6))
    inits = ["Random", "ImageNet", "Medical", next(w for w in pap["weights"] if w.startswith("Phase"))]
    width = 0.2
    for j, model in enumerate(("2D", "3D")):
        for i, w in enumerate(inits):
            x = j * (len(inits) + 1) + i
            pr = pap[(pap["model"] == model) & (pap["weights"] == w)]
            ours = d[(d["model"] == model) & (d["weights"] == w)]
            if len(pr):
                ax.bar(x - width, pr["auc"].iloc[0], 2 * width * 0.9, color="0.75", label="paper" if (i, j) == (0, 0) else None)
            if len(ours) and ours["status"].iloc[0] == "ok":
                o = ours.iloc[0]
                ax.bar(x + width, o["auc"], 2 * width * 0.9, color="C0", label="ours (95% CI)" if (i, j) == (0, 0) else None)
                ax.errorbar(x + width, o["auc"], [[o["auc"] - o["auc_lo"]], [o["auc_hi"] - o["auc"]]], color="k", capsize=3, lw=1)
            elif len(pr):
                ax.text(x + width, 0.52, "not run", rotation=90, fontsize=7, ha="center", va="bottom")
    ticks = [j * (len(inits) + 1) + i for j in range(2) for i in range(len(inits))]
    ax.set_xticks(ticks, [f"{m}\n{w.replace('Phase 1', 'ours').replace('Phase 2', 'ours')}"
                          for m in ("2D", "3D") for w in inits], fontsize=8)
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("test ROC AUC")
    ax.legend(fontsize=8, loc="upper left")
    return ax


# Figure 8's curves: both architectures from scratch (phase 3, random) and with the paper's pretraining
FIGURE8_CURVES = (("2D", "2d-tss45-random", "C0", "--"), ("2D +P", "2d-attention-transfer", "C0", "-"),
                  ("3D", "3d-tss45-random", "C1", "--"), ("3D +P", "3d-attention-transfer", "C1", "-"))


def plot_figure8(runs_root, lee_dir=None, latent=None, manifest: pd.DataFrame | None = None,
                 readers: pd.DataFrame | None = None, ax=None):
    """Figure 8: test ROC curves for TSS < 4.5 h of :data:`FIGURE8_CURVES` (those that ran), the Lee
    et al. baseline on its usable-ROI patients (``lee_dir``), the oracle curve of a synthetic cohort
    (``latent``: its ``latent.csv``, with ``manifest`` for the splits), the readers' operating points
    (``readers``: :func:`reader_metrics`) and the paper's radiologists."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9.5, 5.2))
    for label, exp, color, ls in FIGURE8_CURVES:
        s = seeds(runs_root, exp)
        if s:
            test = predictions(runs_root, exp, s[0]).query("split == 'test'")
            ax.plot(*roc_points(test["target"], test["prob"]), ls, color=color,
                    label=f"{label} (AUC {stats.auc(test['target'], test['prob']):.2f})")
    lee_pred = Path(lee_dir) / "predictions.csv" if lee_dir is not None else None
    if lee_pred is not None and lee_pred.exists():
        lp = pd.read_csv(lee_pred).query("split == 'test' and usable")
        if lp["target"].nunique() == 2:
            ax.plot(*roc_points(lp["target"], lp["prob"]), ":", color="C2",
                    label=f"Lee et al. (usable ROI, AUC {stats.auc(lp['target'], lp['prob']):.2f})")
    if latent is not None and Path(latent).exists() and manifest is not None:
        lat = pd.read_csv(latent).merge(manifest[["patient_id", "split", "onset_to_mri_min"]], on="patient_id",
                                        suffixes=("_latent", ""))
        lat = lat[lat["split"] == "test"]
        y = Task.TSS45.label(lat["onset_to_mri_min"])
        ax.plot(*roc_points(y, lat["oracle_score"]), color="k", lw=1,
                label=f"oracle (AUC {stats.auc(y, lat['oracle_score']):.2f})")
    if readers is not None:
        for (_, r), mk in zip(readers.iterrows(), "os^D"):
            ax.plot(1 - r["specificity"], r["sensitivity"], mk, color="C3", mfc="none", mew=1.6, ms=9,
                    label=f"simulated {r['reader'].lower()}")  # hollow: markers that coincide stay visible
    pr = paper.table2().query("stage == 'DWI-FLAIR mismatch'")
    ax.plot(1 - pr["specificity"], pr["sensitivity"], "x", color="0.5", ms=7, label="paper's radiologists")
    ax.plot([0, 1], [0, 1], ":", color="0.6", lw=0.8)
    ax.set_xlabel("1 - specificity", fontsize=11)
    ax.set_ylabel("sensitivity", fontsize=11)
    ax.set_aspect("equal")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.03, 1.0), frameon=False)  # beside, off the curves
    return ax


def reference_aucs(results_root, profile: str) -> dict[str, float]:
    """The TSS < 4.5 h test AUCs a deep model of ``profile`` is read against, from its committed
    files: the Lee et al. baseline on the test patients it can measure, and (a synthetic cohort
    only) the oracle score of ``cohort/latent.csv``. Absent files are left out."""
    where = project.under(results_root, profile)
    out = {}
    lee = where.lee / "predictions.csv"
    if lee.exists():
        t = pd.read_csv(lee).query("split == 'test' and usable")
        out[f"Lee et al. ({len(t)} usable test patients)"] = stats.auc(t["target"], t["prob"])
    lat, man = where.cohort_tables / "latent.csv", where.cohort_tables / "manifest.csv"
    if lat.exists() and man.exists():
        t = pd.read_csv(lat).merge(pd.read_csv(man)[["patient_id", "split", "onset_to_mri_min"]], on="patient_id",
                                   suffixes=("_latent", "")).query("split == 'test'")
        if "oracle_score" in t and len(t):
            out["oracle"] = stats.auc(Task.TSS45.label(t["onset_to_mri_min"]), t["oracle_score"])
    return out


def roc_points(y, p) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(y).astype(int), p)
    return fpr, tpr
