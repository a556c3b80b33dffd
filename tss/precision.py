"""Training precision by what the device can do: one decision, used by every run.

- a CUDA GPU with bf16 (Ampere and later: A100, H100, RTX 30xx+): bf16 autocast;
- a CUDA GPU without it (Colab's free T4, V100): fp16 autocast with a gradient scaler;
- a CPU with bf16 instructions (AVX512-BF16 or AMX, Linux's ``/proc/cpuinfo`` flags): bf16
  autocast (measured on this project's 2-core machines: 1.8-2.4x the fp32 training steps);
- any other CPU: fp32 (bf16 there is emulated, slower than fp32).

``TSS_PRECISION=fp32|bf16|fp16`` overrides the choice (e.g. to compare, or to reproduce a run
made elsewhere). The choice is part of every run's configuration (its key), so runs made in one
precision are never read back as another's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

CHOICES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    name: str                  # fp32 | bf16 | fp16
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: no autocast, fp32)."""
        return CHOICES[self.name]

    @property
    def scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling (torch.amp.GradScaler)."""
        return self.name == "fp16"


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU executes bf16 natively (AVX512-BF16 or AMX-BF16 flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: no cheap way to tell; fp32 is always right
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def choose(device: str | torch.device) -> Precision:
    """The training precision for ``device`` (see the module's docstring)."""
    forced = os.environ.get("TSS_PRECISION", "").strip().lower()
    if forced:
        if forced not in CHOICES:
            raise ValueError(f"TSS_PRECISION={forced!r}: expected one of {list(CHOICES)}")
        return Precision(forced, "set by TSS_PRECISION")
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", "CUDA GPU with bf16")
        return Precision("fp16", "CUDA GPU without bf16: fp16 autocast with a gradient scaler")
    if device.type == "cpu" and cpu_has_bf16():
        return Precision("bf16", "CPU with bf16 instructions (AVX512-BF16 or AMX)")
    return Precision("fp32", f"{device.type} without native bf16")


def for_data(x: torch.Tensor) -> Precision:
    """The precision of training on the tensor ``x``: a cohort held in bf16 or fp16 (resident on a
    GPU) trains in that dtype's autocast; an fp32 one by :func:`choose` for its device."""
    if x.dtype == torch.bfloat16:
        return Precision("bf16", "the cohort is held in bf16")
    if x.dtype == torch.float16:
        return Precision("fp16", "the cohort is held in fp16")
    return choose(x.device)
