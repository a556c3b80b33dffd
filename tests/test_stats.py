"""Statistics helpers against scikit-learn, statsmodels and hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, roc_auc_score

from tss import stats


def test_binary_metrics_match_confusion_matrix():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    tn, fp, fn, tp = confusion_matrix(y, p).ravel()
    m = stats.binary_metrics(y, p)
    assert np.isclose(m["sensitivity"], tp / (tp + fn))
    assert np.isclose(m["specificity"], tn / (tn + fp))
    assert np.isclose(m["accuracy"], (tp + tn) / 300)


def test_fleiss_kappa_known_values():
    perfect = np.array([[1, 1, 1], [0, 0, 0], [1, 1, 1], [0, 0, 0]])
    assert np.isclose(stats.fleiss_kappa(perfect), 1.0)
    # Fleiss (1971)-style hand computation for 2 categories
    calls = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    n, k = calls.shape
    p1 = calls.sum(1)
    counts = np.stack([k - p1, p1], 1)
    P_i = (np.sum(counts**2, 1) - k) / (k * (k - 1))
    p_j = counts.sum(0) / (n * k)
    expected = (P_i.mean() - np.sum(p_j**2)) / (1 - np.sum(p_j**2))
    assert np.isclose(stats.fleiss_kappa(calls), expected)


def test_majority_and_auc():
    calls = np.array([[1, 1, 0], [0, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(stats.majority(calls), [1, 0, 1])
    rng = np.random.default_rng(1)
    y, s = rng.integers(0, 2, 100), rng.normal(size=100)
    assert np.isclose(stats.auc(y, s), roc_auc_score(y, s))


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(2)
    widths = []
    for n in (40, 400):
        y = rng.integers(0, 2, n)
        s = y + rng.normal(0, 1.5, n)
        lo, hi = stats.bootstrap_ci(stats.auc, y, s, n_boot=400, seed=0, stratify=y)
        assert lo < stats.auc(y, s) < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def test_reader_table_has_aggregate_row():
    y = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    calls = pd.DataFrame({"r1": [1, 1, 0, 0, 1, 0, 0, 1], "r2": [1, 0, 0, 0, 1, 0, 1, 0], "r3": [0, 1, 1, 0, 1, 0, 1, 0]})
    t = stats.reader_table(y, calls, n_boot=50)
    assert list(t["reader"]) == ["r1", "r2", "r3", "Aggregate (majority)"]
    assert np.isclose(t.loc[3, "sensitivity"], 1.0) and np.isclose(t.loc[3, "specificity"], 1.0)
