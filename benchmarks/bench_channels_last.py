"""channels_last against the default memory layout: training steps of both models at the lowres
profile's input (56 x 28), batch 8, AdaBound, at the precision training chooses, alternating
layouts three times in one process. The ratio is the figure to read: channels_last is adopted
only where it pays (issue 14).

Run with `make bench` or `.venv/bin/python benchmarks/bench_channels_last.py [--steps N]`.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from bench_loop import step_rate, write_result

from tss import precision, profiles, project
from tss.models import build


def steps_per_s(arch: str, layout: torch.memory_format, steps: int, batch: int = 8) -> float:
    torch.manual_seed(0)
    shape = profiles.MODEL["lowres"].input_shape(arch)
    model = build(arch, n_slices=shape[0]).train()
    # 2D: the ResNet sees (B * slices, 3, H, W); a convolution whose weight is channels_last makes its
    # output channels_last too, so the weights suffice. 3D: (B, 3, Z, H, W) -> channels_last_3d
    fmt = layout if arch == "2d" or layout == torch.contiguous_format else torch.channels_last_3d
    x = torch.rand(batch, 3, *shape)
    if arch == "3d":
        x = x.contiguous(memory_format=fmt)
    return step_rate(model.to(memory_format=fmt), x, precision.choose(torch.device("cpu")), steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=project.bench_dir())
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="adabound")
    out = []
    for arch in ("2d", "3d"):
        r = {"default": [], "channels_last": []}
        for _ in range(args.repeats):
            r["default"].append(steps_per_s(arch, torch.contiguous_format, args.steps))
            r["channels_last"].append(steps_per_s(arch, torch.channels_last, args.steps))
        d, c = float(np.median(r["default"])), float(np.median(r["channels_last"]))
        out.append({"arch": arch, "input": profiles.MODEL["lowres"].input_shape(arch), "batch": 8,
                    "precision": precision.choose(torch.device("cpu")).name, "default_hemis_per_s": d,
                    "channels_last_hemis_per_s": c, "ratio": c / d, "runs": r})
        print(f"{arch}: default {d:.1f} hemis/s, channels_last {c:.1f} hemis/s: x{c / d:.2f}", flush=True)
    write_result(args.out, "channels-last-cpu.json", out)


if __name__ == "__main__":
    main()
