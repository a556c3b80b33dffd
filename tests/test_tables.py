"""Table 1 of our cohort beside the paper's (tss.tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tss import paper, tables


def _manifest():
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame({"split": ["train"] * 24 + ["val"] * 6 + ["test"] * 10,
                         "age": rng.integers(40, 90, n), "sex": rng.choice(["F", "M", "f", "?"], n),
                         "nihss": rng.integers(0, 30, n).astype(float), "onset_to_mri_min": rng.uniform(30, 900, n)})


def test_table1_medians_iqrs_and_female_share_match_numpy_per_group():
    m = _manifest()
    m.loc[3, "nihss"] = np.nan  # a missing value is left out, not counted as zero
    t = tables.table1(m)
    train = m[m["split"].isin(["train", "val"])]
    assert list(t.columns[:3]) == ["ours: training (train+val) (n=30)", "ours: test (n=10)", "ours: all (n=40)"]
    q1, med, q3 = np.percentile(train["onset_to_mri_min"], [25, 50, 75])
    assert t.at["Onset to MRI (min) median (IQR)", "ours: training (train+val) (n=30)"] == f"{med:.1f} ({q1:.1f}-{q3:.1f})"
    q1, med, q3 = np.percentile(train["nihss"].dropna(), [25, 50, 75])
    fmt = lambda v: f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"  # noqa: E731
    assert t.at["NIHSS median (IQR)", "ours: training (train+val) (n=30)"] == f"{fmt(med)} ({fmt(q1)}-{fmt(q3)})"
    sex = m["sex"].str.upper()
    known = sex.isin(["F", "M"])  # "?" is unknown: out of the denominator
    n_f = int((sex == "F").sum())
    assert t.at["Female n (%)", "ours: all (n=40)"] == f"{n_f} ({100 * n_f / known.sum():.0f}%)"


def test_table1_carries_the_papers_columns_as_printed():
    t = tables.table1(_manifest())
    p = paper.table1().set_index("variable")
    for ours, theirs in (("paper: training (n=340)", "training_set_n340"), ("paper: test (n=82)", "test_set_n82"),
                         ("paper: all (n=422)", "all_n422")):
        assert t[ours].equals(p[theirs].reindex(t.index))


def test_a_column_with_nothing_known_says_so_and_medians_skip_sex():
    m = _manifest().assign(nihss=np.nan, sex="?")
    t = tables.table1(m)
    assert (t.loc["NIHSS median (IQR)"].iloc[:3] == "n/a").all()
    assert (t.loc["Female n (%)"].iloc[:3] == "n/a").all()
    med = tables.medians(_manifest())
    assert set(med) == {"age", "nihss", "onset_to_mri_min"}
    assert med["age"] == float(_manifest()["age"].median())
