"""Training-step throughput and peak memory of both models at the full input size (3 x 26 x 224 x 112).

Run with `make bench` (or `.venv/bin/python benchmarks/bench_models.py [--out DIR]`). A step is
forward, binary cross-entropy, backward and an AdaBound step (the training optimiser) on random
hemispheres, with no data loading: the bare-model figure that ../shared/gpu/README.md calls the
ceiling. On the CPU: fp32 at a small batch, peak resident memory of a fresh process. On a CUDA GPU
(when one is visible): bf16 autocast at the paper's batch 8, torch.cuda.max_memory_allocated.
Targets (issue 5, GPU only): bf16 autocast; peak memory no higher than the paper's at batch 8.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
import warnings
from pathlib import Path

from tss import project
from tss.paper import GPU_MEMORY_GB_BATCH8 as PAPER_GIB
from tss.paper import H100_CEILING_BF16_BATCH8 as CEILING

SHAPE = (3, 26, 224, 112)


def _measure(arch: str, device: str, batch: int, steps: int, queue) -> None:
    import torch
    import torch.nn.functional as F

    from tss.models import build

    warnings.filterwarnings("ignore", category=UserWarning, module="adabound")
    import adabound

    torch.manual_seed(0)
    model = build(arch).to(device).train()
    opt = adabound.AdaBound(model.parameters(), lr=5e-4, final_lr=1e-2)
    x = torch.rand(batch, *SHAPE, device=device)
    y = (torch.arange(batch, device=device) % 2).float()
    cuda = device == "cuda"

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up: allocator, cuDNN autotuning, AdaBound state
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / steps
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:  # ru_maxrss is in KiB on Linux: the process's peak minus what it held before the first step
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20
    queue.put({"arch": arch, "device": torch.cuda.get_device_name() if cuda else "cpu",
               "precision": "bf16 autocast" if cuda else "fp32", "batch": batch, "steps": steps,
               "threads": torch.get_num_threads(), "seconds_per_step": seconds,
               "hemis_per_s": batch / seconds, "peak_gib": peak})


def measure(arch: str, device: str, batch: int, steps: int) -> dict:
    """One configuration in a fresh process, so that its peak memory is its own."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(arch, device, batch, steps, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-batch", type=int, default=2)
    ap.add_argument("--cpu-steps", type=int, default=2)
    ap.add_argument("--gpu-batch", type=int, default=8)
    ap.add_argument("--gpu-steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=project.bench_dir(),
                    help="folder for models-cpu.json / models-cuda.json (the Models chapter shows them)")
    args = ap.parse_args()
    import torch

    configs = [(a, "cpu", args.cpu_batch, args.cpu_steps) for a in ("2d", "3d")]
    if torch.cuda.is_available():
        configs += [(a, "cuda", args.gpu_batch, args.gpu_steps) for a in ("2d", "3d")]
    else:
        print("no CUDA GPU visible: CPU rows only", file=sys.stderr)
    rows = []
    print(f"model training steps at {' x '.join(map(str, SHAPE))} (forward, BCE, backward, AdaBound)")
    print(f"{'model':5} {'device':24} {'precision':13} {'batch':>5} {'s/step':>7} {'hemis/s':>8} "
          f"{'peak GiB':>8}   {'ceiling (H100 bf16 b8)':>22}   paper b8")
    for cfg in configs:
        r = measure(*cfg)
        rows.append(r)
        c = CEILING[r["arch"]]
        print(f"{r['arch']:5} {r['device'][:24]:24} {r['precision']:13} {r['batch']:5d} {r['seconds_per_step']:7.2f} "
              f"{r['hemis_per_s']:8.1f} {r['peak_gib']:8.2f}   {c['hemis_per_s']:>9} hemis/s {c['peak_gib']:4.1f} GiB"
              f"   {PAPER_GIB[r['arch']]:.0f} GB", flush=True)
        if r["device"] != "cpu":
            ok = r["peak_gib"] <= PAPER_GIB[r["arch"]]
            print(f"      {r['hemis_per_s'] / c['hemis_per_s']:.0%} of the ceiling; peak memory "
                  f"{'within' if ok else 'ABOVE'} the paper's {PAPER_GIB[r['arch']]:.0f} GB")
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in ("cpu", "cuda"):
        mine = [r for r in rows if (r["device"] == "cpu") == (kind == "cpu")]
        if mine:
            (args.out / f"models-{kind}.json").write_text(json.dumps(mine, indent=1))
            print(f"wrote {args.out / f'models-{kind}.json'}")


if __name__ == "__main__":
    main()
