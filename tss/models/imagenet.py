"""ImageNet initialisation of the 2D model's ResNet-18 trunk: from a local file, or, where the network
is allowed and the user opts in (``TSS_IMAGENET_DOWNLOAD=1``), downloaded by torchvision's own API."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .base import TransferReport, load_matching

# torchvision's file name for ResNet18_Weights.IMAGENET1K_V1, in torch's hub cache
FILENAME = "resnet18-f37072fd.pth"
ENV = "TSS_IMAGENET_WEIGHTS"
DOWNLOAD_ENV = "TSS_IMAGENET_DOWNLOAD"  # =1: download torchvision's file into torch's hub cache if absent


class WeightsUnavailable(FileNotFoundError):
    pass


def candidates() -> list[Path]:
    paths = []
    if os.environ.get(ENV):
        paths.append(Path(os.environ[ENV]))
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / FILENAME)
    return paths


def download_allowed() -> bool:
    """Whether the user opted in to torchvision's download (``TSS_IMAGENET_DOWNLOAD=1``)."""
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def download() -> Path:
    """torchvision's ImageNet ResNet-18 (ResNet18_Weights.IMAGENET1K_V1), fetched by torchvision's own
    API into torch's hub cache (checksum checked by torch.hub); returns the file."""
    from torchvision.models import ResNet18_Weights

    ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
    return Path(torch.hub.get_dir()) / "checkpoints" / FILENAME


def find_weights(path: str | Path | None = None) -> Path:
    """The ImageNet ResNet-18 weights file: ``path``, else $TSS_IMAGENET_WEIGHTS, else torch's hub
    cache; when none exists and ``TSS_IMAGENET_DOWNLOAD=1``, torchvision downloads it into that
    cache. Otherwise nothing is downloaded: raises :class:`WeightsUnavailable` saying where to put
    the file (or why the download failed)."""
    for p in ([Path(path)] if path else candidates()):
        if p.is_file():
            return p
    if not path and download_allowed():
        try:
            return download()
        except Exception as e:  # no network, a proxy, a bad checksum: the rows say why
            raise WeightsUnavailable(f"ImageNet ResNet-18 weights: the download that {DOWNLOAD_ENV}=1 asked "
                                     f"for failed ({type(e).__name__}: {e})") from e
    home = str(Path.home())
    where = path or " or ".join(str(p).replace(home, "~", 1) for p in candidates())
    raise WeightsUnavailable(
        f"ImageNet ResNet-18 weights not found at {where}. Nothing is downloaded at run time unless "
        f"you set {DOWNLOAD_ENV}=1 (with a network): copy torchvision's {FILENAME} "
        f"(ResNet18_Weights.IMAGENET1K_V1) there, or set ${ENV} to its path. The ImageNet rows are "
        f"skipped without it.")


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
