"""The paper's own numbers (Table 1 and Table 2 as printed), shipped so the book can set our
reproduction beside them. They are the paper's results, never ours."""

from __future__ import annotations

from importlib import resources

import pandas as pd


def table1() -> pd.DataFrame:
    with resources.files(__package__).joinpath("table1.csv").open() as f:
        return pd.read_csv(f)


def table2() -> pd.DataFrame:
    with resources.files(__package__).joinpath("table2.csv").open() as f:
        return pd.read_csv(f)


# Paper section 3: inter-reader agreement of the three neuroradiologists.
FLEISS_KAPPA = 0.46
# Paper section 2.1: test set of 82 patients read by three neuroradiologists.
N_TEST = 82
