"""Statistics for tables: binary reader metrics, Fleiss' kappa, AUC, patient-level bootstrap CIs,
Youden operating points and DeLong's test."""

from __future__ import annotations

import warnings
from collections.abc import Callable

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


def auc_or_nan(y_true, score) -> float:
    """:func:`auc`, or NaN when ``y_true`` holds one class (small splits can)."""
    return auc(y_true, score) if len(np.unique(np.asarray(y_true))) == 2 else float("nan")


def bootstrap_ci(stat: Callable[..., float], *arrays, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95,
                 stratify=None) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of ``stat(*arrays)`` resampling patients (rows) with replacement.

    ``stratify`` (e.g. the class labels) resamples within each stratum so that every replicate
    keeps both classes, which AUC, sensitivity and specificity need. A ``stat`` returning a vector
    gives arrays ``(lo, hi)`` (one bootstrap for all its entries); NaN replicates are ignored and
    an all-NaN entry gives NaN bounds.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if stratify is None else [np.flatnonzero(np.asarray(stratify) == g)
                                                      for g in np.unique(stratify)]
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        values.append(stat(*(a[idx] for a in arrays)))
    values = np.asarray(values, dtype=float)
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice -> NaN bounds
        lo, hi = np.nanquantile(values, [alpha, 1 - alpha], axis=0)
    if values.ndim == 1:
        return float(lo), float(hi)
    return lo, hi


def with_ci(value: float, ci: tuple[float, float], digits: int = 2) -> str:
    """``"0.74 (0.65-0.83)"``; ``"n/a"`` for a NaN value, ``"0.74 (n/a)"`` for a NaN interval."""
    if value is None or np.isnan(value):
        return "n/a"
    if ci is None or np.isnan(ci[0]) or np.isnan(ci[1]):
        return f"{value:.{digits}f} (n/a)"
    return f"{value:.{digits}f} ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})"


def ci_below(cell) -> str:
    """A :func:`with_ci` string as HTML with its interval on a second line (``"0.74<br>(0.65-0.83)"``),
    so that a table of many such columns fits the page; a non-string (a missing cell) becomes ``""``."""
    return cell.replace(" (", "<br>(", 1) if isinstance(cell, str) else ""


def binary_counts(y_true, y_pred) -> dict[str, tuple[int, int]]:
    """(successes, trials) behind each proportion of :func:`binary_metrics`."""
    y, p = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp, tn = int(np.sum(y & p)), int(np.sum(~y & ~p))
    return {"sensitivity": (tp, int(y.sum())), "specificity": (tn, int((~y).sum())), "accuracy": (tp + tn, len(y))}


def chance_auc_upper(n_pos: int, n_neg: int, level: float = 0.95) -> float:
    """The upper end of the two-sided ``level`` band of the AUC of a score unrelated to the label,
    on ``n_pos`` positives and ``n_neg`` negatives: 0.5 + z * sd, with the Mann-Whitney statistic's
    null variance (n_pos + n_neg + 1) / (12 n_pos n_neg). NaN without both classes."""
    from scipy.stats import norm

    if n_pos < 1 or n_neg < 1:
        return np.nan
    sd = np.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))
    return float(0.5 + norm.ppf(0.5 + level / 2) * sd)


def learned(y_true, score, level: float = 0.95) -> dict:
    """Did a model learn its task? Its AUC on validation cases (``y_true``, ``score``) against the
    upper end of what a score unrelated to the label reaches on the same cases
    (:func:`chance_auc_upper`): {"learned", "val_auc", "chance_upper"}. The kept model is the best
    of its epochs on validation, so the rule errs towards "learned"; without both classes (no AUC)
    a run counts as learned. The one rule of the Reproduction page and the clock study."""
    y = np.asarray(y_true).astype(int)
    auc_ = auc_or_nan(y, score)
    upper = chance_auc_upper(int(y.sum()), int((1 - y).sum()), level)
    return {"learned": not (auc_ <= upper), "val_auc": auc_, "chance_upper": upper}


