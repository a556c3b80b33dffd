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
