"""The 2D slice-wise attention model (tss.models.slice2d): shapes, attention, slice aggregation."""

from __future__ import annotations

import pytest
import torch
from model_inputs import FULL, QUICK

from tss.models import SliceAttentionNet


@pytest.mark.parametrize("size", [QUICK, FULL], ids=["quick", "full"])
def test_2d_shapes_weights_and_attention(size):
    S, H, W = size
    m = SliceAttentionNet(n_slices=S).eval()
    with torch.no_grad():
        logit, d = m(torch.rand(2, 3, S, H, W), details=True)
    assert logit.shape == (2,)
    assert d["final_map"] == (512, -(-H // 32), -(-W // 32))
    assert d["attended_map"][0] == 256 and d["attention"].shape == (2, S) + d["attended_map"][1:]
    assert 0 <= d["attention"].min() and d["attention"].max() <= 1
    if size == FULL:
        assert d["final_map"] == (512, 7, 4)  # the Fig. 4 caption's final map


def test_2d_hemisphere_probability_is_the_weighted_mean_of_slice_probabilities():
    m = SliceAttentionNet(n_slices=4).eval()
    with torch.no_grad():
        m.slice_weights.logits.copy_(torch.tensor([-30.0, 0.0, 2.0, 30.0]))
        logit, d = m(torch.rand(3, 3, 4, 32, 32), details=True)
    w = d["slice_weights"]
    assert torch.all((w >= 0) & (w <= 1)) and w[0] < 1e-9 and w[3] > 0.999
    expected = (torch.sigmoid(d["slice_logits"]) * w).sum(1) / w.sum()
    assert torch.allclose(torch.sigmoid(logit), expected, atol=1e-6)


def test_2d_logit_reading_is_the_weighted_mean_of_slice_logits_and_lets_one_slice_decide():
    m = SliceAttentionNet(n_slices=4).eval()
    with torch.no_grad():
        m.slice_weights.logits.copy_(torch.tensor([-30.0, 0.0, 2.0, 30.0]))
    as_logit = SliceAttentionNet(n_slices=4, aggregate="logit").eval()
    as_logit.load_state_dict(m.state_dict())  # the same parameters: a checkpoint loads under both readings
    x = torch.rand(3, 3, 4, 32, 32)
    with torch.no_grad():
        logit, d = as_logit(x, details=True)
        p_logit, d_p = m(x, details=True)
    w = d["slice_weights"]
    assert torch.allclose(d["slice_logits"], d_p["slice_logits"])
    assert torch.allclose(logit, (d["slice_logits"] * w).sum(1) / w.sum(), atol=1e-5)
    # one confident slice among equal weights: a probability mean is capped at its share, a logit mean is not
    z = torch.tensor([[40.0, 0.0, 0.0, 0.0]])
    wq = torch.full((4,), 0.5)
    assert torch.sigmoid((wq * z).sum(1) / wq.sum()) > 0.99
    assert (torch.sigmoid(z) * wq).sum(1) / wq.sum() < 0.63
    with pytest.raises(ValueError, match="slice aggregation"):
        SliceAttentionNet(n_slices=4, aggregate="max")
