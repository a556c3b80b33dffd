"""The training loop against its bare steps: how much of the step speed reaches a whole epoch.

A bare step is forward, BCE, backward and an AdaBound step on a batch that is already in memory.
The loop (`tss.train.Run.fit`) adds everything an epoch needs: batches selected from the resident
cohort, precise BN, validation, the checkpoint and the epoch log. Both run here on one random
cohort at the quick profile's 2D input, at the precision training chooses (`tss.precision`),
side by side in one process: the ratio of their hemispheres/s is the figure to read (target >= 80%).

Run with `make bench` or `.venv/bin/python benchmarks/bench_loop.py [--patients N] [--epochs E]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from tss import precision, profiles, project
from tss.models import build
from tss.train import Experiment, Hemispheres, Run


def cohort(n_patients: int, shape) -> Hemispheres:
    """Random hemispheres with the quick profile's shape, splits 60/20/20, one stroke side each."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(n_patients):
        split = "train" if i < 0.6 * n_patients else "val" if i < 0.8 * n_patients else "test"
        for h, side in enumerate(("left", "right")):
            rows.append({"patient_id": f"p{i:03d}", "hemisphere": side, "label": int(h == i % 2), "split": split,
                         "onset_to_mri_min": 60 + 37 * i % 600, "label_source": "bench"})
    return Hemispheres(torch.rand(2 * n_patients, *shape, generator=g), pd.DataFrame(rows), key=f"bench{n_patients}")


def bare(c: Hemispheres, exp: Experiment, steps: int) -> float:
    """Hemispheres/s of bare training steps at the run's batch size and precision."""
    torch.manual_seed(0)
    model = build(exp.arch, n_slices=c.x.shape[2]).train()
    b = exp.spec.batch_size
    return step_rate(model, c.x[:b].clone(), precision.for_data(c.x), steps, exp.spec.lr, exp.spec.final_lr)


def step_rate(model, x: torch.Tensor, p: precision.Precision, steps: int, lr: float = 1e-4,
              final_lr: float = 1e-2, ready=None) -> float:
    """Examples/s of bare training steps (forward, BCE, backward, AdaBound) on the batch ``x``,
    after one warm-up step; ``ready`` (say a barrier's ``wait``) is called between the two, so that
    processes measured side by side all start timing together."""
    import adabound

    opt = adabound.AdaBound(model.parameters(), lr=lr, final_lr=final_lr)
    y = (torch.arange(len(x)) % 2).float()

    def step():
        with torch.autocast("cpu", dtype=p.dtype or torch.bfloat16, enabled=p.dtype is not None):
            out = model(x)
        loss = F.binary_cross_entropy_with_logits(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    if ready is not None:
        ready()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(x) / (time.perf_counter() - t0)


def loop(c: Hemispheres, exp: Experiment, epochs: int) -> tuple[float, float]:
    """(hemispheres/s over whole epochs, hemispheres/s of their training steps alone)."""
    tp = profiles.TrainProfile(max_epochs=epochs, patience=epochs, seeds=(0,), genesis_cubes=8,
                               medical_per_epoch=8, synthetic_eval=8)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(exp, c, tmp, "quick", 0, progress=False, train_profile=tp)
        run.fit()
        log = pd.read_csv(Path(tmp) / exp.name / "epochs.csv")
        summary = json.loads((Path(tmp) / exp.name / "summary.json").read_text())
    n_train = len(c.rows("train"))
    return n_train * epochs / summary["wall_seconds"], float(np.median(log["examples_per_s"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 200 patients: 240 training hemispheres an epoch, so that validation and precise BN weigh
    # what they weigh in a paper-size run (the lowres profile has ~540), not three times more
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", type=Path, default=project.bench_dir())
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="adabound")
    shape = (3, *profiles.MODEL["quick"].input_shape("2d"))
    c = cohort(args.patients, shape)
    exp = Experiment("2d", "stroke", "random")
    p = precision.for_data(c.x)
    # alternate: bare, loop, bare; the loop is compared with the mean of the bare steps around it
    b1 = bare(c, exp, args.steps)
    whole, steps_only = loop(c, exp, args.epochs)
    b2 = bare(c, exp, args.steps)
    b = (b1 + b2) / 2
    r = {"experiment": exp.name, "shape": list(shape), "precision": p.name, "batch": exp.spec.batch_size,
         "threads": torch.get_num_threads(), "train_hemispheres": len(c.rows("train")), "epochs": args.epochs,
         "bare_hemis_per_s": b, "loop_hemis_per_s": whole, "loop_steps_hemis_per_s": steps_only,
         "loop_over_bare": whole / b, "target": 0.8}
    print(f"{exp.name} at {'x'.join(map(str, shape[1:]))}, {p.name}, batch {exp.spec.batch_size}, "
          f"{r['train_hemispheres']} training hemispheres, {args.epochs} epochs:")
    print(f"  bare steps {b:.1f} hemis/s (runs {b1:.1f}, {b2:.1f}); the loop's steps {steps_only:.1f}; "
          f"whole epochs {whole:.1f} hemis/s = {whole / b:.0%} of the bare steps (target >= 80%)")
    write_result(args.out, "loop-cpu.json", r)


def write_result(out_dir: Path, name: str, r: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / name).write_text(json.dumps(r, indent=1))
    print(f"wrote {out_dir / name}")


if __name__ == "__main__":
    main()
