"""What every classifier shares (tss.models.base): freezing, the frozen-stage cache, weight transfer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tss.models import Attention3DNet, SliceAttentionNet, UNet3D, load_matching


@pytest.mark.parametrize("arch", ["2d", "3d"])
@pytest.mark.parametrize("frozen", ["early", "all-but-attention"])
def test_starting_after_the_frozen_stages_gives_the_same_logits_and_gradients(arch, frozen):
    m = SliceAttentionNet(n_slices=26) if arch == "2d" else Attention3DNet()
    m.freeze(m.EARLY) if frozen == "early" else m.train_only(m.ATTENTION)
    assert m.frozen_stages() == (m.EARLY if frozen == "early" else m.STAGES)
    m.train()  # the trained parts' batch norms use batch statistics; the frozen ones stay in eval mode
    x = torch.rand(4, 3, 26, *((56, 28) if arch == "2d" else (28, 14)))
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    results = []
    for inp in (lambda: x, lambda: m.encode(x)):
        m.zero_grad()
        out = m(inp())
        F.binary_cross_entropy_with_logits(out, y).backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad}))
    (plain, g_plain), (cached, g_cached) = results
    assert torch.equal(plain, cached)
    assert g_plain.keys() == g_cached.keys() and all(torch.equal(g_plain[k], g_cached[k]) for k in g_plain)


def _step(model, x, y):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    loss = F.binary_cross_entropy_with_logits(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def _snapshot(model):
    """Every tensor (parameters and batch-norm statistics) of every part, cloned."""
    return {part: [t.detach().clone() for m in mods for t in list(m.parameters()) + list(m.buffers())
                   if t.is_floating_point()]
            for part, mods in model.parts().items()}


@pytest.mark.parametrize("arch", ["2d", "3d", "2d-phase4", "3d-phase4"])
def test_frozen_parts_do_not_move_and_the_rest_does(arch):
    if arch.startswith("2d"):
        m, x = SliceAttentionNet(n_slices=3), torch.rand(2, 3, 3, 32, 32)
    else:
        m, x = Attention3DNet(), torch.rand(2, 3, 8, 16, 16)
    if arch.endswith("phase4"):
        m.train_only(m.ATTENTION)
    else:
        m.freeze(m.EARLY)
    assert m.frozen
    before = _snapshot(m)
    _step(m, x, torch.tensor([0.0, 1.0]))
    after = _snapshot(m)
    for part in m.parts():
        same = all(torch.equal(a, b) for a, b in zip(before[part], after[part]))
        if part in m.frozen:
            assert same, f"frozen part {part} changed"
        else:
            assert not same, f"trainable part {part} did not move"


def test_freeze_rejects_unknown_parts():
    with pytest.raises(ValueError, match="unknown part"):
        SliceAttentionNet(n_slices=2).freeze(["conv9"])


def test_genesis_encoder_initialises_the_3d_classifier():
    u, m = UNet3D(), Attention3DNet()
    rep = load_matching(m, {"model": u.state_dict()})
    assert rep.loaded and all(k.startswith("encoder.") for k in rep.loaded)
    assert all(torch.equal(m.state_dict()[k], u.state_dict()[k]) for k in rep.loaded)
    assert {k.split(".")[0] for k in rep.unexpected} == {"up1", "up2", "up3", "out"}
    assert {k.split(".")[0] for k in rep.missing} == {"attention1", "attention2", "fc"}


def test_transfer_between_phases_skips_the_head(tmp_path):
    a, b = SliceAttentionNet(n_slices=3), SliceAttentionNet(n_slices=3)
    torch.save({"model": a.state_dict(), "epoch": 4}, tmp_path / "best.pt")
    rep = load_matching(b, tmp_path / "best.pt")
    assert rep.skipped_head == ["fc.weight", "fc.bias"]
    assert not torch.equal(a.fc.weight, b.fc.weight)
    assert torch.equal(a.layer3[0].conv1.weight, b.layer3[0].conv1.weight)
    assert torch.equal(a.attention.psi.weight, b.attention.psi.weight)
    assert "skipped head 2 (fc)" in str(rep)
