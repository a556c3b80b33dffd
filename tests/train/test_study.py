"""The data-size study: nested, stratified training subsets with validation and test untouched, and
the chain trained and tabled per input size and training-set size."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from tiny import TINY, tiny_cohort

from tss import stats
from tss.train import Hemispheres, data, study

matplotlib.use("Agg")


def _index(n_train=(60, 30, 10), n_eval=12) -> pd.DataFrame:
    """Two hemispheres per patient; strata: stroke before 4.5 h, stroke after, no stroke."""
    rows, pid, strata = [], 0, {}
    for split, counts in (("train", n_train), ("val", (n_eval, n_eval, 0)), ("test", (n_eval, n_eval, 0))):
        for stratum, n in enumerate(counts):
            for _ in range(n):
                minutes = 100 if stratum == 0 else 400
                for h in ("left", "right"):
                    stroke = stratum < 2 and h == "left"
                    rows.append({"patient_id": f"p{pid:03d}", "hemisphere": h, "label": int(stroke),
                                 "split": split, "onset_to_mri_min": minutes})
                strata[f"p{pid:03d}"] = stratum
                pid += 1
    out = pd.DataFrame(rows)
    out.attrs["strata"] = strata  # the truth each patient was made from, not a copy of the rule under test
    return out


def _stratum(index: pd.DataFrame) -> pd.Series:
    return pd.Series(index.attrs["strata"])


def test_every_prefix_of_the_training_order_keeps_the_strata_proportions():
    idx = _index()
    order = study.training_order(idx, seed=0)
    train = set(idx.loc[idx["split"] == "train", "patient_id"])
    assert sorted(order) == sorted(train)  # a permutation of the training patients, nothing else
    strata = _stratum(idx).loc[order].to_numpy()
    share = np.array([60, 30, 10]) / 100
    for k in range(1, len(order) + 1):
        counts = np.bincount(strata[:k], minlength=3)
        assert np.all(np.abs(counts - k * share) <= 1.0 + 1e-9), (k, counts)
    assert study.training_order(idx, seed=1) != order  # the seed draws another order


def test_training_subsets_are_nested_minimal_and_leave_validation_and_test_alone():
    idx = _index()
    x = torch.arange(len(idx), dtype=torch.float32)[:, None]  # each row remembers where it came from
    c = Hemispheres(x, idx, key="k")
    subsets = {n: study.train_subset(c, n) for n in (10, 25, 50)}
    kept = {}
    for n, s in subsets.items():
        tr = s.index[s.index["split"] == "train"]
        assert study.n_train_stroke(s) == n  # one stroke hemisphere per stroke patient: exactly n
        kept[n] = set(tr["patient_id"])
        for split in ("val", "test"):
            assert s.index[s.index["split"] == split].reset_index(drop=True).equals(
                idx[idx["split"] == split].reset_index(drop=True))
        # rows carry their own tensors, not their neighbours'
        orig = idx.reset_index().merge(s.index.reset_index(), on=["patient_id", "hemisphere"])
        assert torch.equal(s.x[orig["index_y"].to_numpy().copy(), 0],
                           torch.tensor(orig["index_x"].to_numpy(), dtype=torch.float32))
        assert len({s.key, c.key}) == 2
    assert kept[10] < kept[25] < kept[50]
    assert study.train_subset(c, None) is c
    with pytest.raises(ValueError, match="fewer than 500"):
        study.train_subset(c, 500)


def test_the_study_trains_the_chain_per_size_and_reads_it_back(tmp_path):
    c = tiny_cohort()

    def load(cache_dir, d, device):
        return Hemispheres(data.pool_in_plane(c.x, d), c.index, key=f"{c.key}:{d}")

    res = study.run_study(None, tmp_path, profile="quick", downsamples=(1,), sizes=(2, None),
                          experiments=study.CHAIN + study.RANDOM, progress=False,
                          train_profile=TINY.__class__(**{**TINY.__dict__, "max_epochs": 1}), load=load)
    assert len(res) == 2 * 5 and not any("skipped" in r for r in res)
    t = study.table(tmp_path, n_boot=50)
    assert sorted(t["train_stroke_hemispheres"].unique()) == [2, 8]
    assert set(t["experiment"]) == {e.name for e in study.CHAIN + study.RANDOM}
    assert t["test_auc"].between(0, 1).all() or t["test_auc"].isna().any()
    ok = t.dropna(subset=["test_auc"])
    assert (ok["test_auc_lo"] <= ok["test_auc"] + 1e-9).all() and (ok["test_auc"] <= ok["test_auc_hi"] + 1e-9).all()
    # the smaller size trained on fewer hemispheres: its configuration says so through its data key
    cfg = [json.loads((tmp_path / "1x" / f"n{n}" / "seed0" / "2d-stroke-random" / "config.json").read_text())
           for n in (2, 8)]
    assert cfg[0]["data_key"] != cfg[1]["data_key"] and cfg[0]["downsample"] == 1
    assert study.plot(t, profile="quick").axes[1].get_legend() is not None
    fig = study.plot(t, profile="quick", references={"oracle": 0.94, "Lee et al.": 0.93})
    legend = [x.get_text() for x in fig.axes[1].get_legend().get_texts()]
    assert "oracle: 0.94" in legend and "Lee et al.: 0.93" in legend  # on the TSS panel only
    assert not any("oracle" in x.get_text() for x in fig.axes[0].get_legend().get_texts())
    wide = study.pivot(t)
    assert list(wide["training stroke hemispheres"]) == [2, 8] and wide.shape[1] == 2 + 4 + 2


def test_the_whole_split_at_the_profiles_input_is_shared_with_the_grid_and_read_back_there(tmp_path):
    from tss.train import run_grid

    c = tiny_cohort()
    res = study.run_study(None, tmp_path / "study", profile="quick", downsamples=(4,), sizes=(None,),
                          experiments=study.CHAIN[:2], progress=False, grid_root=tmp_path / "runs",
                          load=lambda cache, d, device: c)
    shared = sorted(p.parent.name for p in (tmp_path / "runs" / "seed0").glob("*/summary.json"))
    assert shared == ["2d-stroke-random", "2d-tss3-transfer"]
    # the grid finds them done: same configuration, same key; nothing is retrained
    again = run_grid(list(study.CHAIN[:2]), c, tmp_path / "runs" / "seed0", "quick", 0, progress=False)
    assert [r["key"] for r in again] == [r["key"] for r in res]
    # and the other way: a study finds the grid's runs and reads them back
    study_b = tmp_path / "study-b"
    back = study.run_study(None, study_b, profile="quick", downsamples=(4,), sizes=(None,),
                           experiments=study.CHAIN[:2], progress=False, grid_root=tmp_path / "runs",
                           load=lambda cache, d, device: c)
    assert [r["key"] for r in back] == [r["key"] for r in res]
    log = study_b / "4x" / f"n{study.n_train_stroke(c)}" / "seed0" / "2d-stroke-random" / "epochs.csv"
    assert log.read_text() == (tmp_path / "runs" / "seed0" / "2d-stroke-random" / "epochs.csv").read_text()


def test_a_size_whose_later_runs_have_not_finished_shows_a_dash_not_nan():
    import pandas as pd

    row = dict(input="112 x 56", test_auc_lo=0.5, test_auc_hi=0.9, epochs=17, best_epoch=7, wall_seconds=600.0)
    t = pd.DataFrame([{**row, "train_stroke_hemispheres": 50, "experiment": "2d-stroke-random", "test_auc": 0.7},
                      {**row, "train_stroke_hemispheres": 50, "experiment": "2d-tss45-transfer", "test_auc": 0.6},
                      {**row, "train_stroke_hemispheres": 100, "experiment": "2d-stroke-random", "test_auc": 0.8}])
    wide = study.pivot(t)
    late = wide[wide["training stroke hemispheres"] == 100].iloc[0]
    assert late[study.LABELS["2d-tss45-transfer"]] == "-"
    assert late[study.LABELS["2d-stroke-random"]].startswith("0.80")
    assert "nan" not in wide.to_string()


def test_the_findings_read_the_ends_of_each_curve_per_input():
    def row(d, n, exp, auc):
        return {"downsample": d, "input": f"{224 // d} x {112 // d}", "train_stroke_hemispheres": n,
                "experiment": exp, "test_auc": auc}

    t = pd.DataFrame([row(2, 100, "2d-stroke-random", 0.82),  # the larger input first, as the folders sort
                      row(4, 50, "2d-stroke-random", 0.63), row(4, 283, "2d-stroke-random", 0.79),
                      row(4, 100, "2d-stroke-random", 0.75), row(4, 50, "2d-tss45-transfer", 0.47),
                      row(4, 283, "2d-tss45-transfer", 0.36), row(2, 50, "2d-stroke-random", 0.67),
                      row(2, 50, "2d-tss45-transfer", 0.41), row(2, 200, "2d-stroke-random", 0.74),
                      row(2, 100, "2d-tss45-transfer", 0.43), row(2, 50, "2d-attention-transfer", 0.39),
                      row(4, 50, "2d-tss3-transfer", 0.9)])   # not a model of the figure: left out
    small, big = study.findings(t)
    label = study.SHORT
    assert small == (f"At 56 x 28, from 50 to 283 training stroke hemispheres: {label['2d-stroke-random']} "
                     f"0.63 → 0.79; {label['2d-tss45-transfer']} 0.47 → 0.36.")
    # stroke detection ran at 50, 100 and 200; a curve that stops short says where it stops; one
    # point is no curve
    assert big == (f"At 112 x 56, from 50 to 200 training stroke hemispheres: {label['2d-stroke-random']} "
                   f"0.67 → 0.74; {label['2d-tss45-transfer']} 0.41 → 0.43 (50 to 100).")
    assert "0.39" not in big
    assert study.findings(t.iloc[:0]) == []


def test_the_random_run_trained_alone_is_found_done_by_the_whole_study(tmp_path, monkeypatch):
    from tss import cli

    seen = []
    monkeypatch.setattr(study, "run_study", lambda *a, **k: seen.append(k["experiments"]))
    monkeypatch.setattr(study, "table", lambda root: pd.DataFrame())
    assert cli.main(["study", "--only-random", "--out", str(tmp_path / "x")]) == 0
    assert cli.main(["study", "--no-random", "--out", str(tmp_path / "x")]) == 0
    assert seen == [study.RANDOM, study.CHAIN]
    with pytest.raises(SystemExit):
        cli.main(["study", "--only-random", "--no-random"])
    monkeypatch.undo()

    # a second process trains the random run; the chain's process then finds it done, not retrained
    c = tiny_cohort()
    kw = dict(profile="quick", downsamples=(4,), sizes=(None,), progress=False, load=lambda cache, d, device: c)
    alone = study.run_study(None, tmp_path / "study", experiments=study.RANDOM, **kw)
    log = tmp_path / "study" / "4x" / f"n{study.n_train_stroke(c)}" / "seed0" / "2d-tss45-random" / "epochs.csv"
    before = log.stat().st_mtime_ns
    both = study.run_study(None, tmp_path / "study", experiments=study.CHAIN[:1] + study.RANDOM, **kw)
    assert [r["experiment"] for r in both] == ["2d-stroke-random", "2d-tss45-random"]
    assert both[1]["key"] == alone[0]["key"] and log.stat().st_mtime_ns == before


def test_sharing_a_run_waits_for_a_process_training_the_destination_and_then_leaves_its_run(tmp_path):
    import threading

    from tss.atomic import exclusive

    src = tmp_path / "study" / "2d-stroke-random"
    src.mkdir(parents=True)
    (src / "summary.json").write_text('{"from": "study"}')
    dest = tmp_path / "runs" / "2d-stroke-random"
    dest.mkdir(parents=True)
    got = []
    with exclusive(dest / ".lock"):  # a grid process is training the destination
        t = threading.Thread(target=lambda: got.append(study.share(src.parent, dest.parent)), daemon=True)
        t.start()
        t.join(timeout=2)
        assert t.is_alive() and not (dest / "summary.json").exists()
        (dest / "summary.json").write_text('{"from": "grid"}')  # and finishes
    t.join(timeout=30)
    assert got == [[]] and json.loads((dest / "summary.json").read_text()) == {"from": "grid"}


def _write_run(root, d, n, experiment, frame, seed=0):
    run = root / f"{d}x" / f"n{n}" / f"seed{seed}" / experiment
    run.mkdir(parents=True)
    frame.to_csv(run / ("predictions.csv" if "stroke" in experiment else "patients.csv"), index=False)
    return {"downsample": d, "train_stroke_hemispheres": n, "experiment": experiment, "seed": seed,
            "run_dir": str(run)}


def test_the_two_inputs_are_compared_by_delong_on_the_same_test_patients_whatever_the_file_order(tmp_path):
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(20), np.zeros(20)]
    ids = [f"p{i:02d}" for i in range(40)]
    big = pd.DataFrame({"patient_id": ids, "target": y, "prob": y + rng.normal(0, 0.8, 40), "split": "test"})
    small = pd.DataFrame({"patient_id": ids, "target": y, "prob": rng.random(40), "split": "test"})
    val = pd.DataFrame({"patient_id": ["v"], "target": [1.0], "prob": [0.9], "split": ["val"]})  # not tested
    rows = [_write_run(tmp_path, 2, 50, "2d-tss45-random", pd.concat([big, val])),
            _write_run(tmp_path, 4, 50, "2d-tss45-random", pd.concat([val, small.iloc[::-1]])),  # another order
            _write_run(tmp_path, 4, 100, "2d-tss45-random", small)]                          # one input only
    e = study.input_effect(pd.DataFrame(rows))
    assert len(e) == 1 and e.loc[0, "train_stroke_hemispheres"] == 50 and e.loc[0, "n_test"] == 40
    want = stats.delong(y, big["prob"], small["prob"])
    assert e.loc[0, "auc_large"] == pytest.approx(want["auc1"]) and e.loc[0, "auc_small"] == pytest.approx(want["auc2"])
    assert e.loc[0, "p"] == pytest.approx(want["p"]) and want["p"] < 0.05
    assert e.loc[0, "p_holm"] == pytest.approx(want["p"])  # one comparison: nothing to adjust
    assert study.input_said(e) == ("The two inputs compared by DeLong's test on the same test cases, 1 comparison: "
                                   "the larger input's test AUC differs at p < 0.05 before correction for "
                                   f"{study.SHORT['2d-tss45-random']} at 50 ({want['diff']:+.2f}, "
                                   f"p = {want['p']:.3f}, Holm {want['p']:.3f}) training stroke hemispheres. "
                                   "After Holm's correction for the 1, 1 remains.")


def test_stroke_detection_is_compared_per_hemisphere_and_each_seed_with_its_own(tmp_path):
    rng = np.random.default_rng(4)
    pts = [f"p{i:02d}" for i in range(30)]
    hemi = pd.DataFrame({"patient_id": np.repeat(pts, 2), "hemisphere": ["left", "right"] * 30,
                         "target": [1.0, 0.0] * 30, "split": "test"})
    rows, want = [], {}
    for seed in (0, 1):
        big = hemi.assign(prob=hemi["target"] + rng.normal(0, 1 + seed, 60))
        small = hemi.assign(prob=rng.random(60))
        rows += [_write_run(tmp_path, 2, 50, "2d-stroke-random", big, seed),
                 _write_run(tmp_path, 4, 50, "2d-stroke-random", small.sample(frac=1, random_state=seed), seed)]
        want[seed] = stats.delong(hemi["target"], big["prob"], small["prob"])
    e = study.input_effect(pd.DataFrame(rows))
    assert list(e["seed"]) == [0, 1] and list(e["n_test"]) == [60, 60]  # not seed 0 against seed 1
    for seed in (0, 1):
        assert e.loc[seed, "auc_large"] == pytest.approx(want[seed]["auc1"])
        assert e.loc[seed, "auc_small"] == pytest.approx(want[seed]["auc2"])
    holm = np.minimum(1, np.maximum.accumulate(np.sort(e["p"]) * [2, 1]))
    assert np.sort(e["p_holm"]) == pytest.approx(holm)


def test_two_inputs_tested_on_different_patients_are_refused_by_name(tmp_path):
    y = np.r_[np.ones(5), np.zeros(5)]
    a = pd.DataFrame({"patient_id": [f"p{i}" for i in range(10)], "target": y, "prob": y, "split": "test"})
    b = a.assign(patient_id=[f"q{i}" for i in range(10)])
    rows = [_write_run(tmp_path, 2, 50, "2d-tss45-transfer", a), _write_run(tmp_path, 4, 50, "2d-tss45-transfer", b)]
    with pytest.raises(ValueError, match="2d-tss45-transfer at 50"):
        study.input_effect(pd.DataFrame(rows))
    rows = [_write_run(tmp_path, 2, 100, "2d-tss45-transfer", a),
            _write_run(tmp_path, 4, 100, "2d-tss45-transfer", a.assign(target=1 - y))]  # same patients, other labels
    with pytest.raises(ValueError, match="2d-tss45-transfer at 100.*targets differ"):
        study.input_effect(pd.DataFrame(rows))


def test_the_input_sentence_names_the_models_that_never_differ_and_what_survives_correction():
    e = pd.DataFrame({"experiment": ["2d-stroke-random", "2d-stroke-random", "2d-tss45-random"],
                      "train_stroke_hemispheres": [100, 283, 283], "diff": [0.07, 0.06, -0.08],
                      "p": [0.003, 0.036, 0.12], "p_holm": [0.009, 0.072, 0.12]})
    said = study.input_said(e)
    assert "stroke detection at 100 (+0.07, p = 0.003, Holm 0.009) and 283 (+0.06, p = 0.036, Holm 0.072)" in said
    assert said.endswith(f"and at no size for {study.SHORT['2d-tss45-random']}. "
                         "After Holm's correction for the 3, 1 remains.")
    assert study.input_said(e.assign(p=0.5, p_holm=0.5)).endswith("differs at p < 0.05 before correction in none.")
    assert study.input_said(e.assign(p_holm=0.2)).endswith("none remains.")
    assert study.input_said(e.iloc[:0]) == ""
