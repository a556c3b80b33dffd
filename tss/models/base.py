"""Named parts, freezing and weight transfer shared by the 2D and the 3D model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


class PartsModel(nn.Module):
    """A model whose parameters are grouped into named parts (``parts()``), so that phases can say
    "freeze the stem and layer1" or "train the attention only" as data. A frozen part keeps its
    parameters (``requires_grad`` off) and its batch-norm statistics (held in eval mode)."""

    HEAD: tuple[str, ...] = ()       # parts that a transfer never loads (task-specific outputs)
    STAGES: tuple[str, ...] = ()     # the trunk's parts in the order forward() runs them
    EARLY: tuple[str, ...] = ()      # the paper's frozen early layers (phases 2-3)
    ATTENTION: tuple[str, ...] = ()  # what phase 4 fine-tunes
    PROBE: tuple[str, ...] = ()      # what a linear probe trains (the head, and the 2D slice weights)

    def __init__(self):
        super().__init__()
        self.frozen: tuple[str, ...] = ()

    def parts(self) -> dict[str, list[nn.Module]]:
        raise NotImplementedError

    def freeze(self, parts: Iterable[str]) -> PartsModel:
        parts = tuple(parts)
        known = self.parts()
        unknown = [p for p in parts if p not in known]
        if unknown:
            raise ValueError(f"unknown part(s) {unknown}; this model has {list(known)}")
        self.frozen = parts
        for name, mods in known.items():
            for m in mods:
                for p in m.parameters():
                    p.requires_grad_(name not in parts)
        return self.train(self.training)

    def train_only(self, parts: Iterable[str]) -> PartsModel:
        keep = set(parts)
        return self.freeze([p for p in self.parts() if p not in keep])

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen:
            for m in self.parts()[name]:
                m.eval()  # frozen batch norms keep their running statistics
        return self

    def frozen_stages(self) -> tuple[str, ...]:
        """The leading :attr:`STAGES` that are frozen: with their batch norms in eval mode they are a
        fixed function of the input, which :meth:`encode` computes once per example."""
        out = []
        for name in self.STAGES:
            if name not in self.frozen:
                break
            out.append(name)
        return tuple(out)

    def count_parameters(self) -> dict[str, int]:
        return {name: sum(p.numel() for m in mods for p in m.parameters())
                for name, mods in self.parts().items()}

    def cam_target_layers(self) -> list[nn.Module]:
        raise NotImplementedError


@dataclass
class TransferReport:
    loaded: list[str] = field(default_factory=list)
    skipped_head: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)      # in the model, not in the source
    unexpected: list[str] = field(default_factory=list)   # in the source, not in the model

    def __str__(self) -> str:
        def few(keys):
            prefixes = sorted({k.split(".")[0] for k in keys})
            return f"{len(keys)} ({', '.join(prefixes)})" if keys else "0"
        return (f"loaded {few(self.loaded)}; skipped head {few(self.skipped_head)}; "
                f"shape mismatch {few(self.shape_mismatch)}; not in source {few(self.missing)}; "
                f"unused from source {few(self.unexpected)}")


def read_state_dict(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict from a mapping, a ``torch.save``d state dict or a phase checkpoint
    (a dict holding the weights under ``"model"``)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {path}")
        source = torch.load(path, map_location="cpu", weights_only=True)
    if "model" in source and isinstance(source["model"], Mapping):
        source = source["model"]
    return dict(source)


def load_matching(model: nn.Module, source, skip: Iterable[str] | None = None,
                  strip_prefix: str = "") -> TransferReport:
    """Copy every tensor of ``source`` whose name and shape match ``model``, except those of the
    ``skip`` prefixes (default: the model's HEAD parts). Returns what was loaded and skipped."""
    state = read_state_dict(source)
    if strip_prefix:
        state = {k[len(strip_prefix):]: v for k, v in state.items() if k.startswith(strip_prefix)}
    skip = tuple(getattr(model, "HEAD", ()) if skip is None else skip)
    own = model.state_dict()
    rep = TransferReport()
    take = {}
    for k, v in state.items():
        if k not in own:
            rep.unexpected.append(k)
        elif any(k == s or k.startswith(s + ".") for s in skip):
            rep.skipped_head.append(k)
        elif own[k].shape != v.shape:
            rep.shape_mismatch.append(k)
        else:
            take[k] = v
            rep.loaded.append(k)
    rep.missing = [k for k in own if k not in state]
    model.load_state_dict(take, strict=False)
    return rep
