"""The grid, and the per-patient steps, on a Dask cluster (tss.engine): each run waits for its weight
source; a local cluster of 2 workers gives the in-process numbers; a worker killed mid-run is
replaced and the run resumes from its last checkpoint; patients map through joblib's Dask backend."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from distributed.diagnostics.plugin import WorkerPlugin

from tss import engine
from tss.parallel import Failed, map_patients
from tss.train import Experiment, grid, run_grid

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from tiny import TINY, tiny_cohort  # noqa: E402

TIMING = {"train_seconds", "examples_per_s", "seconds", "wall_seconds"}  # allowed to differ, with where it ran
WHERE = {"provenance"}
KW = {"max_epochs": 2, "train_profile": TINY}


class TinySource:
    """The tests' tiny in-memory cohort, built on the worker (a real source reads the shared cache)."""

    def __call__(self, arch, device):
        return tiny_cohort()

    def __eq__(self, other):
        return isinstance(other, TinySource)

    def __hash__(self):
        return 0


class Recorder:
    """A stand-in for a Dask client that records what the grid submits and what each task waits for."""

    def __init__(self):
        self.calls = []

    def submit(self, fn, *args, key, **kw):
        self.calls.append((key, args[7:], kw))
        return key


def test_each_run_waits_for_its_weight_source_and_for_nothing_else():
    rec = Recorder()
    exps = grid(("2d", "3d"), imagenet=False)
    futures = engine.submit_grid(rec, exps, [0, 1], TinySource(), "runs", "quick")
    waits = {key: deps for key, deps, _ in rec.calls}
    assert len(waits) == 2 * len(exps)
    for seed in (0, 1):
        for e in exps:
            src = e.source()
            want = (futures[(seed, src)],) if src else ()
            assert waits[f"train-quick-seed{seed}-{e.name}"] == want
    assert waits["train-quick-seed1-3d-stroke-genesis"] == ("train-quick-seed1-3d-genesis-random",)
    assert waits["train-quick-seed0-2d-attention-transfer"] == ("train-quick-seed0-2d-tss45-transfer",)
    assert all(kw["resources"] is None and kw["retries"] == 2 for _, _, kw in rec.calls)


def test_gpu_workers_take_one_gpu_per_run():
    rec = Recorder()
    engine.submit_grid(rec, [Experiment("2d", "stroke", "random")], [0], TinySource(), "runs", "full", gpus=True)
    assert rec.calls[0][2]["resources"] == {"GPU": 1}


def _same_run(a: Path, b: Path) -> None:
    for f in ("predictions.csv", "patients.csv"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    drop = TIMING | WHERE
    assert {k: v for k, v in sa.items() if k not in drop} == {k: v for k, v in sb.items() if k not in drop}
    ea, eb = (pd.read_csv(d / "epochs.csv").drop(columns=["train_seconds", "examples_per_s"]) for d in (a, b))
    pd.testing.assert_frame_equal(ea, eb)


@pytest.fixture(scope="module")
def client():
    c = engine.local_cluster(2)
    c.run(torch.set_num_threads, 1)
    yield c
    c.close()
    c.cluster.close()


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_local_cluster_of_two_workers_gives_the_in_process_numbers(client, tmp_path, one_thread):
    exps = [Experiment("2d", "stroke", "random"), Experiment("2d", "tss3", "transfer"), Experiment("2d", "tss3", "random")]
    for seed in (0, 1):
        run_grid(exps, tiny_cohort(), tmp_path / "here" / f"seed{seed}", "quick", seed, progress=False, **KW)
    out = engine.train_grid(client, exps, [0, 1], TinySource(), tmp_path / "there", "quick", progress=False,
                            threads=1, **KW)
    assert [(r["seed"], r["experiment"]) for r in out] == [(s, e.name) for s in (0, 1) for e in exps]
    assert not any("failed" in r for r in out)
    for seed in (0, 1):
        for e in exps:
            _same_run(tmp_path / "here" / f"seed{seed}" / e.name, tmp_path / "there" / f"seed{seed}" / e.name)


class SlowEpochs(WorkerPlugin):
    """Installed on every worker, restarted ones included: while ``flag`` exists each epoch ends with
    a pause (time to kill the worker mid-run); every resume is recorded with the worker's pid."""

    name = "slow-epochs"

    def __init__(self, flag: str, log: str):
        self.flag, self.log = flag, log

    def setup(self, worker):
        from tss.train import loop

        flag, log = self.flag, self.log
        write_log, resume = loop.Run._write_log, loop.Run._resume

        def slow_write_log(run, state):
            write_log(run, state)
            while os.path.exists(flag):
                time.sleep(0.05)

        def recorded_resume(run, *a):
            state = resume(run, *a)
            with open(log, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "epoch": state["epoch"]}) + "\n")
            return state

        loop.Run._write_log, loop.Run._resume = slow_write_log, recorded_resume


