"""The run tree: every later step finds a run where training wrote it."""

from __future__ import annotations

import json

import pandas as pd

from tss.runtree import RunTree


def _run(tree: RunTree, experiment: str, seed: int, finished: bool = True, checkpoint: bool = False):
    d = tree.run_dir(experiment, seed)
    d.mkdir(parents=True)
    pd.DataFrame({"epoch": [1], "train_loss": [0.7]}).to_csv(d / "epochs.csv", index=False)
    if finished:
        (d / "summary.json").write_text(json.dumps({"experiment": experiment, "seed": seed}))
    if checkpoint:
        (d / "best.pt").write_bytes(b"weights")


def test_seeds_checkpoints_and_logs_are_found_where_training_writes_them(tmp_path):
    tree = RunTree(tmp_path / "runs")
    assert not tree.has_runs() and tree.seeds("2d-tss45-transfer") == [] and tree.checkpoint("2d-tss45-transfer") is None
    _run(tree, "2d-tss45-transfer", 10)
    _run(tree, "2d-tss45-transfer", 2, checkpoint=True)
    _run(tree, "2d-tss45-transfer", 3, finished=False)          # interrupted: a log, no summary
    _run(tree, "2d-tss45-random", 0)
    assert tree.has_runs()
    assert tree.seeds("2d-tss45-transfer") == [2, 10]           # numeric order, finished runs only
    assert tree.seed_dir(2) == tmp_path / "runs" / "seed2"
    assert tree.checkpoint("2d-tss45-transfer") == tree.run_dir("2d-tss45-transfer", 2) / "best.pt"
    assert tree.checkpoint("2d-tss45-transfer", seed=10) is None   # finished here, weights not here
    assert tree.checkpoint("2d-tss45-random") is None
    assert [s for s, _ in tree.epoch_logs("2d-tss45-transfer")] == [10, 2, 3]  # by path: seed10 < seed2
    assert len(tree.summaries()) == 3 and len(tree.summaries("2d-tss45-random")) == 1
    (tree.run_dir("2d-tss45-imagenet", 0)).mkdir(parents=True)
    (tree.run_dir("2d-tss45-imagenet", 0) / "skipped.json").write_text("{}")
    assert [p.parent.name for p in tree.skipped()] == ["2d-tss45-imagenet"]
