"""One function per chapter that computes: it reads the profile's files, computes every table and
figure its page shows, writes them under ``results/<profile>/`` and returns them. The page
(a notebook) calls it and displays what it returns; ``python -m tss results`` and the Colab
prerequisites call the same functions. A page cell writes no file.

The chapters: :func:`cohort_chapter` (Data), :func:`preprocessing_chapter`, :func:`models_chapter`,
:func:`lee_chapter` (the Lee et al. baseline), :func:`results_chapter` (Table 2, Figures 6-8, the
gains, the readers), :func:`gradcam_chapter` (the CAMs) and :func:`reproduction_chapter` (the claims).
The Training chapters run :mod:`tss.train`, whose runs write their own files.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from . import audit, gradcam, manifest, paper, preprocess, profiles, project, reproduction, results, stats, synth, tables, viz
from .atomic import write_text
from .baselines import lee
from .models import Attention3DNet, SliceAttentionNet, UNet3D, imagenet, parameter_table, shape_table
from .preprocess import PreprocessCache, pipeline, qc
from .runtree import RunTree
from .synth import calibration
from .task import Task
from .train import Experiment, Hemispheres, clock
from .train.config import grid


@dataclass
class Chapter:
    """What a chapter's stage computed for its page: the profile shown, its tables and figures by
    name, the files written, and the numbers the page states in its text."""

    profile: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, plt.Figure] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    said: dict[str, object] = field(default_factory=dict)


def _manifest(cohort_dir: Path) -> pd.DataFrame | None:
    return manifest.load_cohort(cohort_dir, check=False).table if (cohort_dir / "manifest.csv").exists() else None


def results_tables(results_root, profile: str, cohort_dir: Path | None = None, n_boot: int = 1000
                   ) -> dict[str, pd.DataFrame]:
    """The Results page's tables of ``profile``: Table 2 and its raw rows, the paper's stated gains
    against its own table, our gains with DeLong p, and each TSS model against its phase 1 detector.
    ``cohort_dir``: the cohort's folder (default: its committed tables)."""
    where = project.under(results_root, profile)
    man = _manifest(cohort_dir or results.cohort_tables(results_root, profile))
    t2 = results.table2(where.runs, lee_dir=where.lee, manifest=man, n_boot=n_boot, profile=profile)
    raw = t2.attrs["raw"]
    return {"table2": t2, "table2_raw": raw, "paper_gain_claims": results.paper_gain_claims(),
            "gains": results.gains_table(raw, where.runs),
            "inherited": results.inherited_ranking(where.runs, results.TSS_DIAGNOSED)}


def _write(out: Path, tables: dict[str, pd.DataFrame], figures: dict[str, plt.Figure], dpi: dict[str, int]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, t in tables.items():
        write_text(out / f"{name}.csv", t.to_csv(index=False))
        files.append(out / f"{name}.csv")
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=dpi.get(name, 120), bbox_inches="tight")
        plt.close(fig)  # the page displays it where it belongs, not where the stage ran
        files.append(out / f"{name}.png")
    return files


PIPELINE_BOXES = [("DWI b1000", "b0 (T2w)", "FLAIR"), "N4 bias field\n(SimpleITK)", "reorient\n(RAS, nibabel)",
                  "register b0 -> T2w MNI head\naffine, mutual information", "skull/neck removal\ntemplate-mask propagation",
                  "co-register\nb1000: b0's transform\nFLAIR: own affine MI\nfrom b0's start",
                  "resample to 224x224x26\n+ second brain mask",
                  "histogram matching\nto a reference (torchio)\nscale to [0, 1]",
                  "split hemispheres\nflip right onto left\n2 x 3x26x224x112"]


def _pipeline_figure() -> plt.Figure:
    """Figure 2: the preprocessing steps in the paper's order, as a snake of boxes (5, then 4)."""
    fig, ax = plt.subplots(figsize=(12, 4.2))
    ax.set_xlim(0, 5)
    ax.set_ylim(0, 2)
    ax.axis("off")
    pos = [(i + 0.5, 1.5) for i in range(5)] + [(i + 0.5, 0.5) for i in range(3, -1, -1)]
    for i, (b, (x, y)) in enumerate(zip(PIPELINE_BOXES, pos)):
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
    return fig


def _registered_figure(cases, landmarks, slices=(10, 14)) -> plt.Figure:
    """Figure 3: registered DWI, FLAIR and b0 of each (name, patient) at two slices (the labels stay
    readable at the text column's width), lesion outlined."""
    ns = len(slices)
    fig, axes = plt.subplots(3, ns * len(cases), figsize=(2.6 * ns * len(cases), 8.4))
    axes = np.atleast_2d(axes)
    for c, (name, p) in enumerate(cases):
        v = pipeline.normalise(p["volume"].astype(np.float32), p["brain"], landmarks)
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
    return fig


def _hemispheres_figure(hemis, index) -> plt.Figure:
    """Both hemisphere tensors of the first stroke patient, DWI at slice 13, as a model sees them."""
    row = index[index["label"] == 1].iloc[0]
    pid = row["patient_id"]
    pair = index[index["patient_id"] == pid]
    fig, axes = plt.subplots(1, 2, figsize=(6, 5))
    for ax, (_, r) in zip(axes, pair.iterrows()):
        h = np.asarray(hemis[r["row"]], dtype=np.float32)  # (3, 26, 224, 112)
        ax.imshow(h[0, 13][::-1], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{pid} {r['hemisphere']}: label {r['label']}\n({r['label_source']})", fontsize=11)
        ax.set_xlabel("lateral -> midline", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


LATENT_COLS = ["patient_id", "territory", "lesion_ml", "dwi_ratio", "b0_ratio", "flair_ratio", "latent_t2_increase",
               "oracle_score"]


def _mismatch_case(frame: pd.DataFrame, early: bool) -> pd.Series:
    """Figure 1's patient: the early one (TSS < 3 h) with the faintest FLAIR, or the late one (6-24 h)
    with the brightest, among lesions over 5 mL on one side."""
    t = frame["onset_to_mri_min"]
    window = frame[(Task.TSS3.label(t) == 1) if early else ((t > 360) & (t < 1440))]
    if window.empty:
        raise ValueError(f"Figure 1 needs a patient scanned {'under 3 h' if early else 'at 6-24 h'} after onset: "
                         f"this cohort's {len(frame)} patients have none")
    cand = window[(window["lesion_ml"] > 5) & (window["stroke_side"] != "both")]
    cand = window if cand.empty else cand  # a small cohort may have no large one-sided lesion in the window
    key = -cand["flair_ratio"] if early else cand["flair_ratio"]
    return cand.loc[key.sort_values(ascending=False).index[0]]


def _mismatch_figure(images: pd.DataFrame) -> plt.Figure:
    """Figure 1: an early (mismatch) and a late (no mismatch) patient at their largest lesion slice."""
    cases = {"early": _mismatch_case(images, True), "late": _mismatch_case(images, False)}
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.4))
    for row_axes, (label, case) in zip(axes, cases.items()):
        panel = viz.lesion_slice_panel({k: case[k] for k in ("b1000", "b0", "flair", "lesion_mask")})
        viz.draw_panel(row_axes, panel, f"{label}: TSS {case['onset_to_mri_min'] / 60:.1f} h\n"
                       f"FLAIR ratio {case['flair_ratio']:.2f}, DWI ratio {case['dwi_ratio']:.2f}")
    fig.suptitle("Synthetic DWI-FLAIR mismatch (top) and no mismatch (bottom)", fontsize=10)
    fig.tight_layout()
    return fig


