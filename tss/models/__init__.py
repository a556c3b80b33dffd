"""The paper's two architectures, Models Genesis, weight transfer and freezing."""

import pandas as pd
import torch

from .. import profiles
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


# the modules whose output shapes the Models chapter lists, per model
SHAPE_MODULES = {
    "2D (per slice)": ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "attention", "fc"],
    "3D": ["encoder.down1", "encoder.down2", "encoder.down3", "encoder.down4", "attention1", "attention2", "fc"],
    "U-Net (Genesis)": ["encoder.down1", "encoder.down2", "encoder.down3", "encoder.down4", "up3", "up2", "up1", "out"],
}


def shape_table(profile_names=("full", "quick")) -> pd.DataFrame:
    """Output shape of each module of :data:`SHAPE_MODULES` for one random input of each profile's
    size (the 2D model per slice; the U-Net on a Models Genesis cube), one column per profile."""
    models = {"2D (per slice)": (lambda s: SliceAttentionNet(n_slices=s[0]), lambda m: m.input_shape("2d")),
              "3D": (lambda s: Attention3DNet(), lambda m: m.input_shape("3d")),
              "U-Net (Genesis)": (lambda s: UNet3D(), lambda m: m.genesis_cube)}
    tables = []
    for label, modules in SHAPE_MODULES.items():
        make, size = models[label]
        cols = {}
        for p in profile_names:
            s = tuple(size(profiles.MODEL[p]))
            shapes = output_shapes(make(s), modules, torch.rand(1, 3, *s))
            cols[p] = {"input": " x ".join(map(str, (3, *s))), **shapes}
        t = pd.DataFrame(cols)
        t.index = pd.MultiIndex.from_product([[label], t.index], names=["model", "module"])
        tables.append(t)
    return pd.concat(tables)


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


def build(arch: str, n_slices: int = 26, aggregate: str = "probability") -> PartsModel:
    """The classifier of an architecture: '2d' (slice-wise attention; ``aggregate``: how its slice
    outputs combine, :class:`SliceAttentionNet`) or '3d' (U-Net encoder)."""
    if arch == "2d":
        return SliceAttentionNet(n_slices=n_slices, aggregate=aggregate)
    if aggregate != "probability":
        raise ValueError(f"slice aggregation {aggregate!r} is a 2D model's; the 3D model pools its volume")
    if arch == "3d":
        return Attention3DNet()
    raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")


__all__ = ["ARCHS", "SHAPE_MODULES", "Attention3DNet", "Encoder3D", "GridAttention", "PartsModel", "SliceAttentionNet",
           "TransferReport", "UNet3D", "WeightsUnavailable", "build", "load_imagenet", "load_matching",
           "output_shapes", "parameter_table", "read_state_dict", "shape_table"]
