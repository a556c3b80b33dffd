"""Tables of the book that are computed from a cohort (Table 1: demographics)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tss import paper

TABLE1_ROWS = (
    ("Age (years) median (IQR)", "age"),
    ("Female n (%)", "sex"),
    ("NIHSS median (IQR)", "nihss"),
    ("Onset to MRI (min) median (IQR)", "onset_to_mri_min"),
)


def _median_iqr(x: pd.Series) -> str:
    x = pd.to_numeric(x, errors="coerce").dropna()
    if x.empty:
        return "n/a"
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    fmt = lambda v: f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"  # noqa: E731
    return f"{fmt(med)} ({fmt(q1)}-{fmt(q3)})"


def _female(x: pd.Series) -> str:
    x = x.astype(str).str.upper()
    known = x.isin(["F", "M"])
    if not known.any():
        return "n/a"
    n = int((x == "F").sum())
    return f"{n} ({100 * n / known.sum():.0f}%)"


def table1(manifest: pd.DataFrame) -> pd.DataFrame:
    """Our cohort's Table 1 beside the paper's.

    The paper's 'Training set' (n = 340) is training plus validation; its test set has 82.
    """
    groups = {
        "training (train+val)": manifest[manifest["split"].isin(["train", "val"])],
        "test": manifest[manifest["split"] == "test"],
        "all": manifest,
    }
    ours = {}
    for label, col in TABLE1_ROWS:
        ours[label] = {g: (_female(d[col]) if col == "sex" else _median_iqr(d[col])) for g, d in groups.items()}
    out = pd.DataFrame(ours).T
    out.columns = [f"ours: {g} (n={len(d)})" for g, d in groups.items()]
    p = paper.table1().set_index("variable")
    out["paper: training (n=340)"] = p["training_set_n340"]
    out["paper: test (n=82)"] = p["test_set_n82"]
    out["paper: all (n=422)"] = p["all_n422"]
    out.index.name = "variable"
    return out


def medians(manifest: pd.DataFrame) -> dict[str, float]:
    """Cohort medians of Table 1's continuous variables (for calibration checks)."""
    return {col: float(pd.to_numeric(manifest[col], errors="coerce").median())
            for _, col in TABLE1_ROWS if col != "sex"}
