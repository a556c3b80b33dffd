"""The session's small synthetic cohort (the ``small`` fixture of conftest.py generates it) and the
shared data folder. A test imports them from here, in any tests folder: ``from conftest import ...``
finds whichever folder's conftest.py pytest imported last."""

from __future__ import annotations

from pathlib import Path

N_SMALL = 10
SEED_SMALL = 3
SHARED = Path(__file__).resolve().parents[2] / "shared"
