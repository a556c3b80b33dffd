"""A small cohort whose TSS label is planted where the paper's models should find it: the positive
control of the training loop.

Every patient has one stroke hemisphere and one healthy one. The stroke hemisphere carries a
DWI-bright blob (ADC falls in the first hour, so DWI is bright at every TSS); the blob is
FLAIR-bright (and a little b0-bright) only when the TSS is 4.5 h or more, as in the DWI-FLAIR
mismatch. Nothing else tells the classes apart: the blob's size and place, the background texture
and the global intensity are drawn the same way for both. A loop that trains the TSS phases
(transfer, frozen stages, precise batch norm) must learn this label within a few epochs; one that
does not has a bug that stops learning, whatever it does on the real cohort.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..atomic import content_key
from ..paper import TSS_3H_MIN, TSS_45H_MIN
from .data import Hemispheres

SPLITS = (("train", 0.6), ("val", 0.2), ("test", 0.2))


def planted_cohort(n_patients: int = 40, shape: tuple[int, int, int] = (26, 56, 28), seed: int = 0,
                   flair_gain: float = 0.5, device: str | torch.device = "cpu",
                   radius: tuple[float, float] = (0.12, 0.2)) -> Hemispheres:
    """``n_patients`` patients (two hemispheres each, 3 x ``shape``), in [0, 1], with the index columns
    the training phases read (patient_id, hemisphere, split, label, onset_to_mri_min). Half the
    patients are scanned before 4.5 h and half after, in every split; TSS < 3 h holds for half of
    the early ones. ``flair_gain``: the late lesions' FLAIR excess over the tissue (0.5: +50%);
    ``radius``: the range of the lesion's semi-axes as fractions of the hemisphere's extent (the
    default fills a quarter of it; (0.03, 0.06) is a lesion of 1-3 slices and a few pixels at 56 x 28)."""
    rng = np.random.default_rng(seed)
    S, H, W = shape
    zz, yy, xx = np.meshgrid(np.arange(S), np.arange(H), np.arange(W), indexing="ij")
    # an ellipsoidal "brain" filling the hemisphere, a smooth texture on it
    brain = ((zz - S / 2) / (S / 2)) ** 2 + ((yy - H / 2) / (H / 2.2)) ** 2 + ((xx - W / 2) / (W / 2.2)) ** 2 < 1
    late = np.tile([False, True], n_patients // 2 + 1)[:n_patients]
    rng.shuffle(late)
    # three strata: before 3 h, 3-4.5 h, after 4.5 h (TSS < 3 h and < 4.5 h both have two classes)
    stratum = np.where(late, 2, rng.permutation(np.arange(n_patients) % 2))
    lo, hi = np.array([30, TSS_3H_MIN + 10, TSS_45H_MIN + 30]), np.array([TSS_3H_MIN - 10, TSS_45H_MIN - 10, 900])
    minutes = rng.uniform(lo[stratum], hi[stratum])
    split = np.empty(n_patients, dtype=object)
    for cls in range(3):  # each split holds every stratum
        at = np.flatnonzero(stratum == cls)
        cuts = np.cumsum([int(round(f * len(at))) for _, f in SPLITS[:-1]])
        for (name, _), part in zip(SPLITS, np.split(at, cuts)):
            split[part] = name
    xs, rows = [], []
    for i in range(n_patients):
        for side, stroke in (("left", 1), ("right", 0)):
            tex = F.avg_pool3d(torch.from_numpy(rng.normal(size=(3, S, H, W))).float()[None], 5, 1, 2)[0].numpy()
            h = (0.5 + 0.5 * tex) * brain  # channels: DWI b1000, b0, FLAIR
            h *= rng.uniform(0.8, 1.0)     # a global intensity that says nothing about the class
            if stroke:
                c = rng.uniform([S * 0.3, H * 0.3, W * 0.3], [S * 0.7, H * 0.7, W * 0.7])
                r = rng.uniform(*radius) * np.array([S, H, W])
                blob = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 < 1
                h[0][blob] *= 1.6                                     # DWI bright at every TSS
                if late[i]:
                    h[2][blob] *= 1 + flair_gain                      # FLAIR bright only after hours
                    h[1][blob] *= 1 + flair_gain / 3                  # b0 (T2w) a little
            xs.append(np.clip(h, 0, 1))
            rows.append({"patient_id": f"P{i:03d}", "hemisphere": side, "split": split[i], "label": stroke,
                         "onset_to_mri_min": float(minutes[i])})
    x = torch.from_numpy(np.stack(xs)).float().to(device)
    index = pd.DataFrame(rows)
    return Hemispheres(x, index, key=content_key(f"planted:{n_patients}:{shape}:{seed}:{flair_gain}"
                                                     + (f":{radius}" if radius != (0.12, 0.2) else "")))
