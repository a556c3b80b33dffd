"""Shared fixtures: one small synthetic cohort for the whole session (generation costs ~40 s)."""

from __future__ import annotations

import pytest
from small_cohort import N_SMALL, SEED_SMALL

from tss import synth


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    res = synth.generate(root, n=N_SMALL, seed=SEED_SMALL, jobs=2, progress=False)
    return root, res


def pytest_collection_modifyitems(items):
    """Every test that needs the synthetic cohort (generated once per session, ~40 s) is ``slow``:
    ``pytest -m "not slow"`` is the quick inner loop; ``make test`` runs everything."""
    for item in items:
        if "small" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
