"""The calibration targets: our cohort's values measured the way the studies measure theirs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tss.synth import calibration


def _cohort(n=200, seed=0):
    rng = np.random.default_rng(seed)
    tss = rng.uniform(30, 900, n)
    early = tss < 270
    native = pd.DataFrame({"patient_id": [f"p{i}" for i in range(n)],
                           "flair": np.where(early, 1.05, 1.40) + rng.normal(0, 0.05, n),  # a clean FLAIR clock
                           "dwi": 1.5 + rng.normal(0, 0.2, n)})                             # no DWI clock
    calls = np.stack([early ^ (rng.random(n) < 0.1) for _ in range(3)], axis=1).astype(int)
    cohort = pd.DataFrame({"patient_id": native["patient_id"], "onset_to_mri_min": tss,
                           **{f"reader{k + 1}": calls[:, k] for k in range(3)},
                           "flair": [f"{p}/flair.nii.gz" for p in native["patient_id"]]})  # a manifest's path column
    return native, cohort, early.astype(int)


def test_each_value_is_measured_from_the_ratios_and_calls_as_scikit_learn_scores_them():
    native, cohort, y = _cohort()
    m = calibration.measure(native, cohort)
    # a fainter lesion means earlier: the AUC of the negated ratio
    assert m["flair_ratio_auc"] == pytest.approx(roc_auc_score(y, -native["flair"]))
    assert m["flair_ratio_auc"] > 0.95 and abs(m["dwi_ratio_auc"] - 0.5) < 0.1
    early = native["flair"][y == 1]
    assert m["flair_visible_early"] == pytest.approx((early > calibration.VISIBLE_FLAIR_RATIO).mean())
    majority = (cohort[["reader1", "reader2", "reader3"]].sum(axis=1) >= 2).astype(int)
    # WAKE-UP's ratios are of patients selected as mismatch: ours are of those the readers call so
    called = native["flair"][majority == 1]
    assert m["flair_ratio_mismatch_mean"] == pytest.approx(called.mean())
    assert m["flair_ratio_mismatch_sd"] == pytest.approx(called.std(ddof=1))
    assert called.mean() != pytest.approx(early.mean(), abs=1e-3)  # the readers err on some patients
    assert m["readers_sensitivity"] == pytest.approx(majority[y == 1].mean())
    assert m["readers_specificity"] == pytest.approx(1 - majority[y == 0].mean())
    assert m["n_patients"] == len(native) and m["n_early"] == y.sum()


def test_patients_are_matched_by_id_and_missing_readers_are_not_measured():
    native, cohort, _ = _cohort()
    shuffled = native.sample(frac=1, random_state=1).iloc[:150]   # another order, fewer patients
    m = calibration.measure(shuffled, cohort.drop(columns=["reader1", "reader2", "reader3"]))
    ref = calibration.measure(shuffled, cohort)
    assert m["n_patients"] == 150 and m["flair_ratio_auc"] == ref["flair_ratio_auc"]
    assert np.isnan(m["readers_kappa"]) and np.isnan(m["flair_ratio_mismatch_mean"])
    t = calibration.table(m).set_index("target")
    assert t.loc[calibration.TARGET["readers_kappa"].what, "met"] == "not measured"
    with pytest.raises(ValueError, match="columns"):
        calibration.measure(native.drop(columns=["flair"]), cohort)
    with pytest.raises(ValueError, match="no patient"):
        calibration.measure(native.assign(patient_id="x" + native["patient_id"]), cohort)


def test_the_table_says_on_which_side_of_its_range_a_value_misses():
    m = {t.key: (t.low + t.high) / 2 for t in calibration.TARGETS}
    m["dwi_ratio_auc"], m["flair_visible_early"] = 0.83, 0.19
    t = calibration.table(m).set_index("target")
    met = {k: t.loc[calibration.TARGET[k].what, "met"] for k in calibration.TARGET}
    assert met.pop("dwi_ratio_auc") == "no: above" and met.pop("flair_visible_early") == "no: below"
    assert set(met.values()) == {"yes"}
    # the range's bounds belong to it
    assert calibration.TARGET["readers_kappa"].met(0.35) and not calibration.TARGET["readers_kappa"].met(0.349)