def _ratios_figure(df: pd.DataFrame) -> plt.Figure:
    """Lesion/healthy signal of DWI, b0 and FLAIR against TSS, one dot per patient, binned medians."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharex=True)
    bins = np.geomspace(df["onset_to_mri_min"].min(), df["onset_to_mri_min"].max() * 1.001, 12)
    tss_bin = pd.cut(df["onset_to_mri_min"], bins)
    for ax, (col, label) in zip(axes, [("dwi_ratio", "DWI b1000"), ("b0_ratio", "b0 (T2w)"), ("flair_ratio", "FLAIR")]):
        sc = ax.scatter(df["onset_to_mri_min"] / 60, df[col], c=np.log10(df["lesion_ml"]), cmap="viridis",
                        s=14, alpha=0.8, vmin=-0.5, vmax=2.2)
        med = df[col].groupby(tss_bin, observed=True).median()
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
    return fig


def _oracle_figure(df: pd.DataFrame, oracle_all: float, paper_rows: pd.DataFrame) -> plt.Figure:
    """ROC of the oracle score for TSS < 4.5 h, with our readers' and the paper's radiologists' points."""
    from sklearn.metrics import roc_curve

    readers = results.READERS
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    fpr, tpr, _ = roc_curve(df["tss_lt_4_5h"], df["oracle_score"])
    ax.plot(fpr, tpr, color="k", label=f"oracle, all patients (AUC {oracle_all:.2f})")
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
    return fig


def _native_ratios(P, shown: str, profile: str, cohort_dir: Path, ids, audit_dir: Path
                   ) -> tuple[pd.DataFrame | None, str | None]:
    """The lesion/contralateral ratios measured from the images (:func:`tss.audit.native`) of the
    cohort the page shows: measured here, cached in ``audit_dir``, when it is this
    build's cohort; else the shown profile's committed ``audit/native.csv``. ``(None, why)`` when
    neither can be had, or when the file holds other patients than the cohort's."""
    if shown == profile:
        try:
            f = audit.native(cohort_dir, audit_dir, progress=False)
        except ValueError as e:  # a cohort without the generator's truth: no pose to find the mirror with
            return None, str(e)
    else:
        f = P.results_root / shown / "audit" / "native.csv"
        if not f.exists():
            return None, f"the {shown} profile has no committed native ratios ({f.relative_to(P.results_root.parent)})"
    nat = pd.read_csv(f)
    if set(nat["patient_id"]) != set(ids):
        return None, f"{f.name} holds other patients than the {shown} cohort: rerun `python -m tss audit --profile {shown}`"
    return nat, None