def test_a_worker_killed_mid_run_is_replaced_and_the_run_resumes_to_the_same_numbers(client, tmp_path, one_thread):
    exp = Experiment("2d", "stroke", "random")
    kw = {"max_epochs": 4, "train_profile": TINY}
    run_grid([exp], tiny_cohort(), tmp_path / "here" / "seed0", "quick", 0, progress=False, **kw)

    flag, log = tmp_path / "slow", tmp_path / "resumes.jsonl"
    flag.touch()
    client.register_plugin(SlowEpochs(str(flag), str(log)))
    fut = engine.submit_grid(client, [exp], [0], TinySource(), tmp_path / "there", "quick", threads=1, **kw)[(0, exp.name)]
    epochs = tmp_path / "there" / "seed0" / exp.name / "epochs.csv"
    deadline = time.monotonic() + 120
    while not epochs.exists():  # epoch 1 is checkpointed and logged; the worker now pauses
        assert time.monotonic() < deadline, "the run never finished its first epoch"
        time.sleep(0.05)
    busy = [w for w, keys in client.processing().items() if fut.key in keys]
    pid = client.run(os.getpid, workers=busy)[busy[0]]
    flag.unlink()
    os.kill(pid, signal.SIGKILL)  # no handler runs: the worker process is gone mid-run

    summary = fut.result(timeout=180)
    assert summary["epochs"] == 4 and not math.isnan(summary["test_auc_hemisphere"])
    resumes = [json.loads(line) for line in log.read_text().splitlines()]
    assert resumes[0] == {"pid": pid, "epoch": 0}
    assert resumes[-1]["pid"] != pid and resumes[-1]["epoch"] >= 1  # picked up where the dead worker stopped
    _same_run(tmp_path / "here" / "seed0" / exp.name, tmp_path / "there" / "seed0" / exp.name)


def _root_or_fail(x: float) -> float:
    return math.sqrt(x)


def test_patients_map_through_the_cluster_and_a_failure_stays_one_patient(client):
    items = [4.0, 9.0, -1.0, 16.0]
    with engine.patients_on(client):
        out = map_patients(_root_or_fail, items, jobs=-1, progress=False)
    assert out[:2] == [2.0, 3.0] and out[3] == 4.0
    assert isinstance(out[2], Failed) and "math domain error" in out[2].error
    assert map_patients(_root_or_fail, items[:2], jobs=1, progress=False) == [2.0, 3.0]


def test_the_command_line_takes_a_scheduler_or_a_local_cluster_but_not_both(capsys):
    from tss.cli import build_parser

    p = build_parser()
    args = p.parse_args(["train", "--profile", "quick", "--workers", "2", "--gpus"])
    assert (args.workers, args.scheduler, args.gpus) == (2, None, True)
    assert p.parse_args(["preprocess", "c", "--out", "o", "--scheduler", "tcp://h:8786"]).scheduler == "tcp://h:8786"
    assert engine.connect(None, 0) is None  # neither: in this process, as before
    with pytest.raises(SystemExit):
        p.parse_args(["synth", "--out", "o", "--workers", "2", "--scheduler", "tcp://h:8786"])
    assert "not allowed with argument" in capsys.readouterr().err
