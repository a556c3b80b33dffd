"""ImageNet initialisation of the 2D model's ResNet-18 trunk, from local files only."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .base import TransferReport, load_matching

# torchvision's file name for ResNet18_Weights.IMAGENET1K_V1, in torch's hub cache
FILENAME = "resnet18-f37072fd.pth"
ENV = "TSS_IMAGENET_WEIGHTS"


class WeightsUnavailable(FileNotFoundError):
    pass


def candidates() -> list[Path]:
    paths = []
    if os.environ.get(ENV):
        paths.append(Path(os.environ[ENV]))
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / FILENAME)
    return paths


def find_weights(path: str | Path | None = None) -> Path:
    """The ImageNet ResNet-18 weights file: ``path``, else $TSS_IMAGENET_WEIGHTS, else torch's hub
    cache. Nothing is downloaded; raises :class:`WeightsUnavailable` saying where to put the file."""
    for p in ([Path(path)] if path else candidates()):
        if p.is_file():
            return p
    home = str(Path.home())
    where = path or " or ".join(str(p).replace(home, "~", 1) for p in candidates())
    raise WeightsUnavailable(
        f"ImageNet ResNet-18 weights not found at {where}. Nothing is downloaded at run time: "
        f"copy torchvision's {FILENAME} (ResNet18_Weights.IMAGENET1K_V1) there, or set ${ENV} "
        f"to its path. The ImageNet rows are skipped without it.")


def load_imagenet(model, path: str | Path | None = None) -> TransferReport:
    """Load ImageNet weights into a :class:`~tss.models.SliceAttentionNet` trunk (conv1 .. layer4;
    ImageNet's 1000-class fc is skipped)."""
    report = load_matching(model, find_weights(path), skip=("fc",))
    if not report.loaded:
        raise ValueError("the ImageNet file holds no tensor that matches the ResNet-18 trunk")
    return report


def available(path: str | Path | None = None) -> bool:
    try:
        find_weights(path)
        return True
    except WeightsUnavailable:
        return False