def cohort_chapter(profile: str, n: int | None = None, seed: int = 0, jobs: int = -1, cohort_dir=None,
                   results_dir=None, n_boot: int = 2000, audit_dir=None) -> Chapter:
    """The Data page (``01_cohort``): the synthetic cohort generated (cached per patient) in
    ``cohort_dir`` and validated, its small tables recorded (``manifest.csv``, ``latent.csv``), Table 1
    (``table1.csv``), Figure 1 (``figure1_mismatch.png``, from this build's images), the signal ratios
    (``signal_ratio_vs_tss.png``), the simulated readers on the test split (``readers_test.csv``) and
    on all patients with Fleiss' kappa, the oracle (``oracle_roc.png``), the cohort against patients
    (``calibration.csv``, :mod:`tss.synth.calibration`; the native ratios it needs are cached in
    ``audit_dir``, default ``results/<profile>/audit``) and ``cohort_summary.json``.

    The tables and the ratio and oracle figures show the cohort that the Results chapter shows (the
    largest profile with committed runs, from its committed tables); ``said["shown"]`` names it."""
    profiles.check(profile)
    n = n or profiles.COHORT[profile].n_patients
    P = project.paths(profile)
    cohort_dir = Path(cohort_dir or P.cohort)
    results_dir = Path(results_dir or P.stage("cohort"))
    results_dir.mkdir(parents=True, exist_ok=True)

    gen = synth.generate(cohort_dir, n=n, seed=seed, jobs=jobs)
    meta = json.loads((cohort_dir / "generator.json").read_text())
    findings = manifest.validate(cohort_dir)  # reads every file fully: catches truncated images
    if any(f.fatal for f in findings):
        raise manifest.ManifestError(findings)
    cohort = manifest.load_cohort(cohort_dir, check=False)
    latent = synth.load_latent(cohort_dir)
    files = results.record_cohort(cohort_dir, results_dir)  # its small tables travel with the results (committed)
    images = cohort.table.merge(latent[LATENT_COLS], on="patient_id")  # this build's cohort: its images exist here

    shown = results.profile_of(P.results_root) or profile
    committed = P.results_root / shown / "cohort"
    if shown != profile and (committed / "manifest.csv").exists() and (committed / "latent.csv").exists():
        shown_table = manifest.load_cohort(committed, check=False).table
        df = shown_table.merge(pd.read_csv(committed / "latent.csv")[LATENT_COLS], on="patient_id")
    else:
        shown, shown_table, df = profile, cohort.table, images.copy()
    for frame in (images, df):
        frame["tss_lt_4_5h"] = Task.TSS45.label(frame["onset_to_mri_min"])
    T: dict[str, pd.DataFrame] = {}
    T["splits"] = df.groupby("split").agg(patients=("patient_id", "size"), tss_lt_4_5h=("tss_lt_4_5h", "mean"),
                                          median_lesion_ml=("lesion_ml", "median"))

    T["table1"] = t1 = tables.table1(shown_table)
    write_text(results_dir / "table1.csv", t1.to_csv())
    ours = tables.medians(shown_table)
    check = pd.DataFrame({"ours (all)": ours, "paper (all)": paper.TABLE1_MEDIANS})
    check["relative difference"] = check["ours (all)"] / check["paper (all)"] - 1
    T["medians"] = check

    figures = {"figure1_mismatch": _mismatch_figure(images)}
    figures["figure1_mismatch"].savefig(results_dir / "figure1_mismatch.png", dpi=120)
    figures["signal_ratio_vs_tss"] = _ratios_figure(df)
    figures["signal_ratio_vs_tss"].savefig(results_dir / "signal_ratio_vs_tss.png", dpi=120, bbox_inches="tight")

    readers = results.READERS
    paper_rows = paper.table2()
    paper_rows = paper_rows[paper_rows["stage"] == "DWI-FLAIR mismatch"].reset_index(drop=True)
    test = df[df["split"] == "test"]
    side = results.reader_report(test["tss_lt_4_5h"], test[readers], n_boot=n_boot, seed=seed)
    for m in ("sensitivity", "specificity", "accuracy"):
        side[f"paper {m}"] = paper_rows[m].map("{:.2f}".format).to_numpy()
    side.insert(1, "n (ours)", len(test))
    write_text(results_dir / "readers_test.csv", side.to_csv(index=False))
    T["readers_test"] = side
    T["readers_all"] = results.reader_report(df["tss_lt_4_5h"], df[readers], n_boot=n_boot, seed=seed)
    kappa = {name: stats.fleiss_kappa(frame[readers].to_numpy()) for name, frame in (("test", test), ("all", df))}
    kappa_ci = {name: stats.bootstrap_ci(stats.fleiss_kappa, frame[readers].to_numpy(), n_boot=n_boot,
                                         seed=seed) for name, frame in (("test", test), ("all", df))}
    T["kappa"] = pd.DataFrame({
        "Fleiss' kappa (ours)": [stats.with_ci(kappa[k], kappa_ci[k]) for k in ("test", "all")],
        "paper": [f"{paper.FLEISS_KAPPA:.2f} (test, n={paper.N_TEST})", ""],
    }, index=["test split", "all patients"])

    oracle = {}
    for name, frame in (("test", test), ("all", df)):
        y, s = frame["tss_lt_4_5h"], frame["oracle_score"]
        oracle[name] = (stats.auc(y, s), stats.bootstrap_ci(stats.auc, y, s, n_boot=n_boot, seed=seed, stratify=y))
    pop = meta["population_oracle_auc_tss_lt_4_5h"]
    T["oracle"] = pd.DataFrame(
        {"oracle AUC, TSS < 4.5 h": [stats.with_ci(*oracle["test"], 3), stats.with_ci(*oracle["all"], 3), f"{pop:.3f}"]},
        index=[f"test split (n={len(test)})", f"all patients (n={len(df)})", "generator population (Monte Carlo)"])
    figures["oracle_roc"] = _oracle_figure(df, oracle["all"][0], paper_rows)
    figures["oracle_roc"].savefig(results_dir / "oracle_roc.png", dpi=120, bbox_inches="tight")

    native, no_native = _native_ratios(P, shown, profile, cohort_dir, df["patient_id"], Path(audit_dir or P.audit))
    calibrated = calibration.measure(native, df) if native is not None else None
    if calibrated is not None:
        T["calibration"] = calibration.table(calibrated)
        write_text(results_dir / "calibration.csv", T["calibration"].to_csv(index=False))
        files.append(results_dir / "calibration.csv")
    variant = meta.get("variant", profiles.DEFAULT_VARIANT) if shown == profile else profiles.DEFAULT_VARIANT
    by_variant = calibration_by_variant(P.results_root, shown, T.get("calibration"), variant)
    if by_variant is not None:
        T["calibration_variants"] = by_variant
        T["variant_changes"] = variant_changes([c for c in by_variant.columns[2:] if c != variant])

    params = pd.DataFrame(meta["parameters"])[["group", "name", "value", "unit", "source"]]  # its variant's, as generated
    params["value"] = params["value"].map(_param_value)
    T["params"] = params
    summary = {
        "profile": shown, "n": len(df), "built_by": profile, "seed": seed,
        "generation_seconds": meta["seconds"], "generated": meta["n_generated"], "jobs": meta["jobs"],
        "oracle_auc_test": oracle["test"][0], "oracle_auc_test_ci": oracle["test"][1],
        "oracle_auc_all": oracle["all"][0], "oracle_auc_all_ci": oracle["all"][1],
        "oracle_auc_population": pop,
        "fleiss_kappa_test": kappa["test"], "fleiss_kappa_all": kappa["all"],
        "table1_medians_all": ours,
        "calibration": calibrated,
    }
    write_text(results_dir / "cohort_summary.json", json.dumps(summary, indent=1))
    for fig in figures.values():
        plt.close(fig)  # the page displays each where it belongs
    files += [results_dir / f for f in ("table1.csv", "figure1_mismatch.png", "signal_ratio_vs_tss.png",
                                        "readers_test.csv", "oracle_roc.png", "cohort_summary.json")]
    said = {"generation": gen, "findings": manifest.format_findings(findings), "shown": shown, "n_shown": len(df),
            "n_images": len(images), "n_test": len(test), "n_test_early": int(test["tss_lt_4_5h"].sum()),
            "dwi_not_bright": int((df["dwi_ratio"] <= 1).sum()),
            "flair_tss_rho": df[["flair_ratio", "onset_to_mri_min"]].corr("spearman").iloc[0, 1],
            "calibration": calibrated, "no_calibration": no_native,
            "calibration_met": None if calibrated is None else int((T["calibration"]["met"] == "yes").sum()),
            "variant": variant, "variant_lee": _variant_lee(P.results_root, shown),
            "summary": summary}
    return Chapter(shown, T, figures, files, said)


def _param_value(v) -> str:
    """A generator parameter as the Data page prints it: 222, not 222.000000; tuples as JSON."""
    return json.dumps(v) if isinstance(v, (tuple, list)) else f"{v:g}" if isinstance(v, float) else str(v)


