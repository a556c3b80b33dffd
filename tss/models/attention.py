"""Soft (grid) attention gate of Oktay et al. 2018 / Schlemper et al. 2019, for 2D and 3D maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _nd(dims: int):
    return (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)


class GridAttention(nn.Module):
    """Additive attention gate.

    With ``x`` the map to attend (C_x channels) and ``g`` a coarser gating map (C_g channels):

        q = psi(relu(theta(x) + up(phi(g))))        alpha = sigmoid(q) in [0, 1], x's resolution
        y = BN(W(alpha * x))                        pooled globally to a C_x vector

    theta, phi, psi and W are 1x1 convolutions; ``up`` is linear interpolation of the gating term
    onto x's grid. Returns ``(pooled y, y, alpha)``; ``alpha`` has one channel.
    """

    def __init__(self, in_channels: int, gating_channels: int, inter_channels: int | None = None,
                 dims: int = 2):
        super().__init__()
        Conv, BN = _nd(dims)
        inter = inter_channels or max(in_channels // 2, 1)
        self.dims = dims
        self.theta = Conv(in_channels, inter, 1, bias=False)
        self.phi = Conv(gating_channels, inter, 1)
        self.psi = Conv(inter, 1, 1)
        self.W = nn.Sequential(Conv(in_channels, in_channels, 1), BN(in_channels))

    def forward(self, x: torch.Tensor, g: torch.Tensor):
        mode = "bilinear" if self.dims == 2 else "trilinear"
        gate = F.interpolate(self.phi(g), size=x.shape[2:], mode=mode, align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(self.theta(x) + gate)))
        y = self.W(alpha * x)
        return y.flatten(2).mean(-1), y, alpha
