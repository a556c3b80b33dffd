"""Convolutions that stay correct in bf16 on a CPU.

oneDNN's bf16 weight-gradient kernels (``jit_bf16:avx512_core_bf16``, oneDNN 3.12 in torch 2.13
and 2.14) return garbage, up to 1e36 and different on every call, for inputs smaller than the
kernel along some axis: a 3x3x3 convolution over 2 slices, a stride-2 3x3 convolution over a
2 x 1 map. The forward pass and the input gradient are right. Our models reach such sizes at
their deepest levels (the U-Net's 2-slice level of a 16-slice cube, ResNet-18's layer4 on small
slices), so bf16 training on a CPU diverged to NaN in some runs and not others. These classes
compute exactly those convolutions in float32 on a CPU; they are a few voxels, so it costs
nothing measurable. ``tests/models/test_lowp.py`` checks both models' bf16 gradients against float32.
No library fixes this (it is a kernel bug below torch), hence the few lines here.
"""

from __future__ import annotations

import torch
from torch import nn


class _SmallInputInFloat32:
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = torch.is_autocast_enabled("cpu")
        low = autocast or x.dtype in (torch.bfloat16, torch.float16)
        if x.device.type == "cpu" and low and any(s < k for s, k in zip(x.shape[2:], self.kernel_size)):
            dtype = torch.get_autocast_dtype("cpu") if autocast else x.dtype
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float()).to(dtype)
        return super().forward(x)


class Conv2d(_SmallInputInFloat32, nn.Conv2d):
    """``nn.Conv2d``, in float32 on a CPU for a low-precision input smaller than the kernel."""


class Conv3d(_SmallInputInFloat32, nn.Conv3d):
    """``nn.Conv3d``, in float32 on a CPU for a low-precision input smaller than the kernel."""


def guard_convolutions(model: nn.Module) -> nn.Module:
    """Make every plain ``nn.Conv2d`` / ``nn.Conv3d`` of ``model`` (e.g. torchvision's ResNet) one
    of the classes above, in place: parameters, names and state dicts are unchanged."""
    for m in model.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = Conv2d
        elif type(m) is nn.Conv3d:
            m.__class__ = Conv3d
    return model