def calibrate_variant(profile: str, variant: str, n: int | None = None, seed: int = 0, jobs: int = -1,
                      progress: bool = True, with_lee: bool = False) -> dict:
    """A named cohort variant (:data:`tss.synth.params.VARIANTS`) against patients: its cohort generated
    (cached per patient) in ``data/synthetic-<profile>-<variant>``, its small tables recorded, its
    lesion/contralateral ratios measured from its images (:func:`tss.audit.native`, cached) and set
    against the targets (:func:`tss.synth.calibration.measure`), all in ``results/<profile>/variants/<variant>/``
    (``manifest.csv``, ``latent.csv``, ``native.csv``, ``calibration.csv``, ``calibration.json``).
    The Data page shows it beside the page's own cohort. ``with_lee``: also preprocess it (cached in
    ``variants/<variant>/cache``, not committed) and run the Lee et al. baseline on it
    (``variants/<variant>/baselines/lee``), whose test AUC the summary then holds.
    Returns the table, the measures and the files."""
    profiles.check(profile)
    P = project.paths(profile)
    cohort_dir, out = P.variant_cohort(variant), P.variant(variant)
    gen = synth.generate(cohort_dir, n=n or profiles.COHORT[profile].n_patients, seed=seed, jobs=jobs,
                         progress=progress, variant=variant)
    files = results.record_cohort(cohort_dir, out)
    nat = audit.native(cohort_dir, out, progress=progress)
    measured = calibration.measure(pd.read_csv(nat), synth.load_latent(cohort_dir))
    t = calibration.table(measured)
    write_text(out / "calibration.csv", t.to_csv(index=False))
    summary = {"profile": profile, "variant": variant, "n": gen.n_patients, "seed": seed,
               "met": int((t["met"] == "yes").sum()), "targets": len(t), "measured": measured,
               "parameters": {k: p.value for k, p in synth.params.overrides(variant).items()}}
    files += [nat, out / "calibration.csv", out / "calibration.json"]
    if with_lee:
        cache, lee_dir = out / "cache" / "preprocess", out / "baselines" / "lee"
        run = preprocess.preprocess_cohort(cohort_dir, cache, jobs=jobs, progress=progress)
        if run.failures:
            raise RuntimeError(f"preprocessing the {variant!r} cohort failed for {len(run.failures)} patients: "
                               f"see {cache / 'failures.csv'}")
        preprocess.assemble(cache, cohort_dir, progress=progress)
        ls = lee.run(cache, cohort_dir, lee_dir, seed=seed, jobs=jobs, progress=progress)
        m = results.lee_metrics(lee_dir, n_boot=1000)
        summary["lee"] = {"model": ls.get("chosen_model"), "val_auc": ls.get("val_auc"), "test_auc": ls.get("test_auc"),
                          "test_auc_ci": [m.get("auc_lo"), m.get("auc_hi")], "n_usable": ls.get("n_usable"),
                          "n_patients": ls.get("n_patients")}
        files += [lee_dir / f for f in ("predictions.csv", "models.csv", "summary.json")]
    write_text(out / "calibration.json", json.dumps(summary, indent=1, default=list))
    return {"table": t, "measured": measured, "summary": summary,
            "files": files}


def _variant_lee(results_root, profile: str) -> dict[str, str]:
    """Each measured variant's Lee et al. test AUC (with its 95% CI and usable test patients), from its
    ``calibration.json``, where ``python -m tss calibrate --lee`` ran it."""
    out = {}
    for f in sorted(project.under(results_root, profile).results.glob("variants/*/calibration.json")):
        lee_s = json.loads(f.read_text()).get("lee")
        if lee_s:
            out[f.parent.name] = (f"{stats.with_ci(lee_s['test_auc'], tuple(lee_s['test_auc_ci']))} "
                                  f"({lee_s['n_usable']['test']} of {lee_s['n_patients']['test']} test patients)")
    return out


def variant_changes(variants) -> pd.DataFrame:
    """What each of ``variants`` changes from the generator's parameters: one row per parameter
    (variant, parameter, the first cohort's value, the variant's, and the variant's source)."""
    rows = [{"variant": v, "parameter": k, "first cohort": _param_value(synth.PARAMS[k].value),
             "variant's value": _param_value(p.value),
             "source": p.source} for v in variants for k, p in synth.params.overrides(v).items()]
    return pd.DataFrame(rows, columns=["variant", "parameter", "first cohort", "variant's value", "source"])


def calibration_by_variant(results_root, profile: str, own: pd.DataFrame | None, own_variant: str) -> pd.DataFrame | None:
    """The calibration targets with one column per cohort variant of ``profile`` measured so far: the
    page's own cohort (``own``, :func:`tss.synth.calibration.table`, named ``own_variant``) and each
    ``results/<profile>/variants/<variant>/calibration.csv``. None when there is no other variant."""
    others = sorted(project.under(results_root, profile).results.glob("variants/*/calibration.csv"))
    others = [f for f in others if f.parent.name != own_variant]
    if not others:
        return None
    cols = {} if own is None else {own_variant: own}
    cols |= {f.parent.name: pd.read_csv(f, dtype=str, keep_default_na=False) for f in others}
    first = next(iter(cols.values()))
    wide = first[["target", "target range"]].copy()
    for name, t in cols.items():
        if list(t["target"]) != list(wide["target"]):
            raise ValueError(f"the {name!r} calibration table lists other targets than {list(cols)[0]!r}'s: "
                             f"rerun `python -m tss calibrate --profile {profile} --variant {name}`")
        wide[name] = [v if m == "yes" else f"{v} ({m})" for v, m in zip(t["ours"], t["met"])]
    return wide


