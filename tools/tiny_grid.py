"""A refactor changes no number: train the whole grid on the tests' tiny cohort and compare two such
runs file by file.

    python tools/tiny_grid.py run OUT          # every experiment of Table 2 (2D and 3D, Genesis and the
                                               # tumour stand-in included), 2 epochs, one thread (~3 min)
    python tools/tiny_grid.py compare A B      # predictions, patients, configs (run keys) byte for byte;
                                               # summaries and epoch logs without their timings

Run it on the code before a change and after it; ``compare`` exits 1 on any difference. The same code
run twice gives none (one thread, fixed seeds), so a difference is the change's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

TIMING = {"train_seconds", "examples_per_s", "seconds", "wall_seconds", "provenance"}


def run(out: Path) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny import TINY, tiny_cohort

    from tss.train import grid, run_grid

    torch.set_num_threads(1)
    exps = grid(("2d", "3d"), imagenet=False)
    run_grid(exps, tiny_cohort(), out / "seed0", "quick", 0, progress=True, max_epochs=2, train_profile=TINY)


def compare(a: Path, b: Path) -> list[str]:
    """Every difference between the run trees ``a`` and ``b`` (timings and machine left out)."""
    diffs = []
    for r in sorted(p.relative_to(a) for p in a.glob("seed*/*") if p.is_dir()):
        for f in ("predictions.csv", "patients.csv", "config.json"):
            if (a / r / f).exists() and (a / r / f).read_bytes() != (b / r / f).read_bytes():
                diffs.append(f"{r}/{f}")
        sa, sb = (json.loads((d / r / "summary.json").read_text()) for d in (a, b))
        if {k: v for k, v in sa.items() if k not in TIMING} != {k: v for k, v in sb.items() if k not in TIMING}:
            diffs.append(f"{r}/summary.json")
        ea, eb = (pd.read_csv(d / r / "epochs.csv").drop(columns=["train_seconds", "examples_per_s"]) for d in (a, b))
        if not ea.equals(eb):
            diffs.append(f"{r}/epochs.csv")
    return diffs


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        run(Path(sys.argv[2]))
    else:
        d = compare(Path(sys.argv[2]), Path(sys.argv[3]))
        print("\n".join(d) or "no differences")
        sys.exit(1 if d else 0)
