"""Interrupted work resumes with the same numbers (issue 13, part 4).

A training run and a preprocessing run are started in a subprocess, paused at a chosen point
(during an epoch, half-way through writing ``last.pt``, half-way through the final predictions,
half-way through a patient's ``.npz``), killed there with SIGKILL (no exception handler, no
``finally`` block runs), rerun, and compared with an uninterrupted run: the numbers are identical
and no half-written file is ever opened for reading (an audit hook in the child records every
file it opens for reading under its output folder).

The pause is deterministic, not a blind sleep: the child monkeypatches the function at the kill
point to write a marker file and sleep; the parent waits for the marker and sends SIGKILL.

Two tests are expected failures (strict, so that the fix shows up): a kill between the final epoch's
``last.pt`` and its ``epochs.csv`` row loses that row (tss/train/loop.py), and preprocessing is not
repeatable at all, interrupted or not, because the first registration stage samples with a
wall-clock seed (tss/preprocess/steps.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TIMEOUT = 240  # seconds for any one child; a hung child is killed, never waited on forever
EXP = "2d-stroke-random"
EPOCHS = 3
TIMING = {"train_seconds", "examples_per_s", "seconds", "wall_seconds"}  # the only fields allowed to differ
# ... besides the summary's record of where it ran: the git state changes when the tree is edited while
# the two runs train (a developer at work), and that is no difference in the run
WHERE = {"provenance"}

pytestmark = pytest.mark.slow

# The child. argv[1]: JSON with mode (train | prep), out, kill ("" | "step:E" | "save:E" | "csv:E" |
# "finish" | "npz"), marker, audit, and for prep the cohort folder.
DRIVER = r'''
import io, json, os, sys, time

ARGS = json.loads(sys.argv[1])
OUT = os.path.abspath(ARGS["out"])
KIND, _, AT = ARGS["kill"].partition(":")
AT = int(AT) if AT else None
AUDIT = open(ARGS["audit"], "a", buffering=1)  # opened before the hook: writing it raises no event


def note(**kw):
    AUDIT.write(json.dumps(kw) + "\n")
    AUDIT.flush()


def hook(event, args):
    # every file opened for reading (os.O_RDONLY) under the output folder
    if event != "open":
        return
    try:
        path, flags = args[0], args[2]
        if isinstance(path, int) or flags is None or flags & 3:
            return
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(OUT + os.sep):
            note(read=path)
    except Exception:  # an audit hook must never break the operation it watches
        pass


sys.addaudithook(hook)


def pause(what):
    with open(ARGS["marker"] + ".part", "w") as f:
        f.write(what)
    os.replace(ARGS["marker"] + ".part", ARGS["marker"])
    parent, end = os.getppid(), time.monotonic() + 300
    while os.getppid() == parent and time.monotonic() < end:  # the parent sends SIGKILL now; an
        time.sleep(0.1)  # orphan (the test process itself killed) does not linger
    os._exit(3)


def half_write(path, write_all):
    """Write the first half of what write_all(buffer) produces to path, durably, then pause."""
    buf = io.BytesIO()
    write_all(buf)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
    pause(f"half of {os.path.basename(path)} ({len(data) // 2} of {len(data)} bytes)")


if ARGS["mode"] == "train":
    import torch

    torch.set_num_threads(1)
    import pandas as pd

    import tss.train.loop as loop
    sys.path.insert(0, ARGS["tests"])
    from tiny import TINY, tiny_cohort
    from tss.train import Experiment, Run

    count = {"resumed": 0, "saved": 0}
    real_load, real_save, real_step, real_csv = torch.load, torch.save, loop._quiet_step, pd.DataFrame.to_csv

    def done():  # epochs completed (checkpointed) so far
        return count["resumed"] + count["saved"]

    def load(f, *a, **k):
        obj = real_load(f, *a, **k)
        if str(f).endswith("last.pt"):
            count["resumed"] = obj["state"]["epoch"]
            note(resumed=count["resumed"])
        return obj

    def save(obj, f, *a, **k):
        last = str(f).endswith("last.pt")  # the temporary name beside last.pt keeps its name
        if last and KIND == "save" and done() + 1 == AT:
            half_write(f, lambda buf: real_save(obj, buf, *a, **k))
        real_save(obj, f, *a, **k)
        count["saved"] += last

    def step(opt, *args):
        real_step(opt, *args)
        if KIND == "step" and done() + 1 == AT:
            pause(f"after an optimizer step of epoch {AT}, before its validation and checkpoint")

    def to_csv(self, path_or_buf=None, *a, **k):
        p = str(path_or_buf)
        if KIND == "csv" and p.endswith("epochs.csv") and done() == AT:
            pause(f"after last.pt of epoch {AT} replaced, before epochs.csv written")
        if KIND == "finish" and p.endswith("patients.csv") and k.get("mode") == "a":
            pause("patients.csv half-written (validation rows only), summary.json not yet")
        return real_csv(self, path_or_buf, *a, **k)

    torch.load, torch.save, loop._quiet_step, pd.DataFrame.to_csv = load, save, step, to_csv
    s = Run(Experiment("2d", "stroke", "random"), tiny_cohort(), OUT, "quick", 3, max_epochs=ARGS["epochs"],
            progress=False, train_profile=TINY).fit()
    note(finished=s["epochs"])
else:
    import numpy as np

    from tss import preprocess

    real = np.savez_compressed

    def savez(file, *a, **k):
        if KIND == "npz":
            half_write(file, lambda buf: real(buf, *a, **k))
        return real(file, *a, **k)

    np.savez_compressed = savez
    run = preprocess.preprocess_cohort(ARGS["cohort"], OUT, jobs=1, progress=False)
    note(outcomes=[{"patient_id": o.patient_id, "ok": o.ok, "cached": o.cached, "reason": o.reason}
                   for o in run.outcomes])
'''


# -- running, pausing and killing children ------------------------------------------------------

class Child:
    """One driver process; its output goes to a log file (a pipe could fill up and block it)."""

    live: list[Child] = []

    def __init__(self, work: Path, name: str, **args):
        self.name, self.work = name, work
        self.marker, self.audit, self.log = work / f"{name}.marker", work / f"{name}.audit", work / f"{name}.log"
        driver = work / "driver.py"
        if not driver.exists():
            driver.write_text(DRIVER)
        args = {"kill": "", "marker": str(self.marker), "audit": str(self.audit), "tests": str(TESTS), **args}
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, str(driver), json.dumps(args)], cwd=ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        Child.live.append(self)

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def kill_at_marker(self) -> str:
        """Wait for the child to reach its pause point, then SIGKILL it; returns what it was doing."""
        deadline = time.monotonic() + TIMEOUT
        while not self.marker.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.proc.returncode}) before its kill point:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} did not reach its kill point in {TIMEOUT} s:\n{self.tail()}")
            time.sleep(0.05)
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL
        return self.marker.read_text()

    def finish(self) -> list[dict]:
        """Wait for a normal exit; returns the audit records."""
        try:
            rc = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"{self.name} did not finish in {TIMEOUT} s:\n{self.tail()}")
        assert rc == 0, f"{self.name} failed ({rc}):\n{self.tail()}"
        return self.records()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.audit.read_text().splitlines()] if self.audit.exists() else []

    def reads(self) -> list[str]:
        return [r["read"] for r in self.records() if "read" in r]


@pytest.fixture(autouse=True)
def _no_orphans():
    yield
    while Child.live:
        Child.live.pop().stop()


def _tmp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*.tmp.*"))


def _no_tmp_read(child: Child) -> None:
    bad = [p for p in child.reads() if ".tmp." in Path(p).name]
    assert not bad, f"{child.name} opened temporary (possibly half-written) files for reading: {bad}"


def _same(a, b, where="") -> None:
    """Exact equality of nested checkpoints / summaries, timing fields excepted."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            if k not in TIMING and not (where == "summary" and k in WHERE):
                _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# -- training -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def train_reference(tmp_path_factory):
    """The uninterrupted run, started at once and waited for when first compared (it overlaps the
    first killed child)."""
    work = tmp_path_factory.mktemp("train-ref")
    child = Child(work, "reference", mode="train", out=str(work / "out"), epochs=EPOCHS)
    Child.live.remove(child)  # module-scoped: not stopped after the first test
    state = {}

    def get() -> Path:
        if not state:
            child.finish()
            _no_tmp_read(child)
            state["dir"] = work / "out" / EXP
        return state["dir"]
    yield get
    child.stop()


