"""A chapter's stage computes and writes every table and figure its page shows (tss.stages)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from small_cohort import SHARED
from test_results import _fake_run

from tss import stages
from tss.synth import calibration

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def runs(tmp_path):
    rng = np.random.default_rng(6)
    for seed in (0,):
        _fake_run(tmp_path / "quick" / "runs", "2d-tss45-transfer", seed, rng, signal=3.0)
        _fake_run(tmp_path / "quick" / "runs", "2d-tss45-random", seed, rng, signal=0.0)
    return tmp_path


def test_the_results_stage_writes_what_it_returns_and_leaves_no_figure_open(runs):
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())  # other tests may leave figures open: only this stage's count
    page = stages.results_chapter(runs, "quick", n_boot=30)
    out = runs / "quick" / "results"
    assert page.profile == "quick"
    for name in ("table2", "table2_raw", "paper_gain_claims", "gains", "inherited"):
        assert (out / f"{name}.csv") in page.files
        written = pd.read_csv(out / f"{name}.csv")
        assert len(written) == len(page.tables[name])
    assert {f.name for f in page.files if f.suffix == ".png"} == {"figures6_7.png", "figure8_roc.png"}
    assert all(f.exists() for f in page.files)
    assert set(plt.get_fignums()) <= before  # the page shows each figure where it belongs, not where the stage ran
    assert page.said["recipe"] is None  # no clock study here: no recipe beside the paper's
    assert page.said["recipe_best"] is None and page.said["no_recipe"] is None  # and nothing to explain


def test_the_command_line_and_the_pages_write_the_same_tables(runs, tmp_path_factory):
    cli = stages.write_tables(runs, "quick", n_boot=30)
    out = runs / "quick" / "results"
    first = {n: (out / f"{n}.csv").read_bytes() for n in cli}
    stages.results_chapter(runs, "quick", n_boot=30)
    stages.reproduction_chapter(runs, "quick", n_boot=30)
    assert {n: (out / f"{n}.csv").read_bytes() for n in cli} == first


def test_the_reproduction_stage_alone_computes_table2_first(runs):
    page = stages.reproduction_chapter(runs, "quick", n_boot=30)  # no Results page ran before it
    out = runs / "quick" / "results"
    assert (out / "table2_raw.csv").exists() and (out / "reproduction.csv") in page.files
    claims = page.tables["reproduction"].set_index("claim")["verdict"]
    assert claims["TSS < 4.5 h, 2D: task-adaptive transfer beats random initialisation"] != "not run"
    assert "claims" in page.said["counts"]


def test_the_gradcam_summary_is_made_from_the_overlap_table_for_the_claims(runs):
    from tss import gradcam

    out = runs / "quick" / "results"
    out.mkdir(parents=True, exist_ok=True)
    assert stages.gradcam_summary(out) is None and not (out / "gradcam_summary.csv").exists()
    study = pd.DataFrame({"experiment": ["2d-tss45-random"] * 4 + ["2d-tss45-transfer"] * 2,
                          "patient_id": list("abcdab"), "energy_in_lesion": [0.1, 0.2, 0.3, 0.4, 0.5, 0.7],
                          "hit": [1.0, 0.0, 1.0, np.nan, 1.0, 1.0], "peak_in_lesion": [1, 0, 0, 0, 1, 1]})
    study.to_csv(out / "gradcam_overlap.csv", index=False)
    s = stages.gradcam_summary(out)
    assert list(s.index) == ["2d-tss45-random", "2d-tss45-transfer"]  # the table's order
    assert s.at["2d-tss45-random", "hit_rate"] == pytest.approx(2 / 3)  # a hemisphere without a lesion: left out
    rate, ci, n = gradcam.hit_rate(study["hit"][:4])
    assert n == 3 and s.at["2d-tss45-random", "hit rate (95% CI)"].startswith(f"{rate:.2f}")
    assert s.at["2d-tss45-random", "paper"] == gradcam.PAPER_HIT and s.at["2d-tss45-transfer", "paper"] == ""
    claims = stages.write_tables(runs, "quick", n_boot=30)["reproduction"].set_index("claim")
    assert "2d-tss45-transfer: 1.00" in claims.loc[claims.index.str.startswith("Grad-CAM"), "ours"].iloc[0]


def test_the_lee_subset_scores_every_model_on_the_baselines_patients_and_picks_the_best_on_validation(tmp_path):
    from sklearn.metrics import roc_auc_score

    runs = tmp_path / "runs"
    rng = np.random.default_rng(2)

    def run(name, val_signal, test_signal):
        d = runs / "seed0" / name
        d.mkdir(parents=True)
        rows = []
        for split, sig in (("val", val_signal), ("test", test_signal)):
            y = (np.arange(40) % 2).astype(float)
            p = 1 / (1 + np.exp(-(sig * (y - 0.5) + rng.normal(size=40))))
            rows += [{"patient_id": f"{split}{i:02d}", "prob": p[i], "target": y[i], "split": split,
                      "onset_to_mri_min": 100, "n_hemispheres": 1} for i in range(40)]
        pd.DataFrame(rows).to_csv(d / "patients.csv", index=False)
        (d / "summary.json").write_text("{}")
        return pd.DataFrame(rows)

    good_val = run("2d-tss45-random", 6.0, 0.0)   # best on validation, chance on test
    run("3d-tss45-random", 0.0, 6.0)             # the reverse: must not be chosen
    lee_dir = tmp_path / "lee"
    lee_dir.mkdir()
    test = good_val.query("split == 'test'")
    usable = np.arange(len(test)) < 30
    pd.DataFrame({"patient_id": test["patient_id"], "split": "test", "target": test["target"],
                  "prob": rng.uniform(size=len(test)), "usable": usable}).to_csv(lee_dir / "predictions.csv", index=False)
    t, best = stages.lee_subset(lee_dir, runs, n_boot=30)
    assert best == "2d-tss45-random"
    rows = t.set_index(["model", "test patients"])
    assert rows.at[("Lee et al. 2020 (ours)", "usable ROI"), "n"] == 30
    assert rows.at[("2d-attention-transfer", "not run"), "paper"] == ""
    sub = test[usable]
    auc = roc_auc_score(sub["target"], sub["prob"])
    assert rows.at[("2d-tss45-random", "usable ROI"), "n"] == 30
    assert rows.at[("2d-tss45-random", "usable ROI"), "AUC (95% CI)"].startswith(f"{auc:.2f}")
    assert rows.at[("2d-tss45-random", "all"), "n"] == 40


def test_the_models_stage_writes_its_tables_and_counts_every_parameter(tmp_path):
    import json

    from tss.models import Attention3DNet, SliceAttentionNet

    page = stages.models_chapter("quick", cache_dir=tmp_path / "no-cache", results_dir=tmp_path / "models",
                                 bench_dir=tmp_path / "no-bench")
    assert {f.name for f in page.files} == {"parameters.csv", "shapes.csv", "models_summary.json"}  # no cache: no figure
    assert not page.figures and "bench" not in page.tables
    written = pd.read_csv(tmp_path / "models" / "parameters.csv")
    assert written["parameters"].sum() == page.tables["parameters"]["parameters"].sum()
    totals = json.loads((tmp_path / "models" / "models_summary.json").read_text())["parameters"]
    assert totals["2D slice-wise attention"] == sum(p.numel() for p in SliceAttentionNet(n_slices=26).parameters())
    assert totals["3D attention"] == sum(p.numel() for p in Attention3DNet().parameters())
    att = page.tables["attention"]
    assert ((att["min"] >= 0) & (att["max"] <= 1)).all() and len(att) == 3


def test_the_cohort_stage_writes_every_file_of_the_data_page_and_shows_the_results_cohort(small, tmp_path):
    import json

    import matplotlib.pyplot as plt
    from small_cohort import N_SMALL, SEED_SMALL

    from tss import project, results

    root, _ = small
    before = set(plt.get_fignums())
    page = stages.cohort_chapter("quick", n=N_SMALL, seed=SEED_SMALL, jobs=1, cohort_dir=root,
                                 results_dir=tmp_path, n_boot=20, audit_dir=tmp_path / "audit")
    names = {f.name for f in page.files}
    assert names == {"manifest.csv", "latent.csv", "table1.csv", "figure1_mismatch.png", "signal_ratio_vs_tss.png",
                     "readers_test.csv", "oracle_roc.png", "calibration.csv", "cohort_summary.json"}
    assert all(f.exists() and f.parent == tmp_path for f in page.files)
    assert set(plt.get_fignums()) <= before
    # the page shows the cohort the Results chapter shows; Figure 1 shows this build's images
    shown = results.profile_of(project.paths("quick").results_root) or "quick"
    assert page.profile == page.said["shown"] == shown
    assert page.said["n_images"] == N_SMALL
    summary = json.loads((tmp_path / "cohort_summary.json").read_text())
    assert summary["n"] == page.said["n_shown"] and summary["built_by"] == "quick"
    # the cohort against patients: every target, measured from the shown cohort's images
    cal = pd.read_csv(tmp_path / "calibration.csv")
    assert len(cal) == len(calibration.TARGETS) and summary["calibration"]["n_patients"] == page.said["n_shown"]
    assert page.said["calibration_met"] == cal["met"].eq("yes").sum()
    variants = list((project.paths("quick").results_root / shown / "variants").glob("*/calibration.csv"))
    assert ("calibration_variants" in page.tables) == bool(variants)
    if variants:  # the committed variants beside this cohort, each target in the same row
        wide = page.tables["calibration_variants"]
        assert list(wide["target"]) == list(cal["target"]) and page.said["variant"] in wide.columns
        assert set(page.tables["variant_changes"]["variant"]) == {f.parent.name for f in variants}
    readers = pd.read_csv(tmp_path / "readers_test.csv")
    assert len(readers) == 4 and readers["n (ours)"].iloc[0] == page.said["n_test"]
    # the written Table 1 is the one returned (index kept: the variable names)
    assert pd.read_csv(tmp_path / "table1.csv", index_col=0).shape == page.tables["table1"].shape


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "isles22-sample").exists(), reason="shared ISLES'22 sample not present")
def test_the_preprocessing_stage_runs_a_real_cohort_and_measures_no_truth_it_lacks(tmp_path):
    import json
    import shutil

    from tss import manifest

    cohort = tmp_path / "cohort"  # a real cohort: its own folder and manifest, no generator.json
    shutil.copytree(SHARED / "data" / "isles22-sample", cohort)
    row = pd.read_csv(ROOT / "data_manifest" / "isles22-sample.csv").iloc[0].to_dict()
    for k in ("b1000", "flair", "lesion_mask", "adc"):
        row[k] = row[k].replace("../../shared/data/isles22-sample/", "")
    manifest.write_manifest(pd.DataFrame([row]), cohort / manifest.MANIFEST_NAME)
    page = stages.preprocessing_chapter("quick", cohort, tmp_path / "cache", tmp_path / "out",
                                        isles_manifest=tmp_path / "absent.csv", jobs=1)
    assert page.said["qc_patients"] == 0 and "qc" not in page.tables
    assert not (tmp_path / "out" / "qc.csv").exists()
    summary = json.loads((tmp_path / "out" / "preprocess_summary.json").read_text())
    assert summary["patients"] == 1 and summary["failed"] == 0 and summary["dwi_error_mean_mm"] is None
    assert {f.name for f in page.files} == {"figure2_pipeline.png", "figure3_registered.png", "preprocess_summary.json"}


def test_the_results_pages_say_why_no_recipe_sits_beside_the_papers():
    best = {"recipe": "logits", "val_mean": 0.65, "test_mean": 0.60, "seeds": 2, "learned": False, "beside_paper": True}
    note = stages.no_recipe_note({"recipe": None, "recipe_best": best})
    assert "**logits**" in note and "0.65 over 2 seeds" in note and "did not leave the validation chance band" in note
    assert stages.no_recipe_note({"recipe": "logits", "recipe_best": best | {"learned": True}}) is None  # shown
    assert stages.no_recipe_note({"recipe": None, "recipe_best": best | {"recipe": "paper"}}) is None
    assert stages.no_recipe_note({"recipe": None, "recipe_best": None}) is None  # no clock study ran


def test_variants_sit_beside_the_cohort_target_by_target_and_a_stale_table_is_named(tmp_path):
    from tss.synth import calibration

    own = calibration.table({"flair_ratio_auc": 0.83, "dwi_ratio_auc": 0.83})
    assert stages.calibration_by_variant(tmp_path, "lowres", own, "loud") is None  # no variant measured
    d = tmp_path / "lowres" / "variants" / "calibrated"
    d.mkdir(parents=True)
    calibration.table({"flair_ratio_auc": 0.80, "dwi_ratio_auc": 0.60}).to_csv(d / "calibration.csv", index=False)
    wide = stages.calibration_by_variant(tmp_path, "lowres", own, "loud").set_index("target")
    assert list(wide.columns) == ["target range", "loud", "calibrated"]
    dwi = calibration.TARGET["dwi_ratio_auc"].what
    assert wide.at[dwi, "loud"] == "0.83 (no: above)" and wide.at[dwi, "calibrated"] == "0.60"
    assert wide.at[calibration.TARGET["readers_kappa"].what, "calibrated"] == "n/a (not measured)"
    changes = stages.variant_changes(["calibrated"])
    assert "adc_per_t2_increase" in set(changes["parameter"]) and (changes["first cohort"] != changes["variant's value"]).all()
    pd.read_csv(d / "calibration.csv").iloc[:-1].to_csv(d / "calibration.csv", index=False)  # an older target list
    with pytest.raises(ValueError, match="python -m tss calibrate --profile lowres --variant calibrated"):
        stages.calibration_by_variant(tmp_path, "lowres", own, "loud")
