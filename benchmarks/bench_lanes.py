"""Two runs at once or one run on all cores: throughput of independent training processes on a CPU.

A grid has many independent runs, and a CPU has several cores: they can go to one run (torch's
intra-op threads) or to several runs at once, one thread each (`tss train --workers N --threads 1`,
or N shell "lanes"). Small models at small inputs do not keep several threads busy, so the second
may finish a grid sooner. This measures it at the lowres profile's 2D and 3D inputs: bare training
steps (forward, BCE, backward, AdaBound; `bench_loop.step_rate`) of one process with N threads,
then of N one-thread processes timed together after their warm-up steps (their examples over the
slowest one's time), then of the N-thread process again. The ratio of the N processes'
total hemispheres/s to the mean of the two N-thread measurements is the figure to read (> 1: run
the grid's independent runs side by side).

Run with `make bench` or `.venv/bin/python benchmarks/bench_lanes.py [--lanes N] [--steps S]`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import warnings
from pathlib import Path

import torch
from bench_loop import step_rate, write_result

from tss import precision, profiles, project
from tss.models import build

BATCH = 8  # the grid's batch size of both models
LANE_TIMEOUT_S = 1800  # no lane waits longer than this for the others, nor the parent for a lane


def _rate(arch: str, threads: int, steps: int, start=None) -> float:
    """Examples/s of ``steps`` bare steps in this process with ``threads`` threads; with ``start`` (a
    barrier) all lanes build their model and take their warm-up step first, then time together."""
    warnings.filterwarnings("ignore", category=UserWarning, module="adabound")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shape = (3, *profiles.MODEL["lowres"].input_shape(arch))
    model = build(arch, n_slices=shape[1]).train()
    x = torch.rand(BATCH, *shape)
    return step_rate(model, x, precision.choose(x.device), steps, ready=None if start is None else start.wait)


def _lane(arch, steps, start, out):
    try:
        out.put(_rate(arch, 1, steps, start))
    except BaseException as e:  # a lane that fails frees the others from the barrier and says why
        start.abort()
        out.put(e)
        raise


def lanes(arch: str, n: int, steps: int) -> float:
    """Total examples/s of ``n`` one-thread processes that train side by side: all lanes' steps over
    the slowest lane's time (they start timing together, after their warm-up step, as the one-process
    rate does)."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(n, timeout=LANE_TIMEOUT_S), ctx.Queue()
    procs = [ctx.Process(target=_lane, args=(arch, steps, start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    rates = [out.get(timeout=LANE_TIMEOUT_S) for _ in procs]  # queue.Empty if a lane died unheard
    for p in procs:
        p.join()
    if failed := [r for r in rates if isinstance(r, BaseException)]:
        raise RuntimeError(f"{len(failed)} of {n} lanes failed: {failed[0]!r}")
    return n * min(rates)  # every lane ran the same steps: n of them in the slowest lane's time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lanes", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--steps", type=int, default=20, help="bare steps per measurement and lane")
    ap.add_argument("--archs", default="2d,3d")
    ap.add_argument("--out", type=Path, default=project.bench_dir())
    args = ap.parse_args()
    n, rows = args.lanes, []
    for arch in args.archs.split(","):
        shape = profiles.MODEL["lowres"].input_shape(arch)
        one1 = _rate(arch, n, args.steps)
        side = lanes(arch, n, args.steps)
        one2 = _rate(arch, n, args.steps)
        one = (one1 + one2) / 2
        rows.append({"arch": arch, "shape": list(shape), "batch": BATCH, "lanes": n,
                     "precision": precision.choose(torch.device("cpu")).name,
                     "one_process_hemis_per_s": one, "one_process_runs": [one1, one2],
                     "lanes_hemis_per_s": side, "lanes_over_one": side / one})
        print(f"{arch} at {'x'.join(map(str, shape[1:]))}, batch {BATCH}: one process with {n} threads "
              f"{one:.1f} hemis/s (runs {one1:.1f}, {one2:.1f}); {n} one-thread processes side by side "
              f"{side:.1f} hemis/s in all = x{side / one:.2f}")
    write_result(args.out, "lanes-cpu.json", {"threads": n, "results": rows})


if __name__ == "__main__":
    main()