def _assert_same_run(ref: Path, got: Path) -> None:
    for name in ("predictions.csv", "patients.csv"):
        assert (got / name).read_bytes() == (ref / name).read_bytes(), name
    a, b = pd.read_csv(ref / "epochs.csv"), pd.read_csv(got / "epochs.csv")
    cols = [c for c in a.columns if c not in TIMING]
    assert list(a.columns) == list(b.columns) and len(a) == len(b) == EPOCHS, (a, b)
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    _same(json.loads((ref / "summary.json").read_text()), json.loads((got / "summary.json").read_text()), "summary")
    for ck in ("best.pt", "last.pt"):
        _same(torch.load(ref / ck, weights_only=False), torch.load(got / ck, weights_only=False), ck)


def test_sigkill_during_an_epoch_in_a_checkpoint_and_in_the_predictions_resumes_to_the_same_numbers(
        train_reference, tmp_path):
    out = tmp_path / "out"
    run = out / EXP
    args = dict(mode="train", out=str(out), epochs=EPOCHS)

    # 1. killed during epoch 2 (its optimizer step taken, not yet validated or checkpointed)
    first = Child(tmp_path, "during-epoch", kill="step:2", **args)
    assert "epoch 2" in first.kill_at_marker()
    log1 = pd.read_csv(run / "epochs.csv")
    assert list(log1["epoch"]) == [1]
    assert torch.load(run / "last.pt", weights_only=False)["state"]["epoch"] == 1
    assert not _tmp_files(run) and not (run / "summary.json").exists()

    # 2. resumed, killed half-way through writing epoch 2's last.pt
    second = Child(tmp_path, "in-checkpoint", kill="save:2", **args)
    assert "half of" in second.kill_at_marker()
    assert {"resumed": 1} in second.records()
    _no_tmp_read(second)
    (half,) = _tmp_files(run)
    assert half.name.endswith("last.pt") and half.stat().st_size > 0
    with pytest.raises(RuntimeError):  # PytorchStreamReader failed reading zip archive
        torch.load(half, weights_only=False)  # truly half a file...
    assert torch.load(run / "last.pt", weights_only=False)["state"]["epoch"] == 1  # ...and last.pt intact
    half_bytes = half.read_bytes()

    # 3. resumed from epoch 1 (not from the half file), killed with patients.csv half-written
    third = Child(tmp_path, "in-predictions", kill="finish", **args)
    assert "patients.csv" in third.kill_at_marker()
    assert {"resumed": 1} in third.records()
    _no_tmp_read(third)
    assert not (run / "summary.json").exists()
    assert set(pd.read_csv(run / "patients.csv")["split"]) == {"val"}
    log3 = pd.read_csv(run / "epochs.csv")
    assert list(log3["epoch"]) == [1, 2, 3]

    # 4. resumed after the last epoch: only the predictions are made again
    fourth = Child(tmp_path, "to-the-end", **args)
    records = fourth.finish()
    assert {"resumed": EPOCHS} in records and {"finished": EPOCHS} in records
    _no_tmp_read(fourth)
    assert str(run / "last.pt") in fourth.reads()

    _assert_same_run(train_reference(), run)
    log = pd.read_csv(run / "epochs.csv")
    # epoch 1 was trained once (by the first child), epochs 2-3 by the third: their timings survive
    assert log["train_seconds"][0] == log1["train_seconds"][0]
    assert list(log["train_seconds"]) == list(log3["train_seconds"])
    # the killed writer's temporary file is left behind (SIGKILL runs no clean-up) but never read;
    # every other temporary file was replaced or removed
    assert _tmp_files(run) == [half] and half.read_bytes() == half_bytes


