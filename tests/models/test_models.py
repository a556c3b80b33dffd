"""The models package (tss.models): every model learns a tiny batch, the parameter and shape tables."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tss import profiles
from tss.models import Attention3DNet, SliceAttentionNet, UNet3D, genesis


@pytest.mark.parametrize("which", ["2d", "3d", "genesis"])
def test_each_model_drives_its_loss_down_on_a_tiny_fixed_batch(which):
    x = torch.rand(4, 3, 2, 32, 16) if which == "2d" else torch.rand(4, 3, 8, 16, 16)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    x[y == 1, 0] += 0.5  # a visible difference to learn
    if which == "2d":
        m = SliceAttentionNet(n_slices=2)
    elif which == "3d":
        m = Attention3DNet()
    else:
        m, target = UNet3D(), x.clamp(0, 1)
        x = genesis.genesis_batch(target, torch.Generator().manual_seed(0))[0]
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m.train()
    losses = []
    for _ in range(15):
        out = m(x)
        loss = F.mse_loss(out, target) if which == "genesis" else F.binary_cross_entropy_with_logits(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_parameter_table_counts_every_parameter_and_says_what_each_phase_trains():
    from tss.models import parameter_table

    nets = {"2D": SliceAttentionNet(n_slices=4), "3D": Attention3DNet()}
    t = parameter_table(nets, UNet3D())
    for name, m in nets.items():
        rows = t[t["model"] == name]
        assert rows["parameters"].sum() == sum(p.numel() for p in m.parameters())
        assert set(rows.loc[rows["phases 2-3"] == "frozen", "part"]) == set(m.EARLY)
        assert set(rows.loc[rows["phase 4"] == "trained", "part"]) == set(m.ATTENTION)
    assert set(t.loc[t["model"] == "3D U-Net (Genesis only)", "part"]) == {"decoder", "out"}


def test_output_shapes_names_each_modules_output_and_leaves_no_hook():
    from tss.models import output_shapes

    model = Attention3DNet()
    got = output_shapes(model, ["encoder.down1", "attention1", "fc"], torch.rand(1, 3, 26, 56, 28))
    assert got["fc"] == "1"
    assert got["encoder.down1"].split(" x ")[1:] == ["26", "56", "28"]  # the first level keeps the input size
    assert len(got["attention1"].split(" x ")) == 4  # the gate's attention map, not its pooled output
    assert not any(m._forward_hooks for m in model.modules())


def test_the_shape_table_lists_each_module_at_each_profiles_input():
    from tss.models import SHAPE_MODULES, shape_table

    t = shape_table(("quick",))["quick"]
    assert t[("2D (per slice)", "input")] == "3 x 26 x 56 x 28"   # quick: 4 x 4 in-plane pooling for 2D
    assert t[("2D (per slice)", "layer4")] == "512 x 2 x 1"        # ResNet-18 divides by 32
    assert t[("3D", "input")] == "3 x 26 x 28 x 14" and t[("3D", "fc")] == "1"
    cube = profiles.MODEL["quick"].genesis_cube
    assert t[("U-Net (Genesis)", "out")] == " x ".join(map(str, (3, *cube)))   # the U-Net restores its input
    assert len(t) == sum(len(m) + 1 for m in SHAPE_MODULES.values())
