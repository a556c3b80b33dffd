"""The 2D model's input size (slices, height, width) under the quick and full profiles, shared by
the tests of the 2D and 3D models and of bf16 on the CPU."""

from __future__ import annotations

from tss import profiles

QUICK = profiles.MODEL["quick"].input_shape("2d")
FULL = profiles.MODEL["full"].input_shape("2d")
