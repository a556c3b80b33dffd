"""Fixtures of the tss.preprocess tests."""

from __future__ import annotations

import pytest
from preprocessed import GOOD

from tss import preprocess


# one preprocessing run for the qc and pipeline tests (scope "module" would run it once per file)
@pytest.fixture(scope="session")
def processed(small, tmp_path_factory):
    root, _ = small
    cache = tmp_path_factory.mktemp("prep")
    run = preprocess.preprocess_cohort(root, cache, jobs=2, progress=False, ids=GOOD)
    assert not run.failures, run.summary()
    return root, cache
