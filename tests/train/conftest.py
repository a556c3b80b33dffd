"""Fixtures of the tss.train tests."""

from __future__ import annotations

import pytest
from tiny import tiny_cohort


@pytest.fixture(scope="module")
def cohort():
    return tiny_cohort()