def test_sigkill_between_the_final_checkpoint_and_epochs_csv_keeps_every_epoch_row(train_reference, tmp_path):
    out = tmp_path / "out"
    run = out / EXP
    args = dict(mode="train", out=str(out), epochs=EPOCHS)
    killed = Child(tmp_path, "before-epochs-csv", kill=f"csv:{EPOCHS}", **args)
    assert f"epoch {EPOCHS}" in killed.kill_at_marker()
    assert torch.load(run / "last.pt", weights_only=False)["state"]["epoch"] == EPOCHS
    resumed = Child(tmp_path, "after", **args)
    assert {"resumed": EPOCHS} in resumed.finish()
    _no_tmp_read(resumed)
    _assert_same_run(train_reference(), run)


# -- preprocessing ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_patient(tmp_path_factory):
    """A one-patient synthetic cohort (the first patient of the 10-patient seed-3 plan): rendering it
    alone takes seconds, ``synth.generate`` needs at least 10 patients."""
    from tss import manifest
    from tss.synth import _render_one, patient_paths
    from tss.synth.cohort import sample_patients

    root = tmp_path_factory.mktemp("one-patient")
    plan = sample_patients(10, 3).to_dict("records")[0]
    _render_one(plan, 3, 0, str(root))
    paths = patient_paths(plan["patient_id"])
    row = {"patient_id": plan["patient_id"], **{k: paths[k] for k in ("b1000", "b0", "flair", "lesion_mask")},
           "onset_to_mri_min": plan["onset_to_mri_min"], "stroke_side": plan["stroke_side"], "split": "train"}
    manifest.write_manifest(pd.DataFrame([row]), root / manifest.MANIFEST_NAME)
    return root, plan["patient_id"]