def preprocessing_chapter(profile: str, cohort_dir=None, cache_dir=None, results_dir=None, isles_manifest=None,
                          n_qc: int | None = None, jobs: int = -1) -> Chapter:
    """The Preprocessing page (``02_preprocessing``): the pipeline run over the profile's cohort
    (cached per patient), the hemisphere tensors assembled, the quality control of ``n_qc`` synthetic
    patients against their known truth (``qc.csv``, all when None), the real ISLES'22 case where it is
    beside the repository, Figures 2 and 3 (``figure2_pipeline.png``, ``figure3_registered.png``), the
    hemisphere figure, and ``preprocess_summary.json``."""
    P = project.paths(profile)
    cohort_dir = Path(cohort_dir or P.cohort)
    cache_dir = Path(cache_dir or P.cache)
    results_dir = Path(results_dir or P.stage("preprocess"))
    results_dir.mkdir(parents=True, exist_ok=True)
    figures = {"figure2_pipeline": _pipeline_figure()}
    figures["figure2_pipeline"].savefig(results_dir / "figure2_pipeline.png", dpi=130, bbox_inches="tight")
    files = [results_dir / "figure2_pipeline.png"]

    run = preprocess.preprocess_cohort(cohort_dir, cache_dir, jobs=jobs)
    preprocess.assemble(cache_dir, cohort_dir)
    hemis, index = preprocess.load_hemispheres(cache_dir)
    seconds = pd.Series([o.seconds for o in run.outcomes if o.ok])
    said: dict[str, object] = {"run": run.summary(), "hemis_shape": tuple(hemis.shape), "hemis_dtype": hemis.dtype,
                               "hemis_gib": hemis.nbytes / 2**30, "stroke": int(index["label"].sum()),
                               "hemispheres": len(index), "paper_gib": hemis.nbytes / len(hemis) * 844 / 2**30,
                               "seconds": seconds}

    ok_ids = [o.patient_id for o in run.outcomes if o.ok]
    synthetic = (cohort_dir / "generator.json").exists()  # a real cohort has no known truth to measure against
    ids = (ok_ids if n_qc is None else ok_ids[:n_qc]) if synthetic else []
    qct = qc.qc_table(cohort_dir, cache_dir, ids) if ids else pd.DataFrame()
    if ids:
        write_text(results_dir / "qc.csv", qct.to_csv(index=False))
        files.append(results_dir / "qc.csv")
    said["qc_patients"] = len(ids)

    isles_csv = Path(isles_manifest or P.manifests / "isles22-sample.csv")
    isles_ok = isles_csv.exists() and all(p is None or Path(p).exists() for p in
                                          manifest.load_cohort(isles_csv, check=False).table[["b1000", "flair"]].iloc[0])
    said["isles_ok"] = isles_ok
    cases = [(("synthetic " if synthetic else "") + ok_ids[0], preprocess.load_patient(cache_dir, ok_ids[0]))]
    if isles_ok:
        isles_run = preprocess.preprocess_cohort(isles_csv, cache_dir.parent / "preprocess-isles", jobs=1, progress=False,
                                                 data_roots=[isles_csv.parent / "../../shared/data/isles22-sample"])
        isles = preprocess.load_patient(cache_dir.parent / "preprocess-isles", "sub-strokecase0009")
        said["isles_run"] = isles_run.summary()
        said["isles_meta"] = {k: isles["meta"][k] for k in ("b0_source", "label_left", "label_right", "label_source",
                                                              "template_correlation")}
        cases.append(("ISLES'22 (real)", isles))
    landmarks = {k: np.array(v) for k, v in preprocess.PreprocessCache(cache_dir).cohort_meta()["landmarks"].items()}
    figures["figure3_registered"] = _registered_figure(cases, landmarks)
    figures["figure3_registered"].savefig(results_dir / "figure3_registered.png", dpi=110)
    files.append(results_dir / "figure3_registered.png")
    figures["hemispheres"] = _hemispheres_figure(hemis, index)
    for fig in figures.values():
        plt.close(fig)

    summary = {
        "profile": profile, "patients": len(run.outcomes), "failed": len(run.failures),
        "seconds_per_patient_median": float(seconds.median()),
        "qc_patients": len(ids),
        **{k: float(qct[col].mean()) if ids else None for k, col in (
            ("dwi_error_mean_mm", "dwi_error_mean_mm"), ("flair_error_mean_mm", "flair_error_mean_mm"),
            ("affine_floor_mean_mm", "affine_floor_mm"), ("brain_dice_mean", "brain_dice"))},
        "hemispheres_shape": list(hemis.shape),
    }
    write_text(results_dir / "preprocess_summary.json", json.dumps(summary, indent=1))
    files.append(results_dir / "preprocess_summary.json")
    said["summary"] = summary
    qc_tables = {"qc": qct, "qc_summary": qc.summarise(qct)} if ids else {}
    return Chapter(profile, qc_tables, figures, files, said)


def models_chapter(profile: str, seed: int = 0, cache_dir=None, results_dir=None, bench_dir=None) -> Chapter:
    """The Models page (``03_models``): the parameter counts of both models and the U-Net
    (``parameters.csv``), the input and feature-map shapes of every profile (``shapes.csv``), the
    attention maps of a random input at the paper's size, Models Genesis's distortions on a lesion
    (``genesis_transforms.png``, where the processed cohort is here), whether ImageNet weights are
    here, the training-step benchmarks ``make bench`` wrote, and ``models_summary.json``."""
    P = project.paths(profile)
    cache_dir = Path(cache_dir or P.cache)
    results_dir = Path(results_dir or P.stage("models"))
    bench_dir = Path(bench_dir or P.bench)
    results_dir.mkdir(parents=True, exist_ok=True)
    full = profiles.MODEL["full"].input_shape("2d")
    torch.manual_seed(seed)
    nets = {"2D slice-wise attention": SliceAttentionNet(n_slices=full[0]), "3D attention": Attention3DNet()}
    params = parameter_table(nets, UNet3D())
    write_text(results_dir / "parameters.csv", params.to_csv(index=False))
    shapes = shape_table(("full", "lowres", "quick"))
    write_text(results_dir / "shapes.csv", shapes.to_csv())
    files = [results_dir / "parameters.csv", results_dir / "shapes.csv"]
    totals = params.groupby("model", sort=False)["parameters"].sum()

    torch.manual_seed(seed)
    x = torch.rand(1, 3, *full)
    with torch.no_grad():
        _, d2 = SliceAttentionNet(n_slices=full[0]).eval()(x, details=True)
        _, d3 = Attention3DNet().eval()(x, details=True)
    gates = (("2D", "layer3 (256 ch) gated by layer4", d2["attention"].shape[1:], d2["attention"],
              "256 ch, 28 x 14 (see above)"),
             ("3D", "down2 (128 ch) gated by down4", d3["attention1"].shape[2:], d3["attention1"], "128 ch"),
             ("3D", "down3 (256 ch) gated by down4", d3["attention2"].shape[2:], d3["attention2"], "256 ch"))
    att = pd.DataFrame([{"model": m, "gate": g, "map shape": " x ".join(map(str, shape)), "min": a.min().item(),
                         "max": a.max().item(), "paper (Fig. 4)": ref} for m, g, shape, a, ref in gates])
    said: dict[str, object] = {"totals": totals, "final_map": d2["final_map"], "cache_dir": cache_dir,
                               "bench_dir": bench_dir}
    figures = {}
    if PreprocessCache(cache_dir).assembled():
        c = viz.lesion_cube(cache_dir, profiles.MODEL["full"].genesis_cube)
        fig = viz.genesis_figure(c["cube"], c["k"], seed)
        fig.suptitle(f"Models Genesis distortions on {c['description']}", fontsize=9)
        fig.tight_layout()
        fig.savefig(results_dir / "genesis_transforms.png", dpi=120)
        plt.close(fig)
        figures["genesis_transforms"] = fig
        files.append(results_dir / "genesis_transforms.png")
    try:
        path = imagenet.find_weights()
        report = imagenet.load_imagenet(SliceAttentionNet(n_slices=full[0]), path)
        said["imagenet"] = f"ImageNet weights found ({path.name}): {report}"
    except imagenet.WeightsUnavailable as e:
        said["imagenet"] = str(e)
    tables = {"parameters": params, "shapes": shapes, "attention": att}
    rows = [r for f in sorted(bench_dir.glob("models-*.json")) for r in json.loads(f.read_text())]
    if rows:
        b = pd.DataFrame(rows)
        b["H100 hemis/s"] = b["arch"].map(lambda a: paper.H100_CEILING_BF16_BATCH8[a]["hemis_per_s"])
        b["H100 GiB"] = b["arch"].map(lambda a: paper.H100_CEILING_BF16_BATCH8[a]["peak_gib"])
        b["paper GB"] = b["arch"].map(paper.GPU_MEMORY_GB_BATCH8)
        tables["bench"] = b[["arch", "device", "precision", "batch", "threads", "seconds_per_step", "hemis_per_s",
                             "peak_gib", "H100 hemis/s", "H100 GiB", "paper GB"]].rename(
            columns={"seconds_per_step": "s/step", "hemis_per_s": "hemis/s", "peak_gib": "GiB"})
    summary = {"profile": profile,
               "inputs": {p: {a: profiles.MODEL[p].input_shape(a) for a in ("2d", "3d")} for p in ("full", "quick")},
               "parameters": {k: int(v) for k, v in totals.items()},
               "imagenet_weights": imagenet.available()}
    write_text(results_dir / "models_summary.json", json.dumps(summary, indent=1))
    files.append(results_dir / "models_summary.json")
    said["summary"] = summary
    return Chapter(profile, tables, figures, files, said)


