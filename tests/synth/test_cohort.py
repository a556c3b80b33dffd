"""Sampling the cohort (tss.synth.cohort): determinism, the FLAIR dynamics, the oracle, clinical
calibration, the split, the readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from tss import tables
from tss.paper import TSS_45H_MIN
from tss.synth import cohort


def test_cohort_table_is_deterministic_for_a_seed():
    a, b = cohort.sample_patients(50, seed=7), cohort.sample_patients(50, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a["onset_to_mri_min"].equals(cohort.sample_patients(50, seed=8)["onset_to_mri_min"])


def test_flair_rises_with_tss_on_average_over_the_population():
    plans = cohort.sample_patients(2000, seed=0)
    early = plans[plans["onset_to_mri_min"] < 180]["latent_t2_increase"].mean()
    late = plans[plans["onset_to_mri_min"] > 360]["latent_t2_increase"].mean()
    assert late > 3 * early
    assert spearmanr(plans["onset_to_mri_min"], plans["latent_t2_increase"]).statistic > 0.5


def test_oracle_auc_within_target():
    assert 0.80 <= cohort.population_oracle_auc(n=50_000) <= 0.95


def test_tss_median_and_iqr_near_the_papers():
    t = cohort.sample_tss(np.random.default_rng(0), 20_000)
    q1, med, q3 = np.percentile(t, [25, 50, 75])
    assert abs(med / 222 - 1) < 0.05
    assert abs(q1 / 105 - 1) < 0.10
    assert abs(q3 / 715.25 - 1) < 0.10


def test_table1_medians_within_ten_percent_at_paper_size():
    plans = cohort.sample_patients(422, seed=0)
    med = tables.medians(plans)
    for col, target in (("age", 70), ("nihss", 8), ("onset_to_mri_min", 222)):
        assert abs(med[col] / target - 1) <= 0.10, (col, med[col])
    assert abs((plans["sex"] == "F").mean() - 222 / 422) < 0.07
    t1 = tables.table1(plans)
    assert t1.shape == (4, 6) and t1.index[0].startswith("Age")


def test_split_is_64_16_20_stratified_and_disjoint():
    plans = cohort.sample_patients(422, seed=0)
    frac = plans["split"].value_counts(normalize=True)
    assert abs(frac["train"] - 0.64) < 0.01 and abs(frac["val"] - 0.16) < 0.01 and abs(frac["test"] - 0.20) < 0.01
    assert plans["patient_id"].is_unique
    y = plans["onset_to_mri_min"] < TSS_45H_MIN
    by = plans.assign(y=y).groupby("split")["y"].mean()
    assert by.max() - by.min() < 0.03
    # fixed by the seed
    np.testing.assert_array_equal(plans["split"], cohort.sample_patients(422, seed=0)["split"])


def test_readers_differ_in_threshold_and_are_deterministic():
    plans = cohort.sample_patients(400, seed=1)
    lat = plans.assign(flair_ratio=1 + 0.8 * plans["latent_t2_increase"], lesion_ml=plans["lesion_ml_planned"])
    a, b = cohort.simulate_readers(lat, 1), cohort.simulate_readers(lat, 1)
    pd.testing.assert_frame_equal(a, b)
    rate = a.mean()
    assert rate["reader3"] > rate["reader1"] > rate["reader2"]  # R3 calls mismatch most, R2 least


def test_the_first_cohorts_patients_and_cache_keys_do_not_change_with_new_neutral_parameters():
    """Parameters added for other variants are neutral at the first cohort's values: the committed
    lowres cohort's latent truth is drawn again exactly, and a patient's cache key is the one it had
    before they existed (so its rendered images stay valid)."""
    from pathlib import Path

    from tss import synth
    from tss.synth.params import NEUTRAL, PARAMS

    assert all(PARAMS[k].value == v for k, v in NEUTRAL.items())
    committed = Path(__file__).resolve().parents[2] / "results" / "lowres" / "cohort" / "latent.csv"
    old = pd.read_csv(committed)
    new = cohort.sample_patients(len(old), 0)
    for col in ("onset_to_mri_min", "adc_drop", "latent_t2_increase", "latent_adc_ratio"):
        np.testing.assert_allclose(new[col], old[col], rtol=1e-6, err_msg=col)
    plan = {"patient_id": "sub-0001", "onset_to_mri_min": 301.1, "age": 87, "territory": "lacunar",
            "stroke_side": "right", "lesion_ml_planned": 0.311, "adc_drop": 0.42, "field_T": 1.5,
            "latent_t2_increase": 0.079}
    assert synth._cache_key(plan, 0, 0) == "36c70b869fe25af7"  # computed before adc_per_t2_increase existed
