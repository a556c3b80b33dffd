"""The quick grid's wall time with part 1's speed-ups against the loop as it was before them.

"before": float32, every frozen stage recomputed at every step, batch-norm statistics recomputed
from the whole training epoch before each evaluation (as the loop did until TRAIN_VERSION 4);
"after": what training does now: precision by device capability (bf16 autocast on a CPU with
AVX512-BF16 or AMX), frozen stages computed once per hemisphere, precise BN from a bounded number
of batches. Both run every experiment of the quick grid (2D and 3D, ImageNet excluded: no weights
offline) on one random cohort with the quick profile's patients and input sizes, to the same epoch
cap (early stopping cannot end one side sooner: patience is the cap), alternating experiment by
experiment so that a change of machine load hits both sides alike. The ratio is the figure to read
(issue 14's target: >= 3x); absolute seconds vary from run to run on these machines.

Run with `make bench` or `.venv/bin/python benchmarks/bench_quickgrid.py [--epochs E] [--patients N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_loop import cohort, write_result

from tss import precision, profiles, project
from tss.train import grid
from tss.train.loop import Run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=profiles.COHORT["quick"].n_patients)
    ap.add_argument("--epochs", type=int, default=2, help="epochs of every run (default 2; the quick profile caps at 6)")
    ap.add_argument("--out", type=Path, default=project.bench_dir())
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="adabound")
    quick = profiles.TRAIN["quick"]
    after_tp = dataclasses.replace(quick, max_epochs=args.epochs, patience=args.epochs)
    before_tp = dataclasses.replace(after_tp, precise_bn_batches=10**9)  # the whole epoch again
    cohorts = {a: cohort(args.patients, (3, *profiles.MODEL["quick"].input_shape(a))) for a in ("2d", "3d")}
    sides = {"before": dict(tp=before_tp, cache=False, precision="fp32"),
             "after": dict(tp=after_tp, cache=True, precision=None)}
    seconds = {k: {} for k in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for exp in grid(("2d", "3d"), imagenet=False):
            for name, side in sides.items():
                if side["precision"]:
                    os.environ["TSS_PRECISION"] = side["precision"]
                else:
                    os.environ.pop("TSS_PRECISION", None)
                t0 = time.perf_counter()
                Run(exp, cohorts[exp.arch], Path(tmp) / name, "quick", 0, progress=False,
                    train_profile=side["tp"], cache_frozen=side["cache"]).fit()
                seconds[name][exp.name] = time.perf_counter() - t0
            print(f"{exp.name:24s} before {seconds['before'][exp.name]:7.1f} s   after {seconds['after'][exp.name]:7.1f} s"
                  f"   x{seconds['before'][exp.name] / seconds['after'][exp.name]:.2f}", flush=True)
    os.environ.pop("TSS_PRECISION", None)
    total = {k: sum(v.values()) for k, v in seconds.items()}
    ratio = total["before"] / total["after"]
    r = {"patients": args.patients, "epochs": args.epochs, "threads": torch.get_num_threads(),
         "after_precision": precision.choose(torch.device("cpu")).name, "seconds": seconds, "total_seconds": total,
         "speedup": ratio, "target": 3.0}
    print(f"quick grid, {args.patients} patients, {args.epochs} epochs per run, {torch.get_num_threads()} threads: "
          f"before {total['before']:.0f} s, after {total['after']:.0f} s ({r['after_precision']}): "
          f"x{ratio:.2f} faster (target >= 3x)")
    write_result(args.out, "quickgrid-cpu.json", r)


if __name__ == "__main__":
    main()
