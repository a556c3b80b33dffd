"""Preprocessing throughput: seconds per patient on one core, and for a cohort with all cores.

Run with `make bench` (or `.venv/bin/python benchmarks/bench_preprocess.py [--n N]`). Uses the quick
synthetic cohort (generated if missing) and a fresh temporary cache, so nothing is read from cache.
Target (issue 4): <= 10 s per patient per core.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tss import manifest, preprocess, project, synth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cohort", type=Path, default=project.paths("quick").cohort)
    ap.add_argument("--n-single", type=int, default=4, help="patients timed one at a time on one core")
    ap.add_argument("--n", type=int, default=16, help="patients timed with all cores")
    args = ap.parse_args()
    if not (args.cohort / manifest.MANIFEST_NAME).exists():
        synth.generate(args.cohort, n=80, seed=0)
    ids = list(manifest.load_cohort(args.cohort, check=False).table["patient_id"])

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        run = preprocess.preprocess_cohort(args.cohort, cache, jobs=1, progress=False, ids=ids[: args.n_single])
        single = (time.perf_counter() - t0) / args.n_single
        steps = [o.seconds for o in run.outcomes if o.ok]
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        preprocess.preprocess_cohort(args.cohort, cache, jobs=-1, progress=False, ids=ids[: args.n])
        wall = time.perf_counter() - t0
    cores = os.cpu_count()
    print(f"preprocessing benchmark ({args.cohort.name}, {cores} cores)")
    print(f"  one core : {single:6.1f} s per patient (wall, {args.n_single} patients; in-pipeline "
          f"median {sorted(steps)[len(steps) // 2]:.1f} s)   target <= 10 s")
    print(f"  all cores: {wall / args.n:6.1f} s per patient ({args.n} patients in {wall:.0f} s) -> "
          f"{wall / args.n * 422 / 60:.0f} min for 422 patients")


if __name__ == "__main__":
    main()
