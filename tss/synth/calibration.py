"""How faint the cohort's clock is, against what patients show: the calibration targets as data.

Each :class:`Target` is one measurable property of a cohort, the range that published patient
studies put it in, and where that range comes from. :func:`measure` computes our cohort's value of
each from the generated images (the lesion/contralateral ratios of :func:`tss.audit.native_ratios`:
each series' mean signal in the native lesion mask over that at its mirror image) and from the
simulated readers' calls, never from the generator's latent parameters; :func:`table` sets the two
side by side for the Data chapter.

The ranges are read from these studies (each row names its own):

- Thomalla et al. 2011, PRE-FLAIR, Lancet Neurol 10:978-986 (543 patients): visual DWI-FLAIR
  mismatch for TSS < 4.5 h, sensitivity 0.62, specificity 0.78.
- WAKE-UP trial, post-hoc FLAIR-rSI analysis (433 of 503 patients, all selected as visually
  mismatch-positive): mean FLAIR lesion/mirror ratio 1.06 (SD 0.09). Ours is measured on the same
  selection: the patients whose aggregate reader calls mismatch (not every patient under 4.5 h).
- Legge et al. 2017, J Stroke Cerebrovasc Dis 26:1582-1587 (160 patients): FLAIR ratio against time,
  Pearson r = 0.63; Ebinger et al. 2010, Stroke 41:250-255 (94 patients): no correlation within
  12 h (Spearman -0.15); Petkova et al. 2010, Radiology: FLAIR ratio 90% sensitive and 92% specific
  for < 3 h. The FLAIR ratio's AUC lies between these.
- Petkova et al. 2010: the best DWI ratio cutoff reached 65% sensitivity for < 3 h; Lansberg et al.
  2001, AJNR 22:637-644: lesion DWI signal shows no significant change during the first week.
- Galinovic et al. 2014, Stroke 45:1170-1172: a FLAIR ratio of 1.20 best matches visual FLAIR
  positivity; Emeriau et al. 2013, Stroke: at 3 T, 45% of patients under 4.5 h were already
  FLAIR-positive (PRE-FLAIR's sensitivity puts it at 38% at 1.5-3 T).
- The paper's three radiologists: Fleiss' kappa 0.46 (:data:`tss.paper.FLEISS_KAPPA`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tss import paper, stats
from tss.results import READERS
from tss.task import Task

VISIBLE_FLAIR_RATIO = 1.20  # Galinovic 2014: the FLAIR ratio that best matches a visual "FLAIR-positive" call


@dataclass(frozen=True)
class Target:
    key: str
    what: str            # the measured property, as the table names it
    low: float           # the range patients put it in (inclusive)
    high: float
    patients: str        # what the studies report
    source: str

    def met(self, value: float) -> bool | None:
        """Whether ``value`` lies in the target range (None when it could not be measured)."""
        return None if value is None or np.isnan(value) else bool(self.low <= value <= self.high)


TARGETS = (
    Target("flair_ratio_mismatch_mean", "FLAIR ratio where the readers call mismatch: mean", 1.00, 1.12,
           "mean 1.06 (SD 0.09)", "WAKE-UP post-hoc FLAIR-rSI analysis (433 mismatch patients)"),
    Target("flair_ratio_mismatch_sd", "FLAIR ratio where the readers call mismatch: SD", 0.06, 0.12,
           "SD 0.09", "WAKE-UP post-hoc FLAIR-rSI analysis (433 mismatch patients)"),
    Target("flair_ratio_auc", "FLAIR ratio alone: AUC for TSS < 4.5 h", 0.75, 0.85,
           "r = 0.63 with time; none within 12 h; 90%/92% for < 3 h",
           "Legge 2017; Ebinger 2010; Petkova 2010"),
    Target("dwi_ratio_auc", "DWI ratio alone: AUC for TSS < 4.5 h", 0.50, 0.65,
           "best cutoff 65% sensitive for < 3 h; flat over the first week", "Petkova 2010; Lansberg 2001"),
    Target("flair_visible_early", f"TSS < 4.5 h with FLAIR ratio > {VISIBLE_FLAIR_RATIO:.2f} (visibly FLAIR-positive)",
           0.30, 0.50, "45% at 3 T; 38% (1 - sensitivity 0.62)",
           "Emeriau 2013; PRE-FLAIR (Thomalla 2011); threshold: Galinovic 2014"),
    Target("readers_sensitivity", "aggregate reader: sensitivity for TSS < 4.5 h", 0.52, 0.72,
           "0.62 (PRE-FLAIR); 0.57 (paper's aggregate radiologist)", "Thomalla 2011; paper Table 2"),
    Target("readers_specificity", "aggregate reader: specificity for TSS < 4.5 h", 0.68, 0.90,
           "0.78 (PRE-FLAIR); 0.88 (paper's aggregate radiologist)", "Thomalla 2011; paper Table 2"),
    Target("readers_kappa", "readers' Fleiss' kappa", 0.35, 0.55,
           f"{paper.FLEISS_KAPPA:.2f} (paper's three radiologists)", "paper"),
)
TARGET = {t.key: t for t in TARGETS}


def _auc_early(y: np.ndarray, ratio: pd.Series) -> float:
    ok = ratio.notna().to_numpy()
    return stats.auc_or_nan(y[ok], -ratio.to_numpy()[ok])  # a fainter lesion means earlier


def measure(native: pd.DataFrame, cohort: pd.DataFrame) -> dict[str, float]:
    """Our cohort's value of every target. ``native``: one row per patient with ``patient_id`` and
    the lesion/contralateral ratios ``dwi`` and ``flair`` measured from its images
    (:func:`tss.audit.native_table`); ``cohort``: ``patient_id``, ``onset_to_mri_min`` and the
    readers' calls (1: mismatch, i.e. TSS < 4.5 h). Patients missing from either are left out."""
    missing = {"patient_id", "dwi", "flair"} - set(native.columns)
    missing |= {f"cohort.{c}" for c in {"patient_id", "onset_to_mri_min"} - set(cohort.columns)}
    if missing:
        raise ValueError(f"calibration needs the columns {sorted(missing)}")
    keep = ["patient_id", "onset_to_mri_min"] + [c for c in READERS if c in cohort.columns]
    df = cohort[keep].merge(native[["patient_id", "dwi", "flair"]], on="patient_id", how="inner")
    if df.empty:
        raise ValueError("calibration: no patient is in both the native ratios and the cohort table")
    y = Task.TSS45.label(df["onset_to_mri_min"]).to_numpy().astype(int)
    early = df.loc[y == 1, "flair"].dropna()
    out = {
        "flair_ratio_auc": _auc_early(y, df["flair"]),
        "dwi_ratio_auc": _auc_early(y, df["dwi"]),
        "flair_visible_early": float((early > VISIBLE_FLAIR_RATIO).mean()) if len(early) else np.nan,
    }
    if set(READERS) <= set(df.columns):
        calls = df[READERS].astype(int)
        called = df.loc[stats.majority(calls.to_numpy()).astype(bool), "flair"].dropna()
        out["flair_ratio_mismatch_mean"] = float(called.mean()) if len(called) else np.nan
        out["flair_ratio_mismatch_sd"] = float(called.std(ddof=1)) if len(called) > 1 else np.nan
        agg = stats.reader_table(y, calls).set_index("reader").loc["Aggregate (majority)"]
        out["readers_sensitivity"] = float(agg["sensitivity"])
        out["readers_specificity"] = float(agg["specificity"])
        out["readers_kappa"] = float(stats.fleiss_kappa(calls.to_numpy()))
    else:
        out |= {k: np.nan for k in ("flair_ratio_mismatch_mean", "flair_ratio_mismatch_sd", "readers_sensitivity",
                                    "readers_specificity", "readers_kappa")}
    out["n_patients"], out["n_early"] = len(df), int(y.sum())
    return out


def table(measured: dict[str, float]) -> pd.DataFrame:
    """One row per target: what patients show, the target range, ours, and whether ours is in it
    ("yes", "no: above", "no: below", or "not measured")."""
    rows = []
    for t in TARGETS:
        v = measured.get(t.key, np.nan)
        met = t.met(v)
        verdict = ("not measured" if met is None else "yes" if met
                   else "no: above" if v > t.high else "no: below")
        rows.append({"target": t.what, "patients": t.patients, "target range": f"{t.low:.2f}-{t.high:.2f}",
                     "ours": "n/a" if met is None else f"{v:.2f}", "met": verdict, "source": t.source})
    return pd.DataFrame(rows)
