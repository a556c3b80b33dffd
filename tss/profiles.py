"""Run profiles. ``quick``: CPU, CI, laptops; ``full``: the paper's sizes, on a GPU."""

from __future__ import annotations

from dataclasses import dataclass

PROFILES = ("quick", "full")


@dataclass(frozen=True)
class CohortProfile:
    n_patients: int
    seed: int = 0


COHORT = {
    # quick: enough patients for every split to hold both TSS classes (test ~16 patients)
    "quick": CohortProfile(n_patients=80),
    # full: the paper's cohort size
    "full": CohortProfile(n_patients=422),
}


@dataclass(frozen=True)
class ModelProfile:
    """Input size of the models. The hemisphere tensors are always 3 x 26 x 224 x 112 on disk;
    ``downsample`` shrinks each slice in-plane (average pooling) before the models see it."""

    downsample: int
    genesis_cube: tuple[int, int, int]  # Models Genesis sub-volume (slices, rows, columns)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (26, 224 // self.downsample, 112 // self.downsample)


MODEL = {
    # quick: a 2D step over 26 slices at 224 x 112 takes seconds on a CPU core; 56 x 28 keeps the
    # whole experiment grid in minutes while every stage of both networks still has a grid to attend
    "quick": ModelProfile(downsample=4, genesis_cube=(16, 32, 16)),
    # full: the paper's input; Models Genesis' cubes are 64 x 64 x 32, our volumes have 26 slices
    "full": ModelProfile(downsample=1, genesis_cube=(16, 64, 64)),
}


def default_profile() -> str:
    """'full' when a CUDA GPU is visible, else 'quick'."""
    try:
        import torch

        return "full" if torch.cuda.is_available() else "quick"
    except Exception:  # torch missing or broken: the CPU profile still works
        return "quick"


def check(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    return profile
