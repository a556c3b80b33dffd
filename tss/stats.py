"""Statistics for tables: binary reader metrics, Fleiss' kappa, AUC, patient-level bootstrap CIs."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd


def binary_metrics(y_true, y_pred) -> dict[str, float]:
    """Sensitivity, specificity and accuracy of 0/1 calls against 0/1 truth."""
    y, p = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp, tn = np.sum(y & p), np.sum(~y & ~p)
    pos, neg = y.sum(), (~y).sum()
    return {
        "sensitivity": tp / pos if pos else np.nan,
        "specificity": tn / neg if neg else np.nan,
        "accuracy": (tp + tn) / len(y) if len(y) else np.nan,
    }


def fleiss_kappa(calls) -> float:
    """Fleiss' kappa of an (n_subjects, n_raters) array of categorical calls (statsmodels)."""
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as _fk

    table, _ = aggregate_raters(np.asarray(calls))
    return float(_fk(table, method="fleiss"))


def majority(calls) -> np.ndarray:
    """Aggregate reader: the majority call of an odd number of raters."""
    calls = np.asarray(calls)
    return (calls.mean(axis=1) > 0.5).astype(int)


def auc(y_true, score) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(y_true).astype(int), np.asarray(score)))


def bootstrap_ci(stat: Callable[..., float], *arrays, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95, stratify=None) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat(*arrays)`` resampling patients (rows) with replacement.

    ``stratify`` (e.g. the class labels) resamples within each stratum so that every replicate
    keeps both classes, which AUC, sensitivity and specificity need.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if stratify is None else [np.flatnonzero(np.asarray(stratify) == g)
                                                      for g in np.unique(stratify)]
    values = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        values[b] = stat(*(a[idx] for a in arrays))
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def with_ci(value: float, ci: tuple[float, float], digits: int = 2) -> str:
    return f"{value:.{digits}f} ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})"


def reader_table(y_true, calls: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per-reader and aggregate (majority) sensitivity/specificity/accuracy with bootstrap CIs."""
    y = np.asarray(y_true).astype(int)
    cols = dict(calls.items())
    cols["Aggregate (majority)"] = majority(calls.to_numpy())
    rows = []
    for name, c in cols.items():
        c = np.asarray(c).astype(int)
        point = binary_metrics(y, c)
        row = {"reader": name}
        for metric, v in point.items():
            ci = bootstrap_ci(lambda yy, cc, m=metric: binary_metrics(yy, cc)[m], y, c,
                              n_boot=n_boot, seed=seed, stratify=y)
            row[metric] = v
            row[f"{metric}_lo"], row[f"{metric}_hi"] = ci
        rows.append(row)
    return pd.DataFrame(rows)
