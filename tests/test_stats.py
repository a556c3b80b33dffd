"""Statistics helpers against scikit-learn, statsmodels and hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
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


# --- operating points -------------------------------------------------------------------------

def _brute_youden(y, p):
    """Every observed score as threshold (rule p >= t); J compared exactly as J * n_pos * n_neg."""
    y = y.astype(bool)
    best = None
    for t in np.unique(p):
        call = p >= t
        tp, tn = np.sum(call & y), np.sum(~call & ~y)
        j = tp * (~y).sum() - ((~y).sum() - tn) * y.sum()
        if best is None or j > best[0] or (j == best[0] and t > best[1]):
            best = (j, t, tp / y.sum(), tn / (~y).sum(), np.mean(call == y))
    return best


def test_youden_threshold_and_operating_point_match_brute_force():
    from sklearn.metrics import roc_curve

    for seed in range(6):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(30, 200))
        y = rng.integers(0, 2, n)
        p = y * rng.uniform(0.3, 2.0) + rng.normal(size=n)
        if seed % 2:
            p = np.round(p, 1)  # many ties between and within classes
        _, t, sens, spec, acc = _brute_youden(y, p)
        assert stats.youden_threshold(y, p) == t
        op = stats.operating_point(y, p, t)
        assert np.isclose(op["sensitivity"], sens) and np.isclose(op["specificity"], spec)
        assert np.isclose(op["accuracy"], acc) and op["threshold"] == t
        fpr, tpr, _ = roc_curve(y, p)
        assert np.isclose(sens + spec - 1, np.max(tpr - fpr))


def test_youden_threshold_ties_go_to_the_largest_threshold():
    # J = 0.5 at both 0.8 (sens 0.5, spec 1) and 0.35 (sens 1, spec 0.5)
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert stats.youden_threshold(y, p) == 0.8
    # An exact tie (J = 0.3 at 10 and at 4) that float tpr - fpr breaks (0.30000000000000004 at 4)
    y12, p12 = np.array([int(c) for c in "001000001000"]), np.arange(12, 0, -1.0)
    assert stats.youden_threshold(y12, p12) == 10.0
    assert stats.operating_point(y, p, 0.35) == {"sensitivity": 1.0, "specificity": 0.5,
                                                  "accuracy": 0.75, "threshold": 0.35}
    with pytest.raises(ValueError, match="both classes"):
        stats.youden_threshold([1, 1, 1], [0.1, 0.2, 0.3])


# --- DeLong ------------------------------------------------------------------------------------

def _delong_by_definition(y, *scores):
    """DeLong's AUCs and covariance straight from the Mann-Whitney kernel psi(x, y) = 1, 1/2, 0
    (x > y, x = y, x < y): structural components V10 (per positive) and V01 (per negative)."""
    y = np.asarray(y).astype(bool)
    v10, v01 = [], []
    for s in scores:
        s = np.asarray(s, float)
        pos, neg = s[y], s[~y]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    v10, v01 = np.array(v10), np.array(v01)
    cov = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    return v10.mean(axis=1), np.atleast_2d(cov)


def test_delong_matches_quadratic_definition_and_sklearn():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n = 60 + 40 * seed
        y = (rng.random(n) < 0.35).astype(int)
        s1 = y + rng.normal(size=n)
        s2 = 0.5 * y + rng.normal(size=n) + 0.5 * s1
        if seed % 2:
            s1, s2 = np.round(s1), np.round(s2, 1)  # heavy ties
        r = stats.delong(y, s1, s2)
        aucs, cov = _delong_by_definition(y, s1, s2)
        assert r["auc1"] == pytest.approx(roc_auc_score(y, s1), abs=1e-12)
        assert r["auc2"] == pytest.approx(roc_auc_score(y, s2), abs=1e-12)
        assert r["auc1"] == pytest.approx(aucs[0], abs=1e-12)
        assert r["auc2"] == pytest.approx(aucs[1], abs=1e-12)
        se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
        assert r["se"] == pytest.approx(se, rel=1e-10)
        assert r["z"] == pytest.approx((aucs[0] - aucs[1]) / se, rel=1e-10)
        lo, hi = stats.delong_ci(y, s1, level=0.9)
        assert (hi - lo) / 2 == pytest.approx(1.6448536269514722 * np.sqrt(cov[0, 0]), rel=1e-10)


def test_delong_variance_agrees_with_bootstrap():
    from scipy.stats import rankdata

    rng = np.random.default_rng(11)
    n = 400
    y = rng.random(n) < 0.4
    s = 0.9 * y + rng.normal(size=n)
    lo, hi = stats.delong_ci(y, s)
    var_delong = ((hi - lo) / (2 * 1.959963984540054)) ** 2
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    m, k = len(pos), len(neg)
    boot = []
    for _ in range(2000):
        idx = np.concatenate([rng.choice(pos, m), rng.choice(neg, k)])
        r = rankdata(s[idx])[:m]
        boot.append((r.sum() - m * (m + 1) / 2) / (m * k))
    assert np.var(boot, ddof=1) == pytest.approx(var_delong, rel=0.15)


def test_delong_p_values_are_uniform_under_the_null():
    rng = np.random.default_rng(1)
    ps = []
    for _ in range(200):
        y = rng.integers(0, 2, 100)
        base = y + rng.normal(size=100)
        ps.append(stats.delong(y, base + rng.normal(0, 0.7, 100), base + rng.normal(0, 0.7, 100))["p"])
    ps = np.array(ps)
    assert 0.02 <= np.mean(ps < 0.05) <= 0.09
    assert 0.4 <= np.mean(ps < 0.5) <= 0.6


def test_delong_detects_a_better_predictor_and_is_antisymmetric():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 200)
    good, weak = 2 * y + rng.normal(size=200), 0.3 * y + rng.normal(size=200)
    r, rev = stats.delong(y, good, weak), stats.delong(y, weak, good)
    assert r["p"] < 1e-3 and r["diff"] > 0 and r["z"] > 0
    assert rev["z"] == pytest.approx(-r["z"]) and rev["p"] == pytest.approx(r["p"])


def test_delong_identical_predictors_and_degenerate_input():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 50)
    s = y + rng.normal(size=50)
    for other in (s, np.exp(s)):  # same ranking: the same AUC components
        r = stats.delong(y, s, other)
        assert (r["diff"], r["se"], r["z"], r["p"]) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="positives"):
        stats.delong(np.zeros(10), rng.normal(size=10), rng.normal(size=10))
    with pytest.raises(ValueError, match="positives"):
        stats.delong_ci(np.r_[1, np.zeros(9)], rng.normal(size=10))
    lo, hi = stats.delong_ci([0, 0, 0, 1, 0, 1, 1, 1], [1, 2, 3, 4, 5, 6, 7, 8])
    assert 0 <= lo < stats.auc([0, 0, 0, 1, 0, 1, 1, 1], np.arange(1, 9)) < hi == 1.0  # clipped


# --- agreement, formatting ------------------------------------------------------------------------

def test_fleiss_kappa_matches_the_definition_on_random_ratings():
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    for seed, (n, k, c) in enumerate([(40, 3, 2), (60, 5, 3), (25, 4, 4)]):
        rng = np.random.default_rng(seed)
        truth = rng.integers(0, c, n)
        calls = np.where(rng.random((n, k)) < 0.6, truth[:, None], rng.integers(0, c, (n, k)))
        counts = np.stack([(calls == j).sum(1) for j in range(c)], 1)
        P_i = (np.sum(counts**2, 1) - k) / (k * (k - 1))
        p_j = counts.sum(0) / (n * k)
        expected = (P_i.mean() - np.sum(p_j**2)) / (1 - np.sum(p_j**2))
        assert stats.fleiss_kappa(calls) == pytest.approx(expected, abs=1e-12)
        assert stats.fleiss_kappa(calls) == pytest.approx(sm_fleiss(counts), abs=1e-12)


def test_with_ci_formats_and_is_nan_safe():
    assert stats.with_ci(0.7412, (0.65, 0.834)) == "0.74 (0.65-0.83)"
    assert stats.with_ci(0.7412, (0.65, 0.834), 3) == "0.741 (0.650-0.834)"
    assert stats.with_ci(np.nan, (np.nan, np.nan)) == "n/a"
    assert stats.with_ci(0.5, (np.nan, np.nan)) == "0.50 (n/a)"


def test_ci_below_breaks_only_before_the_interval():
    assert stats.ci_below(stats.with_ci(0.7412, (0.65, 0.834))) == "0.74<br>(0.65-0.83)"
    assert stats.ci_below("0.50 (n/a)") == "0.50<br>(n/a)"
    assert stats.ci_below("n/a") == "n/a"  # no interval, nothing to break
    assert stats.ci_below(np.nan) == "" and stats.ci_below(None) == ""


# --- metric_summary ------------------------------------------------------------------------------

def _scores(seed, n, shift=0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, 1.2 * y + rng.normal(size=n) + shift


def test_metric_summary_thresholds_point_estimates_and_cis():
    y, p = _scores(0, 150)
    yv, pv = _scores(1, 150, shift=1.5)  # validation scores run higher: a different threshold
    n_boot = 200
    s = stats.metric_summary(y, p, yv, pv, n_boot=n_boot, seed=3)
    assert (s["n"], s["n_pos"]) == (150, y.sum())
    assert s["auc"] == pytest.approx(roc_auc_score(y, p))
    assert s["threshold_val"] == stats.youden_threshold(yv, pv)
    assert s["threshold_test"] == stats.youden_threshold(y, p)
    assert s["threshold_val"] > s["threshold_test"] + 0.5
    for name in ("val", "test"):
        op = stats.operating_point(y, p, s[f"threshold_{name}"])  # always measured on test
        for short, long in (("sens", "sensitivity"), ("spec", "specificity"), ("acc", "accuracy")):
            key = f"{short}_{name}"
            assert s[key] == op[long]
            assert s[f"{key}_lo"] <= s[key] <= s[f"{key}_hi"] and s[f"{key}_lo"] < s[f"{key}_hi"]
    assert s["auc_lo"] < s["auc"] < s["auc_hi"] and s["auc_delong_lo"] < s["auc"] < s["auc_delong_hi"]
    # The same resamples (same seed): fixed validation threshold vs re-chosen test threshold.
    t_val = s["threshold_val"]
    fixed = stats.bootstrap_ci(lambda yy, pp: stats.operating_point(yy, pp, t_val)["sensitivity"],
                               y, p, n_boot=n_boot, seed=3, stratify=y)
    rechosen = stats.bootstrap_ci(
        lambda yy, pp: stats.operating_point(yy, pp, stats.youden_threshold(yy, pp))["specificity"],
        y, p, n_boot=n_boot, seed=3, stratify=y)
    assert (s["sens_val_lo"], s["sens_val_hi"]) == pytest.approx(fixed)
    assert (s["spec_test_lo"], s["spec_test_hi"]) == pytest.approx(rechosen)
    assert stats.bootstrap_ci(stats.auc, y, p, n_boot=n_boot, seed=3, stratify=y) == \
        pytest.approx((s["auc_lo"], s["auc_hi"]))


def test_metric_summary_single_class_sets_give_nan_not_errors():
    yv, pv = _scores(2, 80)
    y = np.zeros(30, int)
    p = np.random.default_rng(3).normal(size=30)
    s = stats.metric_summary(y, p, yv, pv, n_boot=50)
    assert np.isnan(s["auc"]) and np.isnan(s["auc_lo"]) and np.isnan(s["auc_delong_hi"])
    assert np.isnan(s["threshold_test"]) and np.isnan(s["sens_test"]) and np.isnan(s["spec_test_hi"])
    assert np.isnan(s["sens_val"]) and 0 <= s["spec_val_lo"] <= s["spec_val"] <= s["spec_val_hi"] <= 1
    assert stats.with_ci(s["auc"], (s["auc_lo"], s["auc_hi"])) == "n/a"
    y2, p2 = _scores(4, 60)
    s2 = stats.metric_summary(y2, p2, np.ones(20), np.arange(20.0), n_boot=50)
    assert np.isnan(s2["threshold_val"]) and np.isnan(s2["sens_val_lo"]) and not np.isnan(s2["auc"])
    assert "threshold_val" not in stats.metric_summary(y2, p2, n_boot=20)


def test_reader_intervals_are_exact_clopper_pearson_and_match_scipy():
    from scipy.stats import binomtest

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 85)
    calls = pd.DataFrame({r: np.where(rng.random(85) < 0.75, y, 1 - y) for r in ("r1", "r2", "r3")})
    calls["r2"] = 0  # never calls mismatch: sensitivity 0 with a one-sided interval
    t = stats.reader_table(y, calls).set_index("reader")
    for name, c in [*calls.items(), ("Aggregate (majority)", stats.majority(calls.to_numpy()))]:
        for metric, (k, n) in stats.binary_counts(y, c).items():
            ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
            assert t.at[name, metric] == pytest.approx(k / n)
            assert (t.at[name, f"{metric}_lo"], t.at[name, f"{metric}_hi"]) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert t.at["r2", "sensitivity_lo"] == 0 and 0 < t.at["r2", "sensitivity_hi"] < 0.1
    assert all(np.isnan(stats.proportion_ci(0, 0)))  # no trials: no interval
    boot = stats.reader_table(y, calls, n_boot=200, method="bootstrap").set_index("reader")
    assert boot.at["r1", "sensitivity"] == t.at["r1", "sensitivity"]
    with pytest.raises(ValueError, match="exact"):
        stats.reader_table(y, calls, method="wald")