def detectable_difference(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided test at ``alpha`` detects with probability ``power``
    when its estimate has standard error ``se``: (z_(1 - alpha/2) + z_power) * se (2.80 se at the
    usual 0.05 and 80%)."""
    from scipy.stats import norm

    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def proportion_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of the binomial proportion k / n (statsmodels'
    ``beta`` method); NaN bounds when n is 0."""
    from statsmodels.stats.proportion import proportion_confint

    if not n:
        return np.nan, np.nan
    lo, hi = proportion_confint(k, n, alpha=1 - level, method="beta")
    return float(lo), float(hi)


def reader_table(y_true, calls: pd.DataFrame, n_boot: int = 2000, seed: int = 0, method: str = "exact") -> pd.DataFrame:
    """Per-reader and aggregate (majority) sensitivity/specificity/accuracy with 95% CIs: exact
    Clopper-Pearson intervals of each proportion (``method="exact"``, the default: a reader's calls
    are fixed, so each metric is a binomial proportion of the patients it counts), or a stratified
    bootstrap over patients (``method="bootstrap"``, ``n_boot`` replicates)."""
    if method not in ("exact", "bootstrap"):
        raise ValueError(f"method must be 'exact' or 'bootstrap', not {method!r}")
    y = np.asarray(y_true).astype(int)
    cols = dict(calls.items())
    cols["Aggregate (majority)"] = majority(calls.to_numpy())
    rows = []
    for name, c in cols.items():
        c = np.asarray(c).astype(int)
        point, counts = binary_metrics(y, c), binary_counts(y, c)
        row = {"reader": name}
        for metric, v in point.items():
            if method == "exact":
                ci = proportion_ci(*counts[metric])
            else:
                ci = bootstrap_ci(lambda yy, cc, m=metric: binary_metrics(yy, cc)[m], y, c,
                                  n_boot=n_boot, seed=seed, stratify=y)
            row[metric] = v
            row[f"{metric}_lo"], row[f"{metric}_hi"] = ci
        rows.append(row)
    return pd.DataFrame(rows)


def _binary_labels(y_true) -> np.ndarray:
    """0/1 (or bool) truth as a bool array."""
    return np.asarray(y_true).astype(bool)


def _has_both_classes(y_true) -> bool:
    y = _binary_labels(y_true)
    return bool(y.any() and not y.all())


def _rank_auc(y_true, score) -> float:
    """AUC as the Mann-Whitney statistic from midranks: ``auc`` without scikit-learn's input
    checks, ~20x faster inside a bootstrap loop; NaN with one class."""
    from scipy.stats import rankdata

    y = _binary_labels(y_true)
    m, n = int(y.sum()), int((~y).sum())
    if not (m and n):
        return np.nan
    return float((rankdata(score)[y].sum() - m * (m + 1) / 2) / (m * n))


def youden_threshold(y_true, score) -> float:
    """The score threshold maximising Youden's J = sensitivity + specificity - 1.

    The rule is ``score >= threshold`` -> positive; the threshold is always one of the observed
    scores (the ROC points of ``sklearn.metrics.roc_curve``). Ties: the highest J, then the
    largest threshold. Raises ValueError unless ``y_true`` holds both classes.
    """
    from sklearn.metrics import roc_curve

    y, s = _binary_labels(y_true), np.asarray(score, dtype=float)
    if not _has_both_classes(y):
        raise ValueError("youden_threshold needs both classes in y_true")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    keep = np.isfinite(thr)  # the first point (inf) calls no case positive
    fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    n_pos, n_neg = y.sum(), (~y).sum()
    # J * n_pos * n_neg in exact integers, so that ties are ties
    j = np.rint(tpr * n_pos).astype(np.int64) * n_neg - np.rint(fpr * n_neg).astype(np.int64) * n_pos
    best = np.flatnonzero(j == j.max())
    return float(thr[best].max())


def operating_point(y_true, score, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity and accuracy of the rule ``score >= threshold``, and the threshold."""
    calls = np.asarray(score, dtype=float) >= threshold
    return {**binary_metrics(y_true, calls), "threshold": float(threshold)}


def _delong_components(y_true, *scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong's structural components (Sun & Xu 2014, midranks): per predictor, V10 over
    the positives (fraction of negatives each one outscores) and V01 over the negatives."""
    from scipy.stats import rankdata

    y = _binary_labels(y_true)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != len(y):
        raise ValueError(f"scores have {s.shape[1]} cases, y_true has {len(y)}")
    if not np.all(np.isfinite(s)):
        raise ValueError("DeLong needs finite scores (found NaN or inf)")
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives (got {m} and {n})")
    pos, neg = s[:, y], s[:, ~y]
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # midranks among all cases
    tx, ty = rankdata(pos, axis=1), rankdata(neg, axis=1)      # midranks within each class
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return v10.mean(axis=1), v10, v01


def _delong_cov(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    """DeLong's covariance matrix of the AUCs: S10/m + S01/n."""
    return (np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1])


# Hand-written: no maintained Python library has DeLong's test (scikit-learn and statsmodels have none).
def delong(y_true, score1, score2) -> dict[str, float]:
    """DeLong's test (DeLong et al. 1988) of two correlated AUCs on the same cases.

    Returns auc1, auc2, diff (auc1 - auc2), se (of the difference), z and the two-sided normal p.
    Identical rankings give se 0, z 0 and p 1; a nonzero diff with se 0 gives z +-inf and p 0.
    Raises ValueError with fewer than 2 cases of either class.
    """
    from scipy.stats import norm

    aucs, v10, v01 = _delong_components(y_true, score1, score2)
    cov = _delong_cov(v10, v01)
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    if se == 0:
        z = 0.0 if diff == 0 else float(np.copysign(np.inf, diff))
    else:
        z = diff / se
    return {"auc1": float(aucs[0]), "auc2": float(aucs[1]), "diff": diff, "se": se, "z": z,
            "p": float(2 * norm.sf(abs(z)))}


def delong_ci(y_true, score, level: float = 0.95) -> tuple[float, float]:
    """Normal CI of one AUC from DeLong's variance, clipped to [0, 1]."""
    from scipy.stats import norm

    aucs, v10, v01 = _delong_components(y_true, score)
    half = norm.ppf(0.5 + level / 2) * np.sqrt(_delong_cov(v10, v01)[0, 0])
    return float(max(aucs[0] - half, 0.0)), float(min(aucs[0] + half, 1.0))


_OP_KEYS = (("sens", "sensitivity"), ("spec", "specificity"), ("acc", "accuracy"))


def _op_vector(y_true, score, threshold=None) -> np.ndarray:
    """(sensitivity, specificity, accuracy) at ``threshold``, or at the Youden threshold of these
    same cases when ``threshold`` is None."""
    if threshold is None:
        if not _has_both_classes(y_true):
            return np.full(3, np.nan)
        threshold = youden_threshold(y_true, score)
    m = operating_point(y_true, score, threshold)
    return np.array([m[k] for _, k in _OP_KEYS], dtype=float)


def metric_summary(y_test, p_test, y_val=None, p_val=None, n_boot: int = 2000,
                   seed: int = 0) -> dict[str, float]:
    """AUC and Youden operating points on a test set, each with a 95% CI.

    Keys: ``n``, ``n_pos``; ``auc`` with ``auc_lo``/``auc_hi`` (patient-level bootstrap
    stratified by class) and ``auc_delong_lo``/``auc_delong_hi``; ``threshold_test`` and
    ``sens_test``/``spec_test``/``acc_test`` at the test set's own Youden threshold, whose
    bootstrap CIs re-choose the threshold in each replicate (optimistic: the threshold is tuned on
    the test set); with validation data, ``threshold_val`` (Youden on validation) and
    ``sens_val``/``spec_val``/``acc_val`` on test at that fixed threshold, with bootstrap CIs.
    Every metric has ``_lo``/``_hi`` keys. A set with one class gives NaN for what it cannot
    define (AUC, its threshold) instead of raising.
    """
    y = _binary_labels(y_test)
    p = np.asarray(p_test, dtype=float)
    ci = {"n_boot": n_boot, "seed": seed, "stratify": y}
    out: dict[str, float] = {"n": len(y), "n_pos": int(y.sum())}
    nan2 = (np.nan, np.nan)

    both = _has_both_classes(y)
    out["auc"] = auc_or_nan(y, p)
    out["auc_lo"], out["auc_hi"] = bootstrap_ci(_rank_auc, y, p, **ci) if both else nan2
    try:
        out["auc_delong_lo"], out["auc_delong_hi"] = delong_ci(y, p)
    except ValueError:
        out["auc_delong_lo"], out["auc_delong_hi"] = nan2

    thresholds = {"test": youden_threshold(y, p) if both else np.nan}
    if y_val is not None and p_val is not None:
        thresholds["val"] = youden_threshold(y_val, p_val) if _has_both_classes(y_val) else np.nan
    for name, threshold in thresholds.items():
        out[f"threshold_{name}"] = float(threshold)
        if np.isnan(threshold):
            point = lo = hi = np.full(3, np.nan)
        else:
            point = _op_vector(y, p, threshold)
            rule = None if name == "test" else threshold  # None: re-chosen in every replicate
            lo, hi = bootstrap_ci(lambda yy, pp, r=rule: _op_vector(yy, pp, r), y, p, **ci)
        for i, (short, _) in enumerate(_OP_KEYS):
            key = f"{short}_{name}"
            out[key], out[f"{key}_lo"], out[f"{key}_hi"] = float(point[i]), float(lo[i]), float(hi[i])
    return out
