"""Every experiment of the grid for one epoch at the full profile's shapes (224 x 112 hemispheres,
Genesis and tumour cubes of 16 x 64 x 64), on 10 patients of a processed cohort, on the training
device, in the precision training chooses (tss.precision: bf16 autocast on a GPU or a CPU that has
bf16, fp16 with a gradient scaler on a GPU without it); with CUDA the cohort is resident in that
dtype, as in the full run; `--bf16` holds it in bf16 on the CPU too.

Run with `make bench` (or `.venv/bin/python benchmarks/bench_grid.py [--cache DIR] [--bf16]`). It is
the pre-flight of a full run (a shape or dtype error shows up in minutes, not after an hour) and it
prints seconds and examples/s per experiment; it writes `results/bench/grid-{cpu,cuda}.json`.
Throughput of the bare steps against the H100 ceiling is bench_models.py's job.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tss import precision, profiles, project
from tss.task import Task
from tss.train import Hemispheres, grid, run_grid

# a few examples of each synthetic task and one epoch: enough to run every code path once
TINY = profiles.TrainProfile(max_epochs=1, patience=1, seeds=(0,), genesis_cubes=16, medical_per_epoch=16,
                             synthetic_eval=8)


def subset(cohort: Hemispheres, per_split=(("train", 6), ("val", 2), ("test", 2))) -> Hemispheres:
    """Patients with a stroke, half of each split before 4.5 h and half after, so every task has both classes."""
    idx, pick = cohort.index, []
    for split, n in per_split:
        pts = idx[(idx["split"] == split) & (idx["label"] == 1)].drop_duplicates("patient_id")
        early = pts[Task.TSS45.label(pts["onset_to_mri_min"]) == 1]["patient_id"].tolist()
        late = pts[Task.TSS45.label(pts["onset_to_mri_min"]) == 0]["patient_id"].tolist()
        if len(early) < n // 2 or len(late) < n // 2:
            raise ValueError(f"the {split} split needs {n // 2} stroke patients either side of 4.5 h")
        pick += early[: n // 2] + late[: n // 2]
    rows = np.flatnonzero(idx["patient_id"].isin(pick).to_numpy())
    return Hemispheres(cohort.x[rows].clone(), idx.iloc[rows], key=f"{cohort.key}-bench{len(pick)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    full, quick = (project.paths(p).cache for p in ("full", "quick"))
    ap.add_argument("--cache", type=Path, default=full if (full / "cohort" / "hemispheres.npy").exists() else quick,
                    help="a processed cohort (python -m tss preprocess); "
                         "default: the full one when it exists, else the quick one")
    ap.add_argument("--bf16", action="store_true", help="hold the cohort in bf16 on the CPU too (the GPU's path)")
    ap.add_argument("--out", type=Path, default=project.bench_dir())
    args = ap.parse_args()
    if not (args.cache / "cohort" / "hemispheres.npy").exists():
        raise SystemExit(f"no processed cohort in {args.cache}: run `make book` (or python -m tss preprocess) first")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # the cohort's dtype and the autocast precision as training chooses them (tss.precision)
    cohort = subset(Hemispheres.load(args.cache, downsample=1, device=device, dtype=torch.bfloat16 if args.bf16 else None))
    dtype = cohort.x.dtype
    print(f"{cohort.index['patient_id'].nunique()} patients, {len(cohort.x)} hemispheres, held in {dtype} on "
          f"{device}, trained in {precision.for_data(cohort.x).name}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for r in run_grid(grid(), cohort, tmp, "full", 0, progress=False, max_epochs=1, train_profile=TINY):
            if "skipped" in r:
                print(f"{r['experiment']:24} skipped: {r['skipped'].splitlines()[0][:70]}")
                continue
            rows.append({k: r[k] for k in ("experiment", "wall_seconds", "examples_per_s", "device")})
            print(f"{r['experiment']:24} {r['wall_seconds']:7.1f} s {r['examples_per_s']:8.2f} examples/s", flush=True)
        total = time.perf_counter() - t0
    print(f"{len(rows)} experiments in {total:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    f = args.out / f"grid-{device}.json"
    f.write_text(json.dumps({"dtype": str(dtype), "total_seconds": total, "runs": rows}, indent=1))
    print(f"wrote {f}")


if __name__ == "__main__":
    main()
