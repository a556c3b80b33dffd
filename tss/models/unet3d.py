"""3D U-Net with the Models Genesis widths, and the paper's 3D attention classifier on its encoder
(section 2.2, Fig. 4 bottom). Written from the papers' descriptions (Cicek et al. 2016;
Zhou et al. 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import GridAttention
from .base import PartsModel
from .lowp import Conv3d, guard_convolutions


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout),
                         nn.ReLU(inplace=True))


def _level(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv(cin, mid), _conv(mid, cout))


class Encoder3D(nn.Module):
    """Down path: levels 32-64, 64-128, 128-256, 256-512, 2x max pooling between levels."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.down1 = _level(in_channels, 32, 64)
        self.down2 = _level(64, 64, 128)
        self.down3 = _level(128, 128, 256)
        self.down4 = _level(256, 256, 512)

    def forward(self, x):
        f1 = self.down1(x)
        f2 = self.down2(F.max_pool3d(f1, 2))
        f3 = self.down3(F.max_pool3d(f2, 2))
        f4 = self.down4(F.max_pool3d(f3, 2))
        return f1, f2, f3, f4


class _Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cin, 2, stride=2)
        self.conv = _level(cin + cskip, cout, cout)

    def forward(self, x, skip):
        x = self.up(x)
        if x.shape[2:] != skip.shape[2:]:  # odd sizes (26 slices -> 13 -> 6): pad up to the skip
            d = [s - t for s, t in zip(skip.shape[2:], x.shape[2:])]
            x = F.pad(x, [0, d[2], 0, d[1], 0, d[0]])
        return self.conv(torch.cat([x, skip], 1))


class UNet3D(PartsModel):
    """The full U-Net that Models Genesis trains to restore distorted sub-volumes (sigmoid output,
    by default the input's channels; ``out_channels=1`` for the tumour segmentation task)."""

    HEAD = ("out",)
    EARLY = ("down1", "down2")

    def __init__(self, in_channels: int = 3, out_channels: int | None = None):
        super().__init__()
        self.encoder = Encoder3D(in_channels)
        self.up3 = _Up(512, 256, 256)
        self.up2 = _Up(256, 128, 128)
        self.up1 = _Up(128, 64, 64)
        self.out = nn.Conv3d(64, out_channels or in_channels, 1)
        guard_convolutions(self)

    def parts(self):
        e = self.encoder
        return {"down1": [e.down1], "down2": [e.down2], "down3": [e.down3], "down4": [e.down4],
                "decoder": [self.up3, self.up2, self.up1], "out": [self.out]}

    def cam_target_layers(self):
        return [self.encoder.down4]

    def forward(self, x):
        f1, f2, f3, f4 = self.encoder(x)
        return torch.sigmoid(self.out(self.up1(self.up2(self.up3(f4, f3), f2), f1)))


class Attention3DNet(PartsModel):
    """Classifier on the U-Net encoder: grid attention gates on the 128- and 256-channel level
    outputs, both gated by the deepest (512-channel) features; the globally pooled deepest
    features (512) and both attended maps (128, 256) are concatenated into one logit.

    Input (B, 3, S, H, W); output the hemisphere logit, (B,). Parameter names under ``encoder.``
    match :class:`UNet3D`, so a Genesis checkpoint initialises it directly.
    """

    HEAD = ("fc",)
    EARLY = ("down1", "down2")   # the first two levels of the down path
    ATTENTION = ("attention",)
    PROBE = ("fc",)
    STAGES = ("down1", "down2", "down3", "down4")

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.encoder = Encoder3D(in_channels)
        self.attention1 = GridAttention(128, 512, 64, dims=3)
        self.attention2 = GridAttention(256, 512, 128, dims=3)
        self.fc = nn.Linear(512 + 128 + 256, 1)
        guard_convolutions(self)

    def parts(self):
        e = self.encoder
        return {"down1": [e.down1], "down2": [e.down2], "down3": [e.down3], "down4": [e.down4],
                "attention": [self.attention1, self.attention2], "fc": [self.fc]}

    def cam_target_layers(self):
        return [self.encoder.down4]

    def _levels(self, f: torch.Tensor, names) -> dict[str, torch.Tensor]:
        """Run the encoder levels ``names`` from ``f`` (2x max pooling before each but down1);
        returns every level's output by name."""
        out = {}
        for name in names:
            f = getattr(self.encoder, name)(f if name == "down1" else F.max_pool3d(f, 2))
            out[name] = f
        return out

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the frozen leading levels (:meth:`frozen_stages`) make of ``x``: the last one's output
        and those of down2 and down3 (which the attention gates read). ``forward`` takes this dict."""
        done = self.frozen_stages()
        if not done:
            return {"x": x}
        levels = self._levels(x, done)
        return {k: levels[k] for k in (done[-1], "down2", "down3") if k in levels}

    def forward(self, x: torch.Tensor | dict[str, torch.Tensor], details: bool = False):
        if isinstance(x, dict):  # encode()'s output: continue after the frozen levels
            done = self.frozen_stages()
            levels = dict(x)
            f = x[done[-1]] if done else x["x"]
        else:
            done, levels, f = (), {}, x
        levels.update(self._levels(f, self.STAGES[len(done):]))
        f2, f3, f4 = levels["down2"], levels["down3"], levels["down4"]
        a1, _, alpha1 = self.attention1(f2, f4)
        a2, _, alpha2 = self.attention2(f3, f4)
        logit = self.fc(torch.cat([f4.flatten(2).mean(-1), a1, a2], 1)).squeeze(1).float()
        if not details:
            return logit
        return logit, {"attention1": alpha1, "attention2": alpha2, "deepest_map": tuple(f4.shape[1:])}