def gradcam_summary(out_dir) -> pd.DataFrame | None:
    """:func:`tss.gradcam.summary` of the Grad-CAM page's overlap table (``gradcam_overlap.csv`` in
    ``out_dir``, committed with a profile's results), written as ``gradcam_summary.csv``, which the
    claims read; None (and nothing written) where no overlap table is."""
    overlap = Path(out_dir) / "gradcam_overlap.csv"
    if not overlap.exists():
        return None
    out = gradcam.summary(pd.read_csv(overlap))  # pandas 3 parses floats round-trip by default: the table as written
    write_text(Path(out_dir) / "gradcam_summary.csv", out.to_csv())
    return out


def lee_subset(lee_dir, runs_dir, n_boot: int = 1000) -> tuple[pd.DataFrame, str | None]:
    """The Lee et al. baseline's test AUC on its usable-ROI patients beside the paper's phase 4 models
    and our best deep TSS < 4.5 h model (chosen on validation), each on that subset and on every test
    patient, with the paper's numbers where it gives them: (table, the best model's name or None)."""
    pred = pd.read_csv(Path(lee_dir) / "predictions.csv")
    usable = set(pred.loc[pred["usable"].astype(bool), "patient_id"])
    rows = []
    lm = results.lee_metrics(lee_dir, n_boot=n_boot)
    rows.append({"model": "Lee et al. 2020 (ours)", "test patients": "usable ROI", "n": lm.get("n"),
                 "AUC (95% CI)": stats.with_ci(lm.get("auc", np.nan), (lm.get("auc_lo", np.nan), lm.get("auc_hi", np.nan)))})
    # our best deep TSS < 4.5 h model, chosen on validation (not on the test patients below)
    ran = [e.name for e in grid(("2d", "3d"), ("tss45", "attention")) if results.seeds(runs_dir, e.name)]
    best = max(ran, key=lambda e: reproduction.learned(runs_dir, e, results.seeds(runs_dir, e)[0])["val_auc"]) if ran else None
    for exp in dict.fromkeys(["2d-attention-transfer", "3d-attention-transfer"] + ([best] if best else [])):
        s = results.seeds(runs_dir, exp)
        if not s:
            rows.append({"model": exp, "test patients": "not run"})
            continue
        p = results.predictions(runs_dir, exp, s[0])
        for label, sub in (("usable ROI", p[p["patient_id"].isin(usable)]), ("all", p)):
            m = results.evaluate(sub, n_boot=n_boot)
            rows.append({"model": exp, "test patients": label, "n": m["n"],
                         "AUC (95% CI)": stats.with_ci(m["auc"], (m["auc_lo"], m["auc_hi"]))})
    t = pd.DataFrame(rows)
    t["paper"] = t["model"].map({"Lee et al. 2020 (ours)": "0.72 (ML, its subset)"}).fillna("")
    t.loc[(t["model"] == "2d-attention-transfer") & (t["test patients"] == "usable ROI"), "paper"] = "0.76 (2D, subset)"
    t.loc[(t["model"] == "2d-attention-transfer") & (t["test patients"] == "all"), "paper"] = "0.74 (2D, all)"
    return t, best


def lee_chapter(results_root, profile: str, cohort_dir=None, cache_dir=None, n_boot: int = 1000,
                jobs: int = -1) -> Chapter:
    """The Lee et al. baseline's page (``07_baseline_lee``) of the profile the Results chapter shows:
    the baseline computed where the processed cohort is here (cached by its key) or read back from its
    committed files; its settings, classifiers and usable-ROI share, and :func:`lee_subset`
    (``lee_subset.csv``). ``said["unavailable"]``: why there is no baseline, when there is none."""
    page = results.shown_profile(results_root, profile, cohort_dir, cache_dir)
    lee_dir = project.under(results_root, page.shown).lee
    said: dict[str, object] = {"lee_dir": lee_dir, "runs_dir": page.runs_dir, "cohort_dir": page.cohort_dir,
                               "computed": PreprocessCache(page.cache_dir).assembled()}
    if said["computed"]:  # the processed cohort is here: compute, or read back by its key
        summary = lee.run(page.cache_dir, page.cohort_dir, lee_dir, seed=0, jobs=jobs)
    else:
        try:
            summary = lee.stored(lee_dir)
        except FileNotFoundError as e:
            said["unavailable"] = str(e)
            return Chapter(page.shown, said=said)
    said["summary"] = summary
    tables = {"settings": lee.settings_table(summary), "models": pd.read_csv(lee_dir / "models.csv")}
    pred = pd.read_csv(lee_dir / "predictions.csv")
    keep = pred.groupby("split")["usable"].agg(["sum", "size"]).rename(columns={"sum": "usable", "size": "patients"})
    keep["share"] = (keep["usable"] / keep["patients"]).map("{:.0%}".format)
    keep.loc["paper (all)"] = [221, 422, f"{221 / 422:.0%}"]
    tables["usable"] = keep
    tables["lee_subset"], said["best"] = lee_subset(lee_dir, page.runs_dir, n_boot)
    if said["best"]:
        b = said["best"]
        said["best_val_auc"] = reproduction.learned(page.runs_dir, b, results.seeds(page.runs_dir, b)[0])["val_auc"]
    files = _write(page.out_dir, {"lee_subset": tables["lee_subset"]}, {}, {})
    return Chapter(page.shown, tables, {}, files, said)


CAM_EXPERIMENTS = ("2d-tss45-random", "2d-attention-transfer", "3d-tss45-random", "3d-attention-transfer")


