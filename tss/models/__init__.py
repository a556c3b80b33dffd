"""The paper's two architectures, Models Genesis, weight transfer and freezing."""

from .attention import GridAttention
from .base import PartsModel, TransferReport, load_matching, read_state_dict
from .imagenet import WeightsUnavailable, load_imagenet
from .slice2d import SliceAttentionNet
from .unet3d import Attention3DNet, Encoder3D, UNet3D

ARCHS = ("2d", "3d")


def build(arch: str, n_slices: int = 26) -> PartsModel:
    """The classifier of an architecture: '2d' (slice-wise attention) or '3d' (U-Net encoder)."""
    if arch == "2d":
        return SliceAttentionNet(n_slices=n_slices)
    if arch == "3d":
        return Attention3DNet()
    raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")


__all__ = ["ARCHS", "Attention3DNet", "Encoder3D", "GridAttention", "PartsModel", "SliceAttentionNet",
           "TransferReport", "UNet3D", "WeightsUnavailable", "build", "load_imagenet", "load_matching",
           "read_state_dict"]
