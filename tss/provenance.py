"""How a result was made: the machine, the software and the code behind ``results/<profile>/``.

Two records, both small JSON:

- every training run's ``summary.json`` carries :func:`brief` of the machine that trained it (a
  rerun that reads a finished run back does not change it);
- ``results/<profile>/provenance.json`` holds, for each stage of ``make book`` (one notebook), the
  wall time of its last execution and the full :func:`environment` it ran in.

The book's appendix renders both (:func:`stages_table`, :func:`environment_table`,
:func:`runs_table`). Run as ``python -m tss.provenance RESULTS_DIR --stage NAME --since $(date +%s.%N)``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pandas as pd

from . import project
from .atomic import write_text
from .runtree import RunTree


def cpu_model() -> str:
    """The processor's marketing name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _project_root() -> Path | None:
    try:
        return project.root()
    except FileNotFoundError:  # an installed wheel: no checkout, no lock, no git
        return None


def lock_hash(lock: Path | None = None) -> str | None:
    """sha256 of the project's ``requirements.lock`` (or ``lock``); None where it is absent (e.g. an
    installed wheel)."""
    if lock is None:
        r = _project_root()
        lock = r / "requirements.lock" if r is not None else None
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock is not None and lock.exists() else None


def git_commit(root: Path | None = None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the project's working tree (or ``root``'s;
    None outside git)."""
    root = root if root is not None else _project_root()
    if root is None:
        return {"commit": None, "dirty": None}

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        # results/ and the generated book change during a build: they are outputs, not the code
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!book/generated")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _torch() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu,
            "gpus": torch.cuda.device_count() if gpu else 0, "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


@lru_cache(maxsize=1)
def _static() -> dict:
    """What cannot change within a process."""
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), **_torch()}


def brief() -> dict:
    """What a training summary records: Python, torch, CPU/GPU, threads, lock hash, commit. Threads,
    lock and commit are read at each call: a process may set its threads after its first run (a Dask
    worker, ``--threads``), and a notebook session outlives commits."""
    import torch

    return {**_static(), "torch_threads": torch.get_num_threads(), "lock_sha256": lock_hash(), **git_commit()}


def environment() -> dict:
    """:func:`brief` plus the version of every installed distribution."""
    packages = {d.metadata["Name"].lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return {**brief(), "packages": dict(sorted(packages.items()))}


def record_stage(results_dir, stage: str, seconds: float) -> Path:
    """Set ``stage``'s wall time and environment in ``results_dir/provenance.json`` (atomically;
    other stages are kept)."""
    path = Path(results_dir) / "provenance.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {"stages": {}}
    data["stages"][stage] = {"seconds": round(float(seconds), 1),
                             "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "environment": environment()}
    write_text(path, json.dumps(data, indent=1, sort_keys=True))
    return path


def read(results_dir) -> dict:
    path = Path(results_dir) / "provenance.json"
    return json.loads(path.read_text()) if path.exists() else {"stages": {}}


def stages_table(results_dir) -> pd.DataFrame:
    """One row per stage: wall time of its last execution, when, on what, from which commit."""
    rows = []
    for stage, s in sorted(read(results_dir)["stages"].items()):
        e = s["environment"]
        rows.append({"stage": stage, "seconds": s["seconds"],
                     "finished (UTC)": s["finished"].replace("T", " ")[:16],
                     "commit": (e["commit"] or "-")[:10] + (" (modified)" if e.get("dirty") else ""),
                     "device": e["gpu"] or f"CPU, {e['torch_threads']} threads"})
    return pd.DataFrame(rows, columns=["stage", "seconds", "finished (UTC)", "commit", "device"])


# the packages a reader of the numbers cares about first; every other one is in provenance.json
KEY_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas", "simpleitk", "torchio",
                "nibabel", "nilearn", "adabound", "grad-cam", "statsmodels", "jupyter-book")


def environment_table(results_dir) -> pd.DataFrame:
    """The environment of each stage, one column per distinct environment, one row per fact."""
    envs = {}
    for stage, s in sorted(read(results_dir)["stages"].items()):
        e = s["environment"]
        facts = {"Python": e["python"], "platform": e["platform"], "CPU": e["cpu"],
                 "CPU cores / torch threads": f"{e['cpu_count']} / {e['torch_threads']}",
                 "CPU kernels": e["cpu_capability"], "GPU": e["gpu"] or "none",
                 "CUDA (torch build)": e["cuda"] or "-",
                 "requirements.lock sha256": (e["lock_sha256"] or "-")[:16],
                 "git commit": (e["commit"] or "-")[:10] + (" (modified)" if e.get("dirty") else ""),
                 **{p: e["packages"].get(p, "-") for p in KEY_PACKAGES},
                 "torch": e["torch"]}  # with its build tag (+cu130, +cpu)
        key = json.dumps(facts, sort_keys=True)
        envs.setdefault(key, (facts, []))[1].append(stage)
    if not envs:
        return pd.DataFrame()
    cols = {", ".join(stages): facts for facts, stages in envs.values()}
    return pd.DataFrame(cols)


def _run_rows(runs_dir) -> pd.DataFrame:
    rows = []
    for s in RunTree(runs_dir).summaries():
        d = json.loads(s.read_text())
        p = d.get("provenance") or {}
        cpu = f"{p['cpu']}, {p.get('cpu_capability', '?')}" if p else "not recorded"
        rows.append({"machine": p.get("gpu") or cpu, "precision": d.get("precision", "-"),
                     "threads": p.get("torch_threads", "-") if p else "-",
                     "torch": p.get("torch", "-"), "commit": (p.get("commit") or "-")[:10],
                     "lock": (p.get("lock_sha256") or "-")[:10], "dirty": bool(p.get("dirty")),
                     "hours": d.get("wall_seconds", 0.0) / 3600})
    return pd.DataFrame(rows, columns=["machine", "precision", "threads", "torch", "commit", "lock", "dirty", "hours"])


def runs_table(runs_dir) -> pd.DataFrame:
    """Training runs grouped by the machine (processor and its vector extensions, or GPU), precision,
    threads and software that trained them: commits, lock files, runs, hours of wall time."""
    df = _run_rows(runs_dir)
    if df.empty:
        return pd.DataFrame(columns=["machine", "precision", "threads", "torch", "commits", "locks", "runs", "hours"])
    return (df.groupby(["machine", "precision", "threads", "torch"], as_index=False)
              .agg(commits=("commit", "nunique"), locks=("lock", "nunique"), runs=("hours", "size"),
                   hours=("hours", "sum")))


def runs_said(runs_dir) -> str:
    """One sentence on what produced a profile's runs: how many runs, commits, lock files, machine
    kinds and precisions; empty without runs."""
    df = _run_rows(runs_dir)
    if df.empty:
        return ""
    kinds = sorted({f"{m} ({p})" for m, p in zip(df["machine"], df["precision"])})
    dirty = int(df["dirty"].sum())

    def n(k: int, what: str) -> str:
        return f"{k} {what}{'' if k == 1 else 's'}"

    return (f"{n(len(df), 'run')} ({df['hours'].sum():.1f} hours of training) came from "
            f"{n(df['commit'].nunique(), 'commit')} and {n(df['lock'].nunique(), 'lock file')}, on "
            f"{n(len(kinds), 'machine kind')}: {'; '.join(kinds)}"
            + (f"; {n(dirty, 'run')} from a working tree with uncommitted changes" if dirty else "") + ".")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tss.provenance", description=record_stage.__doc__)
    p.add_argument("results_dir", type=Path, help="results/<profile>")
    p.add_argument("--stage", required=True, help="the stage's name (the notebook)")
    p.add_argument("--since", type=float, required=True, help="when it started (seconds since the epoch)")
    args = p.parse_args(argv)
    print(f"provenance: {record_stage(args.results_dir, args.stage, time.time() - args.since)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
