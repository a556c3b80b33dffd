"""results/<profile>/provenance.json and the runs' own records say how the numbers were made."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import torch

from tss import project, provenance


def test_a_stage_records_the_environment_and_keeps_the_other_stages(tmp_path):
    provenance.record_stage(tmp_path, "01_cohort", 12.3)
    provenance.record_stage(tmp_path, "02_preprocessing", 45.6)
    provenance.record_stage(tmp_path, "01_cohort", 1.0)  # a rerun replaces its own stage only
    data = json.loads((tmp_path / "provenance.json").read_text())
    assert set(data["stages"]) == {"01_cohort", "02_preprocessing"}
    assert data["stages"]["01_cohort"]["seconds"] == 1.0 and data["stages"]["02_preprocessing"]["seconds"] == 45.6
    env = data["stages"]["02_preprocessing"]["environment"]
    assert env["torch"] == torch.__version__ and env["torch_threads"] == torch.get_num_threads()
    assert env["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert env["packages"]["numpy"] == __import__("numpy").__version__
    lock = project.root() / "requirements.lock"
    assert env["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    head = subprocess.run(["git", "-C", str(project.root()), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert env["commit"] == head.stdout.strip()


def test_tables_show_each_stage_and_each_distinct_environment(tmp_path):
    provenance.record_stage(tmp_path, "a", 60)
    provenance.record_stage(tmp_path, "b", 30)
    stages = provenance.stages_table(tmp_path)
    assert list(stages["stage"]) == ["a", "b"] and stages["seconds"].sum() == 90
    env = provenance.environment_table(tmp_path)
    assert list(env.columns) == ["a, b"]  # one environment for both
    assert env.loc["torch", "a, b"] == torch.__version__
    # another machine for stage b: two columns
    data = json.loads((tmp_path / "provenance.json").read_text())
    data["stages"]["b"]["environment"]["cpu"] = "another CPU"
    (tmp_path / "provenance.json").write_text(json.dumps(data))
    assert sorted(provenance.environment_table(tmp_path).columns) == ["a", "b"]


def test_runs_are_grouped_by_the_machine_that_trained_them(tmp_path):
    other = {**provenance.brief(), "commit": "f" * 40, "lock_sha256": "e" * 64}
    for seed, exp, secs, prov, prec in [(0, "2d-stroke-random", 3600, provenance.brief(), "fp32"),
                                        (0, "2d-tss3-transfer", 1800, other, "fp32"),
                                        (1, "2d-tss3-transfer", 1800, provenance.brief(), "bf16"),
                                        (1, "2d-stroke-random", 900, None, "fp32")]:
        d = tmp_path / f"seed{seed}" / exp
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"wall_seconds": secs, "provenance": prov, "precision": prec}))
    t = provenance.runs_table(tmp_path)
    assert t["runs"].sum() == 4
    fp32 = t[(t["machine"] != "not recorded") & (t["precision"] == "fp32")].iloc[0]
    assert fp32["runs"] == 2 and fp32["hours"] == 1.5 and fp32["commits"] == 2 and fp32["locks"] == 2
    assert t[t["precision"] == "bf16"]["runs"].tolist() == [1]  # another precision: its own row
    assert t.set_index("machine").loc["not recorded", "hours"] == 0.25
    said = provenance.runs_said(tmp_path)
    assert said.startswith("4 runs (2.2 hours of training) came from 3 commits and 3 lock files, on 3 machine kinds")
    assert provenance.runs_said(tmp_path / "none") == ""


def test_the_record_follows_the_threads_a_process_sets_after_its_first_record():
    before = torch.get_num_threads()
    try:
        provenance.brief()
        torch.set_num_threads(1)
        assert provenance.brief()["torch_threads"] == 1  # a Dask worker sets its threads per task
        torch.set_num_threads(2)
        assert provenance.brief()["torch_threads"] == 2
    finally:
        torch.set_num_threads(before)
