"""One decision for the training precision: bf16 where the device has it, fp16 with a gradient
scaler on GPUs without bf16 (Colab's T4), fp32 elsewhere; every run records it in its key."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import TINY, tiny_cohort
from torch import nn

from tss import precision
from tss.models import PartsModel
from tss.train import Experiment, Run, tasks

AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
AMX = "flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
AVX2 = "flags\t\t: fpu sse2 avx2 fma\n"


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv("TSS_PRECISION", raising=False)


def test_cpu_bf16_is_read_from_the_instruction_flags():
    assert precision.cpu_has_bf16(AVX512_BF16) and precision.cpu_has_bf16(AMX)
    assert not precision.cpu_has_bf16(AVX2) and not precision.cpu_has_bf16("")


@pytest.mark.parametrize("has_bf16, name", [(True, "bf16"), (False, "fp32")])
def test_a_cpu_trains_in_bf16_only_where_it_has_the_instructions(monkeypatch, has_bf16, name):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda cpuinfo=None: has_bf16)
    p = precision.choose("cpu")
    assert p.name == name and not p.scaler and p.dtype == (torch.bfloat16 if has_bf16 else None)


@pytest.mark.parametrize("bf16, name, scaler", [(True, "bf16", False), (False, "fp16", True)])
def test_a_gpu_without_bf16_trains_in_fp16_with_a_gradient_scaler(monkeypatch, bf16, name, scaler):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    p = precision.choose("cuda")  # only the device's capability is asked: no GPU needed
    assert (p.name, p.scaler) == (name, scaler)


def test_the_environment_overrides_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv("TSS_PRECISION", "FP32")
    assert precision.choose("cuda").name == "fp32"
    monkeypatch.setenv("TSS_PRECISION", "fp8")
    with pytest.raises(ValueError, match="fp8"):
        precision.choose("cpu")


def test_a_cohort_held_in_low_precision_trains_in_it():
    assert precision.for_data(torch.zeros(1, dtype=torch.bfloat16)).name == "bf16"
    assert precision.for_data(torch.zeros(1, dtype=torch.float16)).name == "fp16"


class _Tiny(PartsModel):
    """A small hemisphere classifier: fp16 convolutions on a CPU are slow reference kernels, and
    the path under test is the loop's (autocast dtype, gradient scaler, checkpoint), not the model."""

    def __init__(self, n_slices=26):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4), nn.Linear(4, 1)

    def parts(self):
        return {"conv": [self.conv, self.bn], "fc": [self.fc]}

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3, 4))).squeeze(1).float()


def test_fp16_with_a_gradient_scaler_trains_resumes_and_keys_its_runs_apart(tmp_path, monkeypatch):
    exp = Experiment("2d", "stroke", "random")
    c = tiny_cohort()
    monkeypatch.setattr(tasks, "build", lambda arch, n_slices, **kw: _Tiny(n_slices))
    monkeypatch.setenv("TSS_PRECISION", "fp16")  # the T4 path, here on the CPU
    run = Run(exp, c, tmp_path, "quick", 0, max_epochs=2, progress=False, train_profile=TINY)
    s = run.fit()
    assert s["precision"] == "fp16" and all(v == v for k, v in s.items() if k.endswith("_auc"))
    ck = torch.load(tmp_path / exp.name / "last.pt", weights_only=False)
    assert ck["scaler"]["scale"] > 0  # the scaler ran and is checkpointed for a resume
    monkeypatch.setenv("TSS_PRECISION", "fp32")
    other = Run(exp, c, tmp_path, "quick", 0, max_epochs=2, progress=False, train_profile=TINY)
    assert other.key != run.key and not other.done()
    assert json.loads((tmp_path / exp.name / "config.json").read_text())["precision"] == "fp16"
