"""The 3D models (tss.models.unet3d): the attention classifier's shapes, the U-Net's output shape."""

from __future__ import annotations

import pytest
import torch
from model_inputs import FULL, QUICK

from tss.models import Attention3DNet, UNet3D


@pytest.mark.parametrize("size", [QUICK, FULL], ids=["quick", "full"])
def test_3d_shapes_and_attention(size):
    S, H, W = size
    m = Attention3DNet().eval()
    with torch.no_grad():
        logit, d = m(torch.rand(1, 3, S, H, W), details=True)
    assert logit.shape == (1,)
    # the gates sit on the 128- and 256-channel levels: 1/2 and 1/4 of the input grid
    assert d["attention1"].shape == (1, 1, S // 2, H // 2, W // 2)
    assert d["attention2"].shape == (1, 1, S // 4, H // 4, W // 4)
    for a in (d["attention1"], d["attention2"]):
        assert 0 <= a.min() and a.max() <= 1
    assert d["deepest_map"] == (512, S // 8, H // 8, W // 8)


def test_unet_restores_the_input_shape_with_odd_slice_counts():
    u = UNet3D().eval()
    with torch.no_grad():
        for shape in [(16, 32, 32), (26, 24, 16)]:
            y = u(torch.rand(1, 3, *shape))
            assert y.shape == (1, 3) + shape and 0 <= y.min() and y.max() <= 1
