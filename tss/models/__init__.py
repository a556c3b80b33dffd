"""The paper's two architectures, Models Genesis, weight transfer and freezing."""

import pandas as pd
import torch

from ..profiles import ARCHS
from .attention import GridAttention
from .base import PartsModel, TransferReport, load_matching, read_state_dict
from .imagenet import WeightsUnavailable, load_imagenet
from .slice2d import SliceAttentionNet
from .unet3d import Attention3DNet, Encoder3D, UNet3D


def output_shapes(model: torch.nn.Module, modules: list[str], x: torch.Tensor) -> dict[str, str]:
    """The output shape (without the batch axis) of each named submodule when ``model`` (in eval
    mode, no gradients) runs on ``x``, as "C x D x H x W"; an attention gate's is its attention map's.
    The hooks are removed afterwards."""
    out, hooks = {}, []
    for name in modules:
        def hook(_, __, y, name=name):
            y = y[1] if isinstance(y, tuple) else y  # attention gates return (pooled, map, alpha)
            out[name] = " x ".join(map(str, y.shape[1:]))
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def parameter_table(classifiers: dict[str, PartsModel], unet: UNet3D | None = None) -> pd.DataFrame:
    """Parameters of each named part of each classifier and what the paper's phases do with it
    (phases 2-3 freeze the early layers, phase 4 trains the attention only); with ``unet``, the
    parts only Models Genesis trains (decoder, output) as rows of their own."""
    rows = []
    for name, model in classifiers.items():
        for part, n in model.count_parameters().items():
            rows.append({"model": name, "part": part, "parameters": n,
                         "phases 2-3": "frozen" if part in model.EARLY else "trained",
                         "phase 4": "trained" if part in model.ATTENTION else "frozen"})
    for part, n in (unet.count_parameters().items() if unet is not None else ()):
        if part in ("decoder", "out"):
            rows.append({"model": "3D U-Net (Genesis only)", "part": part, "parameters": n,
                         "phases 2-3": "", "phase 4": ""})
    return pd.DataFrame(rows)


def build(arch: str, n_slices: int = 26) -> PartsModel:
    """The classifier of an architecture: '2d' (slice-wise attention) or '3d' (U-Net encoder)."""
    if arch == "2d":
        return SliceAttentionNet(n_slices=n_slices)
    if arch == "3d":
        return Attention3DNet()
    raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")


__all__ = ["ARCHS", "Attention3DNet", "Encoder3D", "GridAttention", "PartsModel", "SliceAttentionNet",
           "TransferReport", "UNet3D", "WeightsUnavailable", "build", "load_imagenet", "load_matching",
           "output_shapes", "parameter_table", "read_state_dict"]
