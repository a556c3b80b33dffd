"""The training tests' tiny cohort and epoch budget, shared by the tests of the loop, precision,
the data-size study, the engine, the kill-and-resume test and tools/tiny_grid.py."""

from __future__ import annotations

import pandas as pd
import torch

from tss import profiles
from tss.train import Hemispheres


def tiny_cohort(n_patients=12, seed=0) -> Hemispheres:
    """A tiny cohort at 26 x 28 x 14 whose stroke hemispheres carry a bright DWI blob and whose
    FLAIR is brighter late: enough signal to learn something in a few steps."""
    g = torch.Generator().manual_seed(seed)
    rows, xs = [], []
    minutes = [60, 400, 120, 500, 150, 300, 90, 600, 200, 700, 100, 350][:n_patients]
    splits = (["train"] * 8 + ["val"] * 2 + ["test"] * 2)[:n_patients]
    for i in range(n_patients):
        for h, side in enumerate(("left", "right")):
            x = 0.3 + 0.05 * torch.rand((3, 26, 28, 14), generator=g)
            stroke = h == i % 2
            if stroke:
                x[0, 10:16, 8:16, 3:9] += 0.5
                x[2, 10:16, 8:16, 3:9] += 0.4 * (minutes[i] > 270)
            xs.append(x.clamp(0, 1))
            rows.append({"row": 2 * i + h, "patient_id": f"p{i:02d}", "hemisphere": side, "label": int(stroke),
                         "label_source": "test", "split": splits[i], "onset_to_mri_min": minutes[i]})
    return Hemispheres(torch.stack(xs), pd.DataFrame(rows), key=f"tiny{seed}")


# the quick profile's epoch budget, with small synthetic task sets so each test takes seconds
TINY = profiles.TrainProfile(max_epochs=6, patience=3, seeds=(0,), genesis_cubes=8, medical_per_epoch=8,
                             synthetic_eval=8)