@pytest.fixture(scope="module")
def prep_killed(one_patient, tmp_path_factory):
    """An uninterrupted preprocessing run, and beside it one killed half-way through writing the
    patient's ``.npz`` (the patient computed, its archive half on disk) and then rerun."""
    cohort, pid = one_patient
    work = tmp_path_factory.mktemp("prep")
    ref_out, out = work / "ref", work / "out"
    # the uninterrupted run and the one to kill run side by side (one core each)
    reference = Child(work, "reference", mode="prep", cohort=str(cohort), out=str(ref_out))
    killed = Child(work, "in-npz", mode="prep", cohort=str(cohort), out=str(out), kill="npz")
    try:
        what = killed.kill_at_marker()
        patients = out / "patients"
        after_kill = {"what": what, "files": sorted(p.name for p in patients.iterdir()), "tmp": _tmp_files(patients)}
        after_kill["half_bytes"] = after_kill["tmp"][0].read_bytes() if after_kill["tmp"] else b""
        rerun = Child(work, "rerun", mode="prep", cohort=str(cohort), out=str(out))
        rerun.finish()
        reference.finish()
    finally:
        for c in (reference, killed, *[c for c in Child.live if c.work == work]):
            c.stop()
            if c in Child.live:
                Child.live.remove(c)
    return {"pid": pid, "ref_out": ref_out, "out": out, "after_kill": after_kill,
            "reference": reference, "rerun": rerun}


def _outcomes(child: Child) -> list[dict]:
    (outcomes,) = [r["outcomes"] for r in child.records() if "outcomes" in r]
    return outcomes


def test_preprocessing_killed_in_the_middle_of_a_patient_recomputes_it_never_reading_half_a_file(prep_killed):
    from tss import preprocess

    pid, out, k = prep_killed["pid"], prep_killed["out"], prep_killed["after_kill"]
    assert "half of" in k["what"]
    # killed with half an archive on disk: under its temporary name, no .npz or .json for the patient
    (half,) = k["tmp"]
    assert half.name.endswith(f"{pid}.npz") and k["files"] == [half.name] and len(k["half_bytes"]) > 0
    with pytest.raises(zipfile.BadZipFile):
        with np.load(half) as z:
            [z[name] for name in z.files]  # truly half an archive
    # the rerun computed the patient again, never opened the half file, and left a readable cache
    rerun, reference = prep_killed["rerun"], prep_killed["reference"]
    assert _outcomes(rerun) == [{"patient_id": pid, "ok": True, "cached": False, "reason": ""}]
    assert _outcomes(reference) == _outcomes(rerun)
    _no_tmp_read(rerun)
    _no_tmp_read(reference)
    a, b = preprocess.load_patient(prep_killed["ref_out"], pid), preprocess.load_patient(out, pid)
    assert set(a) == set(b) and set(a["meta"]) == set(b["meta"])
    for name in set(a) - {"meta"}:
        assert (a[name].dtype, a[name].shape) == (b[name].dtype, b[name].shape), name
    assert a["meta"]["cache_key"] == b["meta"]["cache_key"]
    # the killed writer's temporary file is left behind (SIGKILL runs no clean-up) but never read;
    # the rerun's own temporary files were replaced or removed
    assert _tmp_files(out) == [half] and half.read_bytes() == k["half_bytes"]
    assert not _tmp_files(prep_killed["ref_out"])


def test_preprocessing_killed_in_the_middle_of_a_patient_gives_the_same_numbers(prep_killed):
    from tss import preprocess

    pid = prep_killed["pid"]
    a, b = preprocess.load_patient(prep_killed["ref_out"], pid), preprocess.load_patient(prep_killed["out"], pid)
    meta = {name: (a["meta"][name], b["meta"][name]) for name in a["meta"]
            if name not in TIMING and a["meta"][name] != b["meta"][name]}
    arrays = {name: int((a[name] != b[name]).sum()) for name in a if name != "meta"}
    assert not meta and not any(arrays.values()), f"differing meta {sorted(meta)}, differing elements {arrays}"