def gradcam_chapter(results_root, profile: str, cohort_dir=None, cache_dir=None, device: str = "cpu") -> Chapter:
    """The Grad-CAM page (``09_gradcam``) of the profile the Results chapter shows. Where the
    checkpoints of :data:`CAM_EXPERIMENTS` and the processed cohort are here, it measures the CAMs of
    every test stroke hemisphere (``gradcam_overlap.csv``, merged with the rows stored for the models
    not here), draws Figure 9's example (``figure9_cams.npz``, ``figure9_gradcam.png``) and scores the
    real ISLES'22 case with the phase 1 detectors too (``gradcam_isles.csv``, its CAMs); elsewhere it
    reads the committed files back. Tables: ``overlap``, ``summary`` (:func:`gradcam_summary`),
    ``isles``; figures: ``figure9_gradcam``, ``isles``."""
    page = results.shown_profile(results_root, profile, cohort_dir, cache_dir)
    out, cache = page.out_dir, page.cache_dir
    tree = RunTree(page.runs_dir)
    model_profile = profiles.MODEL[page.shown]
    exps = list(CAM_EXPERIMENTS)
    # computed for the experiments whose checkpoints and processed images are here; the stored results of
    # the others (trained in an earlier session, or a clone without checkpoints) are read back and kept
    have = [e for e in exps if tree.checkpoint(e) is not None]
    compute = bool(have) and PreprocessCache(cache).assembled()
    files = {k: out / f for k, f in (("overlap", "gradcam_overlap.csv"), ("figure9", "figure9_cams.npz"),
                                     ("isles", "gradcam_isles.csv"), ("isles_cams", "gradcam_isles_cams.npz"))}
    said: dict[str, object] = {"computed": compute, "runs_dir": page.runs_dir,
                               "stored": [f.name for f in files.values() if f.exists()]}
    tables, figures, written = {}, {}, []
    out.mkdir(parents=True, exist_ok=True)
    cohorts = ({a: Hemispheres.load(cache, model_profile.downsample(a), device)
                for a in sorted({Experiment.parse(e).arch for e in have})} if compute else None)
    seed0 = results.seeds(page.runs_dir, have[0])[0] if have else None
    if compute:
        study = gradcam.merge_table(gradcam.cam_study(tree.seed_dir(seed0), have, cohorts, cache, split="test"),
                                    files["overlap"], exps)
        write_text(files["overlap"], study.to_csv(index=False))
        written.append(files["overlap"])
    if files["overlap"].exists():
        tables["overlap"] = pd.read_csv(files["overlap"])
        tables["summary"] = gradcam_summary(out)
        written.append(out / "gradcam_summary.csv")

    if compute:  # Figure 9: the test patient with the largest lesion, every model here
        c1 = next(iter(cohorts.values()))  # every arch's cohort has the same rows (hemispheres)
        rows = c1.rows("test", "stroke")
        sizes = {int(r): gradcam.lesion_hemispheres(cache, c1.index.at[r, "patient_id"], 1)[
            ("left", "right").index(c1.index.at[r, "hemisphere"])].sum() for r in rows}
        row = max(sizes, key=sizes.get)
        examples = []
        for e in have:
            c = cohorts[Experiment.parse(e).arch]
            model = gradcam.load_run_model(tree.run_dir(e, seed0), c.x.shape[2], device)
            examples.append(gradcam.cam_example(model, c, row, cache, title=f"{e} ({page.shown})", experiment=e))
        gradcam.save_examples(files["figure9"], gradcam.merge_examples(examples, files["figure9"], exps))
        written.append(files["figure9"])
    examples = gradcam.load_examples(files["figure9"]) if files["figure9"].exists() else []
    if examples:
        figures["figure9_gradcam"] = gradcam.figure9(examples)

    # the real ISLES'22 case: the phase 1 detectors first (which hemisphere each scores as stroke), then the TSS models
    isles_cache = PreprocessCache(cache.parent / "preprocess-isles")
    detectors = [results.experiment_name(a, "stroke", "random") for a in ("2d", "3d")]
    isles_exps = [e for e in detectors if tree.checkpoint(e) is not None] + have
    isles_ids = isles_cache.patient_ids()
    if PreprocessCache(cache).assembled() and isles_exps and isles_ids:
        rows_out, examples = [], []
        for e in isles_exps:
            r, ex = gradcam.external_case(tree.checkpoint(e).parent, isles_cache.root, isles_ids[0], cache,
                                          model_profile.downsample(Experiment.parse(e).arch), device)
            rows_out.append(r)
            examples.append(ex)
        order = [*detectors, *exps]
        write_text(files["isles"], gradcam.merge_table(pd.DataFrame(rows_out), files["isles"], order).to_csv(index=False))
        gradcam.save_examples(files["isles_cams"], gradcam.merge_examples(examples, files["isles_cams"], order))
        written += [files["isles"], files["isles_cams"]]
    if files["isles"].exists() and files["isles_cams"].exists():
        tables["isles"] = pd.read_csv(files["isles"])
        figures["isles"] = gradcam.figure9(gradcam.load_examples(files["isles_cams"]))
    written += _write(out, {}, {k: v for k, v in figures.items() if k == "figure9_gradcam"}, {"figure9_gradcam": 110})
    if "isles" in figures:  # shown on the page, not written (as before)
        plt.close(figures["isles"])
    return Chapter(page.shown, tables, figures, written, said)


def results_chapter(results_root, profile: str, cohort_dir=None, cache_dir=None, n_boot: int = 1000,
                    seed: int = 0) -> Chapter:
    """The Results page (``08_results``) of the largest profile with runs under ``results_root``
    (:func:`tss.results.shown_profile`; ``profile`` is the one the build ran, and ``cohort_dir`` and
    ``cache_dir`` apply to it only). Tables: Table 2 (+ raw, and under the recipe the clock study chose,
    when one learned), the paper's gain claims, our gains, the inherited ranking, the lesion features
    alone and the readers; figures: ``figures6_7`` and ``figure8_roc``. Written to the shown profile's
    ``results/`` folder."""
    page = results.shown_profile(results_root, profile, cohort_dir, cache_dir)
    where = project.under(results_root, page.shown)
    tables = results_tables(results_root, page.shown, page.cohort_dir, n_boot)
    raw = tables["table2_raw"]
    man = _manifest(page.cohort_dir)
    said: dict[str, object] = {"runs_dir": page.runs_dir, "cohort_dir": page.cohort_dir,
                               "n_test": int((man["split"] == "test").sum()) if man is not None else None}
    shown_tables = dict(tables)

    recipe = _recipe(where, said)
    if recipe:
        with tempfile.TemporaryDirectory() as tmp:
            view = clock.recipe_view(where.clock, recipe, tmp)
            t2r = results.table2(view.root, n_boot=n_boot, profile=page.shown)
        ran = t2r.attrs["raw"]["status"].eq("ok") & t2r["stage"].str.startswith("Phase") & ~t2r["stage"].eq("Phase 1")
        shown_tables["table2_recipe"] = t2r[ran]

    latent = page.cohort_dir / "latent.csv"
    if latent.exists() and man is not None:
        shown_tables["feature_aucs"] = results.feature_aucs(latent, man)
    rt = results.reader_metrics(man, n_boot=n_boot) if man is not None else None
    if rt is not None:
        shown_tables["readers"] = rt
        calls = man.query("split == 'test'")[["reader1", "reader2", "reader3"]].to_numpy()
        said["kappa"] = rt.attrs["fleiss_kappa"]
        said["kappa_ci"] = stats.bootstrap_ci(stats.fleiss_kappa, calls, n_boot=n_boot, seed=seed)

    figures = {}
    fig, axes = plt.subplots(2, 1, figsize=(9, 7.4), sharey=True)  # stacked: readable at the text column's width
    for ax, phase, title in zip(axes, ("tss3", "tss45"), ("Figure 6: TSS < 3 h (phase 2)", "Figure 7: TSS < 4.5 h (phase 3)")):
        results.plot_auc_by_init(raw, phase, ax=ax)
        ax.set_title(f"{title}, {page.shown} profile", fontsize=10)
    fig.tight_layout()
    figures["figures6_7"] = fig
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    results.plot_figure8(page.runs_dir, where.lee, latent, man, rt, ax=ax)
    ax.set_title(f"Figure 8: TSS < 4.5 h, test split ({page.shown} profile)", fontsize=10)
    figures["figure8_roc"] = fig

    files = _write(page.out_dir, tables, figures, {})
    return Chapter(page.shown, shown_tables, figures, files, said)


