"""Training tensors and the synthetic tumour task (tss.train.data)."""

from __future__ import annotations

import torch

from tss.train import add_tumour


def test_tumour_is_bright_on_flair_with_a_mask_inside_the_brain():
    x = torch.zeros(3, 26, 56, 28)
    x[:, 3:23, 5:51, 3:25] = 0.4
    y, mask = add_tumour(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert mask.any() and not (mask & (x[1] == 0)).any()
    assert y[2][mask].mean() > x[2][mask].mean() + 0.05  # FLAIR
    assert y[1][mask].mean() > x[1][mask].mean() + 0.05  # b0
