"""The paper's 2D Self-weighted Slice-wise Attention model (section 2.2, Fig. 4 top)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .attention import GridAttention
from .base import PartsModel
from .lowp import guard_convolutions


class SliceWeights(nn.Module):
    """One learnable weight in [0, 1] per slice (a sigmoid of a free parameter; 0.5 at start)."""

    def __init__(self, n_slices: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_slices))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)


class SliceAttentionNet(PartsModel):
    """Each slice of a hemisphere (channels DWI b1000, b0, FLAIR) runs through the four residual
    stages of torchvision's ResNet-18. A grid attention gate weights the pixels of the penultimate
    stage (layer3, 256 channels) with a gate from the last (layer4, 512 channels); the pooled
    layer4 features (512) and the pooled attended map (256) are concatenated and a linear layer
    gives one logit per slice. A learnable weight per slice in [0, 1] combines the slice
    probabilities into one probability per hemisphere:

        p = sum_s w_s sigmoid(z_s) / sum_s w_s

    Section 2.2 says the slice outputs "were summed in a weighted fashion, resulting in one
    probability label", which also reads as a weighted sum of the slice *logits*. ``aggregate``
    picks the reading: "probability" (the formula above, the default) or "logit",

        logit = sum_s w_s z_s / sum_s w_s,

    where a slice's evidence is unbounded, so a few lesion slices can outweigh the many that show
    no lesion (a probability caps each slice's share at w_s / sum w). Same parameters either way: a
    checkpoint loads under both.

    Input (B, 3, S, H, W) with S = ``n_slices``; output the hemisphere logit log(p / (1 - p)), (B,).

    Deviation from Fig. 4: for a 224 x 112 slice layer3 is 256 x 14 x 7 (ResNet-18 halves the grid
    at each stage), so the 256-channel attention map is 14 x 7, not the caption's 28 x 14 (that
    size belongs to the 128-channel layer2). The final map is 512 x 7 x 4, as in the caption.
    """

    HEAD = ("fc",)
    EARLY = ("stem", "layer1")   # conv1 (+ its batch norm) and conv2_x, He et al. Table 1
    ATTENTION = ("attention",)
    PROBE = ("fc", "slice_weights")
    STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")

    AGGREGATES = ("probability", "logit")

    def __init__(self, n_slices: int = 26, in_channels: int = 3, aggregate: str = "probability"):
        super().__init__()
        if aggregate not in self.AGGREGATES:
            raise ValueError(f"unknown slice aggregation {aggregate!r}; expected one of {', '.join(self.AGGREGATES)}")
        self.aggregate = aggregate
        r = torchvision.models.resnet18(weights=None)
        if in_channels != 3:
            r.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        # same attribute names as torchvision's ResNet, so ImageNet weights load by name
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        self.attention = GridAttention(256, 512, 128, dims=2)
        self.fc = nn.Linear(512 + 256, 1)
        self.slice_weights = SliceWeights(n_slices)
        self.n_slices = n_slices
        guard_convolutions(self)  # bf16 on a CPU: tss.models.lowp

    def parts(self):
        return {"stem": [self.conv1, self.bn1], "layer1": [self.layer1], "layer2": [self.layer2],
                "layer3": [self.layer3], "layer4": [self.layer4], "attention": [self.attention],
                "fc": [self.fc], "slice_weights": [self.slice_weights]}

    def cam_target_layers(self):
        return [self.layer4[-1]]

    def _stage(self, name: str, f: torch.Tensor) -> torch.Tensor:
        if name == "stem":
            return self.maxpool(self.relu(self.bn1(self.conv1(f))))
        return getattr(self, name)(f)

    def _slices(self, x: torch.Tensor) -> torch.Tensor:
        B, C, S, H, W = x.shape
        if S != self.n_slices:
            raise ValueError(f"expected {self.n_slices} slices, got {S}")
        return x.permute(0, 2, 1, 3, 4).reshape(B * S, C, H, W)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the frozen leading stages (:meth:`frozen_stages`) make of ``x``, per hemisphere
        (B, S, C, h, w): ``f``, the last one's output, and ``f3`` (layer3's, which the attention
        gate reads) once layer4 is frozen too. ``forward`` takes this dict in place of ``x``."""
        B = len(x)
        f, out = self._slices(x), {}
        for name in self.frozen_stages():
            f = self._stage(name, f)
            if name == "layer3" and "layer4" in self.frozen:
                out["f3"] = f
        out["f"] = f
        return {k: v.reshape(B, self.n_slices, *v.shape[1:]) for k, v in out.items()}

    def forward(self, x: torch.Tensor | dict[str, torch.Tensor], details: bool = False):
        if isinstance(x, dict):  # encode()'s output: continue after the frozen stages
            B, S = x["f"].shape[:2]
            f, f3, done = x["f"].flatten(0, 1), x["f3"].flatten(0, 1) if "f3" in x else None, self.frozen_stages()
        else:
            B, S = len(x), self.n_slices
            f, f3, done = self._slices(x), None, ()
        for name in self.STAGES[len(done):]:
            f = self._stage(name, f)
            if name == "layer3":
                f3 = f
        f4 = f
        att_vec, _, alpha = self.attention(f3, f4)
        z = self.fc(torch.cat([f4.mean((2, 3)), att_vec], 1)).view(B, S).float()
        w = self.slice_weights()
        if self.aggregate == "logit":
            logit = (w * z).sum(1) / w.sum()
            if not details:
                return logit
            return logit, {"slice_logits": z, "slice_weights": w, "attention": alpha.view(B, S, *alpha.shape[2:]),
                           "final_map": tuple(f4.shape[1:]), "attended_map": tuple(f3.shape[1:])}
        # log p and log(1 - p) by logsumexp, so the hemisphere logit is exact and BCE-with-logits
        # stays stable under bf16 autocast (which refuses plain BCE on probabilities)
        logw = torch.log(w) - torch.log(w.sum())
        logit = torch.logsumexp(logw + F.logsigmoid(z), 1) - torch.logsumexp(logw + F.logsigmoid(-z), 1)
        if not details:
            return logit
        return logit, {"slice_logits": z, "slice_weights": w, "attention": alpha.view(B, S, *alpha.shape[2:]),
                       "final_map": tuple(f4.shape[1:]), "attended_map": tuple(f3.shape[1:])}