def reproduction_chapter(results_root, profile: str, cohort_dir=None, cache_dir=None, n_boot: int = 1000,
                         seed: int = 0) -> Chapter:
    """The Reproduction page (``10_reproduction``) of the profile :func:`results_chapter` shows: the
    claims table (``reproduction.csv``, judged from Table 2's raw rows, computed here when the Results
    page has not written them, and the Grad-CAM summary where ``09_gradcam`` wrote one), the findings
    box and, when the clock study chose a recipe that learned, each claim under both recipes."""
    page = results.shown_profile(results_root, profile, cohort_dir, cache_dir)
    where = project.under(results_root, page.shown)
    raw_csv = page.out_dir / "table2_raw.csv"
    if not raw_csv.exists():  # the Results page writes it; alone (on Colab, say) this page does
        _write(page.out_dir, results_tables(results_root, page.shown, page.cohort_dir, n_boot), {}, {})
    raw = pd.read_csv(raw_csv)
    man = _manifest(page.cohort_dir)
    gradcam_summary(page.out_dir)  # from the committed overlap table, whether or not the Grad-CAM page ran
    table = reproduction.claims(page.runs_dir, raw, lee_dir=where.lee, manifest=man,
                                cam_summary=page.out_dir / "gradcam_summary.csv", n_boot=n_boot, seed=seed)
    tables = {"reproduction": table}
    said: dict[str, object] = {"findings": reproduction.findings(table, raw, page.shown, len(man) if man is not None else None),
                               "counts": reproduction.counts(table)}
    recipe = _recipe(where, said)
    shown_tables = dict(tables)
    if recipe:
        with tempfile.TemporaryDirectory() as tmp:
            view = clock.recipe_view(where.clock, recipe, tmp)
            raw_r = results.table2(view.root, n_boot=n_boot, profile=page.shown).attrs["raw"]
            under = reproduction.claims(view.root, raw_r, n_boot=n_boot, seed=seed)
        shown_tables["beside"] = reproduction.beside(table, under, recipe)
    files = _write(page.out_dir, tables, {}, {})
    return Chapter(page.shown, shown_tables, {}, files, said)


def _recipe(where, said: dict) -> str | None:
    """The recipe put beside the paper's (:func:`tss.train.clock.chosen`), from one read of the clock
    study that also gives the best on validation; both go into ``said``, with :func:`no_recipe_note`."""
    top = clock.best(where.clock, grid_root=where.runs)
    said["recipe"], said["recipe_best"] = clock.picked(top), top
    said["no_recipe"] = no_recipe_note(said)
    return said["recipe"]


def no_recipe_note(said: dict) -> str | None:
    """Why the Results pages show no recipe beside the paper's, when the clock study ran one that beat
    it on validation without learning on every seed; None when there is nothing to say."""
    top = said.get("recipe_best")
    if said.get("recipe") or not top or top["recipe"] == "paper":
        return None
    return (f"No recipe is shown beside the paper's. The best on validation, **{top['recipe']}** (mean validation "
            f"AUC {top['val_mean']:.2f} over {top['seeds']} seed{'s' if top['seeds'] > 1 else ''}, test "
            f"{top['test_mean']:.2f}), did not leave the validation chance band on every seed, so by the rule of "
            "*Can the models learn the clock?* it has not learned the clock, and is not put beside the paper's.")


def write_tables(results_root, profile: str, n_boot: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """What the Results and Reproduction pages compute, without the book (``python -m tss results``):
    :func:`results_tables` and the claims table of ``profile`` (not the largest one, as the pages
    choose), written as CSV to ``results/<profile>/results/``.

    Args:
        results_root: the folder holding ``<profile>/runs`` (``results``).
        profile: the profile whose runs to read.
        n_boot, seed: bootstrap replicates and seed of every confidence interval.

    Returns:
        Each table by name; it was written to ``results/<profile>/results/<name>.csv``.

    Raises:
        FileNotFoundError: the profile has no finished training run.
    """
    root = Path(results_root)
    where = project.under(root, profile)
    if not RunTree(where.runs).has_runs():
        raise FileNotFoundError(f"no finished training run under {where.runs}: "
                                f"run `python -m tss train --profile {profile}` first")
    tables = results_tables(root, profile, n_boot=n_boot)
    gradcam_summary(where.outputs)
    tables["reproduction"] = reproduction.claims(
        where.runs, tables["table2_raw"], lee_dir=where.lee, manifest=_manifest(results.cohort_tables(root, profile)),
        cam_summary=where.outputs / "gradcam_summary.csv", n_boot=n_boot, seed=seed)
    _write(where.outputs, tables, {}, {})
    return tables


def write_findings(results_root, profile: str, dest, link: str | None = None, n_boot: int = 1000) -> Path:
    """:func:`findings` of ``profile`` as a MyST admonition in ``dest`` (the intro includes it):
    read from ``results/<profile>/results/`` when the Results and Reproduction pages wrote it,
    computed (:func:`write_tables`) otherwise."""

    where = project.under(results_root, profile)
    out = where.outputs
    if not ((out / "reproduction.csv").exists() and (out / "table2_raw.csv").exists()):
        write_tables(results_root, profile, n_boot=n_boot)
    man = where.cohort_tables / "manifest.csv"
    n = len(pd.read_csv(man)) if man.exists() else None
    body = reproduction.findings(pd.read_csv(out / "reproduction.csv"), pd.read_csv(out / "table2_raw.csv"), profile, n, link)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_text(dest, f":::{{admonition}} Findings\n:class: important\n\n{body}\n:::\n")
    return dest
