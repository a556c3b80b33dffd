"""Results from result files: Table 2 rows, relative gains, the paper's claims against its table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tss import reproduction, results, stats
from tss.results import READERS


def _fake_run(root, experiment, seed, rng, n_val=20, n_test=30, signal=1.0):
    d = root / f"seed{seed}" / experiment
    d.mkdir(parents=True)
    rows = []
    for split, n in (("val", n_val), ("test", n_test)):
        y = (np.arange(n) % 2).astype(float)
        p = 1 / (1 + np.exp(-(signal * (y - 0.5) + rng.normal(size=n))))
        rows += [{"patient_id": f"{split}{i:03d}", "prob": p[i], "target": y[i], "split": split,
                  "onset_to_mri_min": 100, "n_hemispheres": 1} for i in range(n)]
    pd.DataFrame(rows).to_csv(d / "patients.csv", index=False)
    (d / "summary.json").write_text(json.dumps({"experiment": experiment, "seed": seed}))
    return pd.DataFrame(rows)


def test_table2_rows_hold_our_metrics_beside_the_papers(tmp_path):
    rng = np.random.default_rng(0)
    preds = {s: _fake_run(tmp_path, "2d-tss45-transfer", s, rng) for s in (0, 1)}
    (tmp_path / "seed0" / "2d-tss45-imagenet").mkdir(parents=True)
    (tmp_path / "seed0" / "2d-tss45-imagenet" / "skipped.json").write_text(json.dumps({"skipped": "no weights file"}))
    t = results.table2(tmp_path, n_boot=200, profile="quick")
    raw = t.attrs["raw"].set_index("experiment")
    assert len(t) == len(results.paper.table2())

    row = raw.loc["2d-tss45-transfer"]
    test0 = preds[0].query("split == 'test'")
    assert row["auc"] == pytest.approx(roc_auc_score(test0["target"], test0["prob"]))
    val0 = preds[0].query("split == 'val'")
    assert row["threshold_val"] == stats.youden_threshold(val0["target"], val0["prob"])
    per_seed = [roc_auc_score(p.query("split == 'test'")["target"], p.query("split == 'test'")["prob"]) for p in preds.values()]
    assert row["auc_seeds_mean"] == pytest.approx(np.mean(per_seed))
    assert row["n_seeds"] == 2

    shown = t.set_index(t.attrs["raw"]["experiment"])
    assert shown.loc["2d-tss45-transfer", "paper AUC"] == "0.74"   # the paper's Phase 3, 2D, Phase 2 row
    paper_auc = results.paper_aucs()[("2d", "tss45", "transfer")]
    assert shown.loc["2d-tss45-transfer", "ours - paper"] == f"{row['auc'] - paper_auc:+.2f}"
    assert shown.loc["2d-tss45-imagenet", "ours - paper"] == ""
    assert "no weights file" in shown.loc["2d-tss45-imagenet", "ours"]
    assert "not run" in shown.loc["3d-tss3-random", "ours"]
    assert shown.loc["3d-stroke-genesis", "paper weights"] == "Random"  # our 3D stroke phase starts from Genesis


def test_relative_gains_and_the_papers_claims_checked_against_its_own_table():
    assert results.gain_pct(0.7407, 0.6311) == pytest.approx(17.37, abs=0.01)
    claims = results.paper_gain_claims().set_index(["where", "arch"])["consistent"]
    # phase 4: the text's 17.4% and 25.7% are the gains over training from scratch
    assert claims[("Section 3, phase 4", "2D")] == "yes: over random"
    assert claims[("Section 3, phase 4", "3D")] == "yes: over random"
    # the Fig. 7 caption's 22.1% for the 2D model is the gain over ImageNet, not over random (17.1%)
    assert claims[("Fig. 7 caption and section 3", "2D")] == "yes: over imagenet"
    assert claims[("Section 3, phase 3 (ours)", "2D")] == "yes: over random"
    # the text swaps the medical-pretraining gains of the two models (12.9% is the 3D one)
    assert claims[("Section 3, phase 3 (medical)", "2D")] == "no"
    assert claims[("Section 3, phase 3 (medical)", "3D")] == "no"
    g = results.gains(results.paper_aucs())
    med3d = g[(g["arch"] == "3d") & (g["phase"] == "tss45") & (g["init"] == "medical") & (g["over"] == "random")]
    assert med3d["gain_pct"].iloc[0] == pytest.approx(12.9, abs=0.05)


def test_our_gains_sit_beside_the_papers_for_the_same_comparison_with_delong_p(tmp_path):
    rng = np.random.default_rng(2)
    a = _fake_run(tmp_path, "2d-tss45-transfer", 0, rng, n_test=80, signal=3.0)
    b = _fake_run(tmp_path, "2d-tss45-random", 0, rng, n_test=80, signal=0.5)
    raw = results.table2(tmp_path, n_boot=20, profile="quick").attrs["raw"]
    g = results.gains_table(raw, tmp_path).set_index(["arch", "phase", "init", "over"])
    row = g.loc[("2d", "tss45", "transfer", "random")]
    ta, tb = a.query("split == 'test'"), b.query("split == 'test'")
    auc_a, auc_b = roc_auc_score(ta["target"], ta["prob"]), roc_auc_score(tb["target"], tb["prob"])
    assert row["gain % (ours)"] == pytest.approx(results.gain_pct(auc_a, auc_b))
    pap = results.paper_aucs()
    assert row["gain % (paper's table)"] == pytest.approx(results.gain_pct(pap[("2d", "tss45", "transfer")],
                                                                           pap[("2d", "tss45", "random")]))
    assert row["DeLong p"] == pytest.approx(results.delong_vs(tmp_path, "2d-tss45-transfer", "2d-tss45-random")["p"])
    assert len(g) == 1  # only comparisons of runs that exist, only gains of transfer and medical


def test_a_tss_model_that_repeats_its_stroke_detector_is_found_out(tmp_path):
    rng = np.random.default_rng(4)
    det = tmp_path / "seed0" / "2d-stroke-random"
    det.mkdir(parents=True)
    n = 60
    pid = [f"p{i:02d}" for i in range(n)]
    split = np.where(np.arange(n) < 30, "val", "test")
    stroke = rng.uniform(size=n)
    hemis = pd.concat([pd.DataFrame({"patient_id": pid, "hemisphere": "left", "split": split, "label": 1, "prob": stroke}),
                       pd.DataFrame({"patient_id": pid, "hemisphere": "right", "split": split, "label": 0,
                                     "prob": rng.uniform(size=n)})])
    hemis.to_csv(det / "predictions.csv", index=False)
    (det / "summary.json").write_text("{}")
    tss = tmp_path / "seed0" / "2d-tss45-transfer"
    tss.mkdir(parents=True)
    target = (np.arange(n) % 2).astype(float)
    pd.DataFrame({"patient_id": pid, "split": split, "target": target,
                  "prob": stroke + 0.01 * rng.normal(size=n)}).to_csv(tss / "patients.csv", index=False)
    (tss / "summary.json").write_text("{}")
    r = results.inherited_ranking(tmp_path, ["2d-tss45-transfer", "2d-tss3-transfer"]).set_index("split")
    assert list(r["experiment"].unique()) == ["2d-tss45-transfer"]   # the run that is missing is left out
    assert (r["spearman"] > 0.99).all() and (r["n"] == 30).all()
    test = split == "test"
    assert r.at["test", "detector_auc"] == pytest.approx(roc_auc_score(target[test], stroke[test]))
    assert r.at["test", "auc"] == pytest.approx(r.at["test", "detector_auc"], abs=0.05)


def test_reader_rows_match_binary_metrics_on_the_test_split():
    rng = np.random.default_rng(3)
    n = 60
    m = pd.DataFrame({"patient_id": [f"p{i}" for i in range(n)], "split": ["test"] * 40 + ["train"] * 20,
                      "onset_to_mri_min": rng.uniform(30, 600, n),
                      **{f"reader{k}": rng.integers(0, 2, n) for k in (1, 2, 3)}})
    t = results.reader_metrics(m, n_boot=100).set_index("reader")
    test = m[m["split"] == "test"]
    y = (test["onset_to_mri_min"] < 270).astype(int)
    assert t.loc["Reader 2", "sensitivity"] == pytest.approx(stats.binary_metrics(y, test["reader2"])["sensitivity"])
    maj = stats.majority(test[["reader1", "reader2", "reader3"]].to_numpy())
    assert t.loc["Aggregate (majority)", "accuracy"] == pytest.approx(stats.binary_metrics(y, maj)["accuracy"])
    assert t.attrs["fleiss_kappa"] == pytest.approx(stats.fleiss_kappa(test[["reader1", "reader2", "reader3"]].to_numpy()))
    assert (t["n"] == 40).all()


def test_delong_between_two_runs_pairs_the_same_patients(tmp_path):
    rng = np.random.default_rng(1)
    a = _fake_run(tmp_path, "2d-tss3-transfer", 0, rng, signal=3.0)
    b = _fake_run(tmp_path, "2d-tss3-random", 0, rng, signal=0.0)
    r = results.delong_vs(tmp_path, "2d-tss3-transfer", "2d-tss3-random")
    ta, tb = a.query("split == 'test'"), b.query("split == 'test'")
    assert r["auc1"] == pytest.approx(roc_auc_score(ta["target"], ta["prob"]))
    assert r["auc2"] == pytest.approx(roc_auc_score(tb["target"], tb["prob"]))
    assert np.isnan(results.delong_vs(tmp_path, "2d-tss3-transfer", "2d-tss3-medical")["p"])


def test_verdicts_say_only_what_the_data_carry():
    assert reproduction.verdict(0.1, 0.01) == "reproduced"
    assert reproduction.verdict(-0.1, 0.001) == "not reproduced"  # a significant difference the other way
    assert reproduction.verdict(0.1, 0.3) == reproduction.verdict(-0.1, 0.3) == reproduction.verdict(0.0, 1.0) == "inconclusive"
    assert reproduction.verdict(np.nan, np.nan) == "not run"
    assert set(reproduction.VERDICTS) >= {"reproduced", "not reproduced", "inconclusive", "not testable", "not run"}


def test_the_chance_band_of_an_auc_matches_scores_unrelated_to_the_label():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30), np.zeros(38)]
    null = [roc_auc_score(y, rng.normal(size=len(y))) for _ in range(4000)]
    assert stats.chance_auc_upper(30, 38) == pytest.approx(np.quantile(null, 0.975), abs=0.01)
    assert stats.chance_auc_upper(300, 380) < stats.chance_auc_upper(30, 38)  # more cases, a narrower band
    assert np.isnan(stats.chance_auc_upper(0, 38))


def test_learned_is_the_validation_auc_above_the_chance_band_and_unknown_counts_as_learned():
    y = np.r_[np.ones(30), np.zeros(38)]
    upper = stats.chance_auc_upper(30, 38)
    good = stats.learned(y, y + np.random.default_rng(0).normal(0, 0.3, len(y)))
    assert good["learned"] and good["val_auc"] > upper and good["chance_upper"] == upper
    assert not stats.learned(y, np.r_[np.zeros(30), np.ones(38)])["learned"]  # ranked backwards
    assert stats.learned(np.ones(5), np.arange(5.0))["learned"]  # one class: no AUC, no evidence against


def test_the_detectable_difference_is_detected_with_the_stated_power():
    from scipy.stats import norm

    se = 0.05
    d = stats.detectable_difference(se, alpha=0.05, power=0.8)
    power = norm.sf(norm.ppf(0.975) - d / se) + norm.cdf(-norm.ppf(0.975) - d / se)
    assert power == pytest.approx(0.8, abs=1e-6) and d == pytest.approx(2.80 * se, abs=0.002)


def test_a_claim_resting_on_a_model_that_did_not_learn_is_not_testable(tmp_path):
    rng = np.random.default_rng(3)
    _fake_run(tmp_path, "2d-tss45-transfer", 0, rng, n_val=80, n_test=80, signal=-0.1)  # nothing to learn from
    _fake_run(tmp_path, "2d-tss45-random", 0, rng, n_val=80, n_test=80, signal=4.0)
    flat = reproduction.learned(tmp_path, "2d-tss45-transfer", 0)
    assert not flat["learned"] and flat["val_auc"] < flat["chance_upper"] < 0.65
    assert reproduction.learned(tmp_path, "2d-tss45-random", 0)["learned"]
    c = reproduction.compare_claim(tmp_path, "2d-tss45-transfer", "2d-tss45-random")
    assert c["verdict"] == "not testable" and "2d-tss45-transfer did not learn (validation AUC" in c["ours"]
    assert "2d-tss45-random did not" not in c["ours"]


def test_an_insignificant_difference_is_inconclusive_with_what_could_have_been_detected(tmp_path):
    rng = np.random.default_rng(4)
    for e in ("2d-tss45-transfer", "2d-tss45-random"):
        _fake_run(tmp_path, e, 0, rng, n_val=80, n_test=40, signal=2.0)
    c = reproduction.compare_claim(tmp_path, "2d-tss45-transfer", "2d-tss45-random")
    r = results.delong_vs(tmp_path, "2d-tss45-transfer", "2d-tss45-random")
    assert r["p"] >= 0.05 and c["verdict"] == "inconclusive"
    assert f"detectable difference {stats.detectable_difference(r['se']):.2f} (80% power)" in c["ours"]


def test_a_clone_without_images_reads_the_cohort_tables_committed_with_the_results(tmp_path):
    from tss import results as res

    cohort = tmp_path / "data" / "synthetic-lowres"
    cohort.mkdir(parents=True)
    (cohort / "manifest.csv").write_text("patient_id,split\nsub-0001,test\n")
    (cohort / "latent.csv").write_text("patient_id,oracle_score\nsub-0001,0.5\n")
    root = tmp_path / "results"
    written = res.record_cohort(cohort, root / "lowres" / "cohort")
    assert [p.name for p in written] == ["manifest.csv", "latent.csv"]
    assert res.cohort_tables(root, "lowres") == cohort  # the cohort itself while it is here
    for f in cohort.iterdir():
        f.unlink()
    here = res.cohort_tables(root, "lowres")  # a clone: only the committed copies
    assert here == root / "lowres" / "cohort"
    assert (here / "manifest.csv").read_text() == "patient_id,split\nsub-0001,test\n"


def test_the_book_shows_the_largest_profile_that_has_runs(tmp_path):
    from tss import results as res

    assert res.profile_of(tmp_path) is None
    for p in ("quick", "lowres"):
        (tmp_path / p / "runs" / "seed0" / "2d-stroke-random").mkdir(parents=True)
        (tmp_path / p / "runs" / "seed0" / "2d-stroke-random" / "summary.json").write_text("{}")
    assert res.profile_of(tmp_path) == "lowres"
    assert res.profile_of(tmp_path, ["full", "quick"]) == "quick"


def test_a_claim_says_how_many_seeds_it_rests_on_and_how_many_agree(tmp_path):

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    for seed, gap in ((0, 2.0), (1, 2.0), (2, -2.0)):  # "better" wins on seeds 0 and 1, loses on 2
        for exp, signal in (("2d-tss45-transfer", gap), ("2d-tss45-random", 0.0)):
            d = tmp_path / f"seed{seed}" / exp
            d.mkdir(parents=True)
            (d / "summary.json").write_text("{}")
            prob = 1 / (1 + np.exp(-(signal * (y - 0.5) + rng.normal(size=len(y)))))
            pd.DataFrame({"patient_id": [f"p{i}" for i in range(len(y))], "split": "test", "target": y,
                          "prob": prob}).to_csv(d / "patients.csv", index=False)
    c = reproduction.compare_claim(tmp_path, "2d-tss45-transfer", "2d-tss45-random")
    assert c["seeds"] == 3 and "higher in 2 of 3 seeds" in c["ours"]
    assert c["verdict"] == "reproduced"  # seed 0: a large, significant gap
    one = reproduction.compare_claim(tmp_path, "2d-tss45-transfer", "2d-tss45-imagenet")
    assert one == {"ours": "not run", "verdict": "not run", "seeds": 0}


def test_table2_splits_into_an_auc_table_and_an_operating_point_table_that_keeps_the_readers():
    from tss import results as res

    t2 = pd.DataFrame({"stage": ["Phase 3", "Phase 3", "DWI-FLAIR mismatch"], "task": "TSS < 4.5 h",
                       "model": ["2D", "2D", "Radiologist 1"], "paper weights": ["Random", "ImageNet", ""],
                       "ours": ["Random", "weights not found", "Simulated reader 1"], "n test": "85 patients",
                       "AUC (95% CI)": ["0.60 (0.48-0.72)", np.nan, np.nan], "AUC over seeds": np.nan,
                       "sens @val thr": ["0.5 (0.3-0.7)", np.nan, "0.67 (0.5-0.8)"], "spec @test-opt": ["0.6", np.nan, np.nan],
                       "paper AUC": [0.61, 0.62, np.nan], "paper sens": 0.5, "paper spec": 0.6, "paper acc": 0.55})
    auc, ops = res.table2_parts(t2)
    assert len(auc) == 3 and "sens @val thr" not in auc and "paper AUC" in auc
    assert ops["model"].tolist() == ["2D", "Radiologist 1"]  # the ImageNet row without results is left out
    assert "AUC (95% CI)" not in ops and "paper sens" in ops
    with_diff, _ = res.table2_parts(t2.assign(**{"paper AUC": ["0.61", "0.62", ""], "ours - paper": ["-0.01", "", ""]}))
    assert with_diff["paper AUC (ours - paper)"].tolist() == ["0.61 (-0.01)", "0.62", ""]  # one column, narrow


def test_reader_report_formats_each_readers_metrics_and_their_majority():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    calls = pd.DataFrame({r: np.where(rng.random(60) < 0.8, y, 1 - y) for r in results.READERS})
    calls["reader3"] = 1  # calls mismatch for everyone: sensitivity 1, specificity 0
    t = results.reader_report(y, calls, n_boot=200, seed=0)
    assert t["reader"].tolist() == ["Reader 1", "Reader 2", "Reader 3", "Aggregate (majority)"]
    raw = stats.reader_table(y, calls, n_boot=200, seed=0)
    for _i, m in enumerate(("sensitivity", "specificity", "accuracy")):
        assert t[m].iloc[0] == stats.with_ci(raw[m].iloc[0], (raw[f"{m}_lo"].iloc[0], raw[f"{m}_hi"].iloc[0]))
    assert t["sensitivity"].iloc[2].startswith("1.00") and t["specificity"].iloc[2].startswith("0.00")
    majority = stats.majority(calls.to_numpy())
    assert t["accuracy"].iloc[3].startswith(f"{np.mean(majority == y):.2f}")


def test_a_model_reaches_the_papers_auc_when_above_it_or_when_its_interval_holds_it():
    by = pd.DataFrame([
        {"experiment": "above", "status": "ok", "auc": 0.93, "auc_lo": 0.90, "auc_hi": 0.96, "n": 170,
         "level": "hemisphere", "n_seeds": 1},
        {"experiment": "holds", "status": "ok", "auc": 0.85, "auc_lo": 0.78, "auc_hi": 0.91, "n": 85,
         "level": "patient", "n_seeds": 2, "auc_seeds_mean": 0.812, "auc_seeds_sd": 0.049},
        {"experiment": "below", "status": "ok", "auc": 0.70, "auc_lo": 0.60, "auc_hi": 0.80, "n": 85,
         "level": "patient", "n_seeds": 1},
        {"experiment": "skipped", "status": "no weights", "auc": np.nan, "auc_lo": np.nan, "auc_hi": np.nan, "n": 0,
         "level": "patient", "n_seeds": 0},
    ]).set_index("experiment")
    assert reproduction.reaches_paper(by, "above", 0.89)["verdict"] == "reproduced"
    holds = reproduction.reaches_paper(by, "holds", 0.89)
    assert holds["verdict"] == "reproduced" and holds["seeds"] == 2 and "85 test patients" in holds["ours"]
    assert holds["ours"].endswith("2 seeds: 0.81 ± 0.05")  # the second seed's spread beside the first's verdict
    assert "seeds:" not in reproduction.reaches_paper(by, "above", 0.89)["ours"]
    assert reproduction.reaches_paper(by, "below", 0.89)["verdict"].startswith("not reproduced")
    assert reproduction.reaches_paper(by, "skipped", 0.89)["verdict"] == "not run"
    assert reproduction.reaches_paper(by, "absent", 0.89) == {"ours": "not run", "verdict": "not run", "seeds": 0}


def test_results_pages_show_the_largest_profile_with_runs_and_its_own_folders(tmp_path):
    root = tmp_path / "results"
    (root / "quick" / "runs" / "seed0" / "2d-stroke-random").mkdir(parents=True)
    (root / "quick" / "runs" / "seed0" / "2d-stroke-random" / "summary.json").write_text("{}")
    mine = results.shown_profile(root, "quick", cohort_dir=tmp_path / "c", cache_dir=tmp_path / "cache")
    assert mine.shown == "quick" and mine.cache_dir == tmp_path / "cache" and mine.out_dir.is_dir()
    assert mine.cohort_dir == root / "quick" / "cohort"  # no manifest in the given folder: the committed copies
    (root / "lowres" / "runs" / "seed0" / "x").mkdir(parents=True)
    (root / "lowres" / "runs" / "seed0" / "x" / "summary.json").write_text("{}")
    other = results.shown_profile(root, "quick", cohort_dir=tmp_path / "c", cache_dir=tmp_path / "cache")
    assert other.shown == "lowres" and other.runs_dir == root / "lowres" / "runs"
    assert other.cache_dir == root / "lowres" / "cache" / "preprocess"  # the parameters are the quick profile's
    assert other.out_dir == root / "lowres" / "results" and other.out_dir.is_dir()


# ------------------------------------------------------------------------------------------------
# the Reproduction page's claims (tss.reproduction)


def _manifest(patients: pd.DataFrame, reader_calls) -> pd.DataFrame:
    m = patients[["patient_id", "split"]].copy()
    for r, calls in zip(READERS, reader_calls):
        m[r] = calls
    m["onset_to_mri_min"] = np.where(patients["target"] == 1, 100.0, 400.0)
    return m


def test_sensitivity_claim_pairs_model_and_majority_reader_on_the_same_positive_patients():
    pid = [f"p{i}" for i in range(8)]
    patients = pd.DataFrame({"patient_id": pid, "split": ["test"] * 6 + ["val"] * 2,
                             "target": [1, 1, 1, 1, 0, 0, 1, 1], "prob": [0.9, 0.8, 0.2, 0.7, 0.9, 0.1, 0.9, 0.9]})
    # majority of three readers on the 4 test positives: 1, 0, 0, 0 (reader 3 never decides alone)
    calls = [[1, 0, 0, 0, 1, 1, 1, 1], [1, 0, 0, 1, 0, 0, 1, 1], [0, 1, 1, 0, 1, 1, 1, 1]]
    row = reproduction.sensitivity_vs_readers(patients, 0.5, _manifest(patients, calls), n_boot=200)
    # model: 3 of 4 test positives at threshold 0.5; reader majority: 1 of 4
    assert row["ours"].startswith("0.75 vs 0.25 (difference +0.50")
    assert row["verdict"] in ("reproduced", "inconclusive")
    flipped = reproduction.sensitivity_vs_readers(patients.assign(prob=1 - patients["prob"]), 0.5,
                                                  _manifest(patients, calls), n_boot=200)
    # no difference on 4 patients: inconclusive, not "not reproduced"
    assert flipped["ours"].startswith("0.25 vs 0.25") and flipped["verdict"] == "inconclusive"
    assert "detectable difference" in flipped["ours"]
    flat = reproduction.sensitivity_vs_readers(patients, 0.5, _manifest(patients, calls), n_boot=200,
                                               not_learned="m did not learn")
    assert flat["verdict"] == "not testable" and flat["ours"].endswith("m did not learn")


def test_sensitivity_against_the_readers_is_not_reproduced_only_when_the_readers_are_significantly_better():
    n = 60
    patients = pd.DataFrame({"patient_id": [f"p{i}" for i in range(n)], "split": "test", "target": 1,
                             "prob": np.r_[np.full(10, 0.9), np.full(n - 10, 0.1)]})
    readers_see_all = [[1] * n] * 3
    row = reproduction.sensitivity_vs_readers(patients, 0.5, _manifest(patients, readers_see_all), n_boot=300)
    assert row["ours"].startswith("0.17 vs 1.00") and row["verdict"] == "not reproduced"
    better = reproduction.sensitivity_vs_readers(patients.assign(prob=1 - patients["prob"]), 0.5,
                                                 _manifest(patients, [[0] * n] * 3), n_boot=300)
    assert better["verdict"] == "reproduced"


def test_lee_share_and_gradcam_and_kappa_claims_read_their_tables():
    few = pd.DataFrame({"usable": [True] * 3 + [False] * 7})
    assert reproduction.lee_share_claim(few)["verdict"] == "reproduced"
    assert "30% usable (3 of 10)" in reproduction.lee_share_claim(few)["ours"]
    assert reproduction.lee_share_claim(pd.DataFrame({"usable": [True] * 9 + [False]}))["verdict"].startswith("not")

    cams = pd.DataFrame({"hit_rate": [0.2, 0.95], "hit rate (95% CI)": ["0.20 (0.1-0.3)", "0.95 (0.9-1.0)"]},
                        index=["2d-attention-transfer", "3d-attention-transfer"])
    assert reproduction.gradcam_claim(cams)["verdict"] == "reproduced"
    assert reproduction.gradcam_claim(cams.iloc[:1])["verdict"] == "not reproduced"
    assert reproduction.gradcam_claim(cams.iloc[:1], not_learned="x did not learn")["verdict"] == "not testable"

    m = pd.DataFrame({"split": ["test"] * 6 + ["train"], "reader1": [1, 0, 1, 0, 1, 1, 0],
                      "reader2": [1, 0, 1, 1, 1, 0, 1], "reader3": [1, 0, 0, 0, 1, 1, 1]})
    k = stats.fleiss_kappa(m.query("split == 'test'")[READERS].to_numpy())
    assert reproduction.kappa_claim(m)["ours"].startswith(f"kappa {k:.2f} (test split); ")
    assert reproduction.kappa_claim(m)["verdict"] == ("by construction" if 0.35 <= k <= 0.55 else "off its target")
    agree = m.assign(reader2=m["reader1"], reader3=m["reader1"])  # kappa 1: outside the readers' target
    assert reproduction.kappa_claim(agree)["verdict"] == "off its target"


def test_claims_table_has_every_claim_once_with_verdicts_from_the_runs_present(tmp_path):
    rng = np.random.default_rng(1)
    strong = _fake_run(tmp_path, "2d-tss45-transfer", 0, rng, n_val=40, n_test=200, signal=4.0)
    _fake_run(tmp_path, "2d-tss45-random", 0, rng, n_val=40, n_test=200, signal=0.0)
    _fake_run(tmp_path, "2d-attention-transfer", 0, rng, n_val=40, n_test=200, signal=4.0)
    raw = results.table2(tmp_path, n_boot=50, profile="quick").attrs["raw"]
    calls = [(1 - strong["target"]).astype(int)] * 3   # the readers call "< 4.5 h" on negatives only: sensitivity 0
    table = reproduction.claims(tmp_path, raw, lee_dir=tmp_path / "no-lee", manifest=_manifest(strong, calls), n_boot=100)

    assert table["claim"].is_unique and set(table.columns) == {"claim", "paper", "ours", "verdict", "seeds", "detectable"}
    by = table.set_index("claim")["verdict"]
    assert by["TSS < 4.5 h, 2D: task-adaptive transfer beats random initialisation"] == "reproduced"
    assert by["TSS < 3 h, 2D: task-adaptive transfer beats random initialisation"] == "not run"
    assert by["The model is more sensitive than the DWI-FLAIR mismatch reads (aggregate reader)"] == "reproduced"
    assert by["The phase 4 2D model beats the Lee et al. ML method (on the ML method's subset)"] == "not run"
    assert table.set_index("claim").at["Readers agree moderately (Fleiss' kappa 0.46)", "seeds"] == "-"
    assert reproduction.counts(table).endswith(f"of {len(table)} claims")
    with pytest.raises(KeyError):  # no Lee predictions: no usable-share claim
        by["Lee et al.'s ROI is stringent: only about half the patients (221 of 422) have one large enough"]


def test_lesion_measures_of_the_latent_table_score_tss_on_one_split(tmp_path):
    rng = np.random.default_rng(5)
    n = 40
    onset = rng.uniform(30, 600, n)
    m = pd.DataFrame({"patient_id": [f"p{i}" for i in range(n)], "split": ["test"] * 30 + ["val"] * 10,
                      "onset_to_mri_min": onset})
    # FLAIR brightens with time: as a score for "early", it ranks backwards
    pd.DataFrame({"patient_id": m["patient_id"], "split": "stale", "flair_ratio": onset / 600 + rng.normal(0, 0.05, n),
                  "lesion_ml": rng.uniform(0, 50, n)}).to_csv(tmp_path / "latent.csv", index=False)
    fa = results.feature_aucs(tmp_path / "latent.csv", m).set_index("column")
    test = m["split"] == "test"
    y = (onset[test] < 270).astype(int)
    assert fa.at["flair_ratio", "auc"] == pytest.approx(roc_auc_score(y, onset[test] / 600 + 0), abs=0.1)
    assert fa.at["flair_ratio", "auc"] < 0.2 and (fa["n"] == 30).all()
    assert set(fa.index) == {"flair_ratio", "lesion_ml"}   # measures the table lacks are left out


def test_the_results_command_writes_the_pages_tables_from_a_profiles_runs(tmp_path, capsys):
    from tss.cli import main as cli

    assert cli(["results", "--profile", "quick", "--results-root", str(tmp_path)]) == 2
    assert "no finished training run" in capsys.readouterr().err
    rng = np.random.default_rng(6)
    runs = tmp_path / "quick" / "runs"
    _fake_run(runs, "2d-tss45-transfer", 0, rng, signal=3.0)
    _fake_run(runs, "2d-tss45-random", 0, rng, signal=0.0)
    assert cli(["results", "--profile", "quick", "--results-root", str(tmp_path), "--n-boot", "30"]) == 0
    out = tmp_path / "quick" / "results"
    assert {p.name for p in out.glob("*.csv")} == {"table2.csv", "table2_raw.csv", "paper_gain_claims.csv", "gains.csv",
                                                  "inherited.csv", "reproduction.csv"}
    raw = pd.read_csv(out / "table2_raw.csv").set_index("experiment")
    assert raw.at["2d-tss45-transfer", "auc"] == pytest.approx(results.table2(runs, n_boot=30).attrs["raw"]
                                                               .set_index("experiment").at["2d-tss45-transfer", "auc"])
    claims = pd.read_csv(out / "reproduction.csv").set_index("claim")["verdict"]
    assert claims["TSS < 4.5 h, 2D: task-adaptive transfer beats random initialisation"] != "not run"
    assert "reproduction (quick):" in capsys.readouterr().out


def test_the_findings_box_is_computed_from_the_claims_and_table2():
    table = pd.DataFrame([
        {"claim": "A holds", "verdict": "reproduced", "ours": "x", "detectable": np.nan},
        {"claim": "B fails", "verdict": "not reproduced", "ours": "x", "detectable": np.nan},
        {"claim": "C unclear", "verdict": "inconclusive", "ours": "x", "detectable": 0.21},
        {"claim": "D unclear", "verdict": "inconclusive", "ours": "x", "detectable": 0.25},
        {"claim": "E flat", "verdict": "not testable", "ours": "0.4 vs 0.5; 2d-tss45-transfer did not learn (v)",
         "detectable": np.nan},
        {"claim": "F kappa", "verdict": "off its target", "ours": "x", "detectable": np.nan},
    ])
    raw = pd.DataFrame([
        {"experiment": "2d-tss45-transfer", "status": "ok", "auc": 0.36, "auc_lo": 0.25, "auc_hi": 0.48, "n": 85, "n_seeds": 2},
        {"experiment": "3d-tss45-medical", "status": "ok", "auc": 0.69, "auc_lo": 0.57, "auc_hi": 0.80, "n": 85, "n_seeds": 1},
        {"experiment": "2d-stroke-random", "status": "ok", "auc": 0.95, "auc_lo": 0.9, "auc_hi": 0.99, "n": 170, "n_seeds": 2},
        {"experiment": "lee-et-al-2020", "status": "ok", "auc": 0.93, "auc_lo": 0.86, "auc_hi": 0.99, "n": 56, "n_seeds": np.nan},
    ])
    box = reproduction.findings(table, raw, "lowres", 422, link="generated/10_reproduction")
    assert "lowres profile: 422 patients, 85 test patients, 1-2 training seeds per run" in box
    assert "best deep model (3d-tss45-medical) reaches test AUC 0.69 (0.57-0.80)" in box  # not the stroke detector
    assert "Lee et al. radiomics baseline 0.93 (0.86-0.99) on the 56 test patients" in box
    assert "**Held (1):** A holds." in box and "**Did not hold (1):** B fails." in box
    assert "(2):** C unclear; D unclear (differences up to 0.25 can go undetected" in box
    assert "within chance: 2d-tss45-transfer)" in box and "**Off its target (1):** F kappa." in box
    assert box.endswith("[Reproduction](generated/10_reproduction).")


def test_reference_aucs_are_the_lee_baseline_and_the_oracle_on_the_test_split(tmp_path):
    root = tmp_path / "lowres"
    (root / "baselines" / "lee").mkdir(parents=True)
    (root / "cohort").mkdir()
    lee = pd.DataFrame({"patient_id": [f"p{i}" for i in range(8)], "split": ["test"] * 6 + ["val"] * 2,
                        "usable": [True] * 5 + [False] * 3, "target": [1, 0, 1, 0, 1, 1, 0, 1],
                        "prob": [0.9, 0.2, 0.4, 0.5, 0.8, 0.1, 0.3, 0.3]})
    lee.to_csv(root / "baselines" / "lee" / "predictions.csv", index=False)
    man = pd.DataFrame({"patient_id": [f"p{i}" for i in range(6)], "split": ["test"] * 5 + ["train"],
                        "onset_to_mri_min": [60, 400, 120, 300, 200, 100]})
    man.to_csv(root / "cohort" / "manifest.csv", index=False)
    pd.DataFrame({"patient_id": man["patient_id"], "oracle_score": [0.1, 0.9, 0.6, 0.5, 0.2, 0.0]}).to_csv(
        root / "cohort" / "latent.csv", index=False)
    refs = results.reference_aucs(tmp_path, "lowres")
    u = lee.query("split == 'test' and usable")
    assert refs["Lee et al. (5 usable test patients)"] == pytest.approx(roc_auc_score(u["target"], u["prob"]))
    y = (man["onset_to_mri_min"][:5] < 270).astype(int)
    assert refs["oracle"] == pytest.approx(roc_auc_score(y, [0.1, 0.9, 0.6, 0.5, 0.2]))
    assert results.reference_aucs(tmp_path, "quick") == {}
