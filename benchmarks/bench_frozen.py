"""Training steps that start after the frozen stages against steps through the whole model.

Phases 2-3 freeze the early stages and phase 4 everything but the attention; `tss.train.Run`
computes the frozen stages once per hemisphere (`model.encode`) and trains from their output
(`tests/models/test_base.py` shows the logits and gradients are identical). This measures what that
saves: hemispheres/s of a training step (forward, BCE, backward, AdaBound) from the cached
features and from the raw hemispheres, side by side in one process, alternating, the median of
the repetitions; the ratio is the figure to read (absolute times on shared machines vary).

Run with `make bench` or `.venv/bin/python benchmarks/bench_frozen.py [--out DIR]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

from tss import project


def _timer(model, inp, y, steps: int):
    import adabound
    import torch.nn.functional as F

    opt = adabound.AdaBound([p for p in model.parameters() if p.requires_grad], lr=1e-5, final_lr=1e-3)

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            x = inp()
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / steps

    run()  # warm-up
    return run


def measure(arch: str, frozen: str, shape, batch: int, steps: int, repeats: int) -> dict:
    import torch

    from tss.models import build

    warnings.filterwarnings("ignore", category=UserWarning, module="adabound")
    torch.manual_seed(0)
    model = build(arch)
    model.freeze(model.EARLY) if frozen == "early" else model.train_only(model.ATTENTION)
    model.train()
    x = torch.rand(batch, *shape)
    y = (torch.arange(batch) % 2).float()
    with torch.no_grad():
        enc = model.encode(x)  # what Run holds per hemisphere; a batch is an index selection of it
    rows = torch.arange(batch)
    plain = _timer(model, lambda: x[rows], y, steps)
    cached = _timer(model, lambda: {k: v[rows] for k, v in enc.items()}, y, steps)
    t_plain, t_cached = [], []
    for _ in range(repeats):  # alternate, so that load from elsewhere hits both alike
        t_plain.append(plain())
        t_cached.append(cached())
    p, c = statistics.median(t_plain), statistics.median(t_cached)
    return {"arch": arch, "frozen": frozen, "frozen_stages": list(model.frozen_stages()), "shape": list(shape),
            "batch": batch, "threads": torch.get_num_threads(), "hemis_per_s_plain": batch / p,
            "hemis_per_s_cached": batch / c, "speedup": p / c,
            "cache_mib_per_hemisphere": sum(v[0].numel() * v.element_size() for v in enc.values()) / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=project.bench_dir())
    args = ap.parse_args()
    from tss import profiles

    quick = profiles.MODEL["quick"]
    rows = []
    print("training steps from the frozen stages' cached output vs through the whole model (CPU, fp32)")
    print(f"{'model':5} {'frozen':18} {'input':>12} {'hemis/s whole':>13} {'cached':>8} {'speedup':>8} {'MiB/hemi':>9}")
    for arch in ("2d", "3d"):
        shape = (3, *quick.input_shape(arch))
        for frozen in ("early", "all-but-attention"):
            r = measure(arch, frozen, shape, args.batch, args.steps, args.repeats)
            rows.append(r)
            print(f"{arch:5} {frozen:18} {'x'.join(map(str, shape[1:])):>12} {r['hemis_per_s_plain']:13.1f} "
                  f"{r['hemis_per_s_cached']:8.1f} {r['speedup']:7.2f}x {r['cache_mib_per_hemisphere']:9.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "frozen-cpu.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out / 'frozen-cpu.json'}")


if __name__ == "__main__":
    main()
