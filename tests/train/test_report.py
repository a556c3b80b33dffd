"""What the Training pages show (tss.train.report): throughput, CPU ratios, learning curves, runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tss.train import Experiment, grid


def test_throughput_compares_only_full_size_gpu_hemisphere_runs_with_the_ceiling():
    from tss import paper
    from tss.train import report

    rows = []
    for seed in range(5):
        rows += [{"experiment": "2d-stroke-random", "arch": "2d", "phase": "stroke", "task": "stroke", "seed": seed,
                  "device": "cuda:0", "profile": "full", "wall_seconds": 30.0, "epochs": 20, "examples_per_s": 300.0},
                 {"experiment": "3d-genesis-random", "arch": "3d", "phase": "genesis", "task": "restore", "seed": seed,
                  "device": "cuda:0", "profile": "full", "wall_seconds": 60.0, "epochs": 40, "examples_per_s": 2000.0}]
    df = pd.DataFrame(rows)
    t = report.throughput(df).set_index("phase")
    assert t.loc["stroke", "of_ceiling"] == pytest.approx(300 / paper.H100_CEILING_BF16_BATCH8["2d"]["hemis_per_s"])
    assert np.isnan(t.loc["genesis", "of_ceiling"])  # sub-volumes: another input, no ceiling
    assert t.loc["stroke", "wall_minutes"] == pytest.approx(2.5) and t.loc["stroke", "seeds"] == 5
    assert "within" in report.grid_verdict(df) and "meets" in report.grid_verdict(df)  # 7.5 min, 81%
    slow = df.assign(examples_per_s=200.0, wall_seconds=df["wall_seconds"] * 3)
    assert "outside" in report.grid_verdict(slow) and "misses" in report.grid_verdict(slow)
    cpu = df.assign(device="cpu", profile="quick")
    assert report.throughput(cpu)["of_ceiling"].isna().all()
    assert "not been run" in report.grid_verdict(cpu)


def test_the_training_chapter_reads_the_cpu_ratios_make_bench_wrote(tmp_path):
    from tss.train import report

    assert report.cpu_speedups(tmp_path).empty
    (tmp_path / "loop-cpu.json").write_text(json.dumps({"experiment": "2d-stroke-random", "train_hemispheres": 240,
                                                        "precision": "bf16", "loop_over_bare": 0.87, "target": 0.8}))
    (tmp_path / "quickgrid-cpu.json").write_text(json.dumps({"patients": 80, "epochs": 2, "after_precision": "bf16",
                                                             "total_seconds": {"before": 240, "after": 169},
                                                             "speedup": 240 / 169, "target": 3.0}))
    (tmp_path / "lanes-cpu.json").write_text(json.dumps({"threads": 2, "results": [
        {"arch": "2d", "shape": [26, 56, 28], "lanes": 2, "precision": "bf16", "lanes_over_one": 1.31},
        {"arch": "3d", "shape": [26, 56, 28], "lanes": 2, "precision": "bf16", "lanes_over_one": 0.95}]}))
    t = report.cpu_speedups(tmp_path)
    assert t["ratio"].round(2).tolist() == [0.87, 1.42, 1.31, 0.95] and t["met"].tolist() == [True, False, True, False]
    assert "240 s -> 169 s" in t["measure"].iloc[1]
    assert "2D training steps at 56x28, 2 one-thread runs side by side / one 2-thread run" in t["measure"].iloc[2]


def test_training_pages_show_the_larger_profiles_first_and_this_builds_runs_last(tmp_path):
    from tss.train import report

    assert list(report.views(tmp_path, "quick")) == ["quick"]
    d = tmp_path / "lowres" / "runs" / "seed0" / "2d-stroke-random"
    d.mkdir(parents=True)
    (d / "summary.json").write_text("{}")
    v = report.views(tmp_path, "quick", tmp_path / "elsewhere")
    assert list(v) == ["lowres", "quick"] and v["quick"] == tmp_path / "elsewhere"
    assert list(report.views(tmp_path, "lowres")) == ["lowres"]


def _epochs_csv(root, name, seed=0, auc=(0.5, 0.6), loss=(0.7, 0.6)):
    d = root / f"seed{seed}" / name
    d.mkdir(parents=True)
    pd.DataFrame({"epoch": range(1, len(auc) + 1), "train_loss": loss, "val_loss": [v + 0.05 for v in loss],
                  Experiment.parse(name).spec.monitor: auc, "best": [a == max(auc) for a in auc]}
                 ).to_csv(d / "epochs.csv", index=False)


def test_learning_curves_of_a_grid_whose_first_run_is_missing_draw_without_a_warning(tmp_path):
    # a warning printed on a page carries the build machine's path, which the book must not show
    import warnings

    from tss.train import report

    _epochs_csv(tmp_path, "2d-tss3-transfer")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = report.plot_curves(tmp_path, ["2d-tss3-random", "2d-tss3-transfer"])
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["2d-tss3-transfer"]  # no empty "not run" panel
    assert "not run: 2d-tss3-random" in fig._suptitle.get_text()
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1  # one legend, off the curves


def test_learning_curves_share_the_auc_range_mark_chance_and_colour_each_seed_alike(tmp_path):
    from tss.train import report

    _epochs_csv(tmp_path, "2d-tss3-transfer", 0, auc=(0.44, 0.46, 0.45), loss=(0.6931, 0.6925, 0.6928))
    _epochs_csv(tmp_path, "2d-tss3-transfer", 1, auc=(0.5, 0.7, 0.65), loss=(0.7, 0.6, 0.55))
    _epochs_csv(tmp_path, "2d-tss3-random", 0, auc=(0.55, 0.9, 0.8), loss=(0.7, 0.5, 0.4))
    fig = report.plot_curves(tmp_path, ["2d-tss3-transfer", "2d-tss3-random"])
    loss_t, auc_t, auc_r = fig.axes[0], fig.axes[2], fig.axes[3]
    assert auc_t.get_ylim() == auc_r.get_ylim() and auc_t.get_ylim()[1] == 1.0 and auc_t.get_ylim()[0] <= 0.42
    assert any(list(ln.get_ydata()) == [0.5, 0.5] for ln in auc_t.get_lines())  # the chance line
    lo, hi = loss_t.get_ylim()
    assert hi - lo >= report.MIN_LOSS_SPAN  # a 0.0006 wobble stays flat
    # seed 0 has one colour in every panel, seed 1 another
    c0 = {ln.get_color() for ax in (auc_t, auc_r) for ln in ax.get_lines()[:1]}
    assert len(c0) == 1 and auc_t.get_lines()[2].get_color() != auc_t.get_lines()[0].get_color()


def test_learning_curves_of_many_runs_wrap_into_rows_that_stay_readable(tmp_path):
    from tss.train import report

    names = [e.name for e in grid(("2d",), imagenet=False)][:7]
    for n in names:
        _epochs_csv(tmp_path, n)
    fig = report.plot_curves(tmp_path, names)
    axes = np.array(fig.axes).reshape(4, report.PANELS_PER_ROW)  # two rows of runs: loss above score
    assert [ax.get_title() for ax in axes[0]] == names[:4]
    assert [ax.get_title() for ax in axes[2, :3]] == names[4:]
    assert not axes[2, 3].axison and not axes[3, 3].axison  # the short last row leaves no empty frame
    assert fig.get_size_inches()[0] <= 3.2 * report.PANELS_PER_ROW


def test_the_runs_table_leaves_out_columns_that_no_shown_run_has():
    from tss.train import report

    df = pd.DataFrame({"experiment": ["2d-stroke-random", "2d-tss3-transfer"], "seed": [0, 0], "epochs": [3, 4],
                       "val_auc": [0.7, 0.6], "val_neg_mse": [np.nan, np.nan], "wall_seconds": [10.0, 5.0]})
    t = report.table(df)
    assert "val_neg_mse" not in t and list(t.columns) == ["seeds", "epochs", "val_auc", "wall_seconds"]


def test_the_runs_table_for_a_page_puts_each_mean_beside_its_seeds_sd_in_one_cell():
    from tss.train import report

    df = pd.DataFrame({"experiment": ["2d-tss3-random", "2d-tss3-random", "3d-tss3-random"], "seed": [0, 1, 0],
                       "epochs": [12, 16, 44], "best_epoch": [2, 6, 34], "val_auc_patient": [0.5, 0.6, np.nan],
                       "test_auc_patient": [0.51, 0.52, 0.62], "wall_seconds": [517.0, 657.0, 3137.0]})
    t = report.table(df)
    assert "epochs sd" in t  # two seeds of one experiment: table() adds the sd columns
    r = report.readable(t)
    assert list(r.columns) == ["experiment", "seeds", "epochs", "best epoch", "val auc patient",
                               "test auc patient", "wall seconds"]
    two, one = r.iloc[0], r.iloc[1]
    assert two["experiment"] == "2d-tss3-random" and two["seeds"] == 2
    assert two["epochs"] == "14.0 ± 2.8" and two["test auc patient"] == "0.52 ± 0.01"
    assert one["test auc patient"] == "0.62" and one["val auc patient"] == "-" and one["wall seconds"] == "3137"
