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


# Paper section 2.1: the two tasks, time since stroke onset under 3 h and under 4.5 h (the
# thrombolysis window), in minutes. Every module that labels a patient uses these two.
TSS_3H_MIN = 180
TSS_45H_MIN = 270
# Paper section 3: inter-reader agreement of the three neuroradiologists.
FLEISS_KAPPA = 0.46
# Paper section 2.1: test set of 82 patients read by three neuroradiologists.
N_TEST = 82
# Paper Table 1 ("all" column): median age (years), NIHSS and onset to MRI (min).
TABLE1_MEDIANS = {"age": 70, "nihss": 8, "onset_to_mri_min": 222}
# Paper section 2.4 (implementation details): GPU memory of training at batch 8, in GB.
GPU_MEMORY_GB_BATCH8 = {"2d": 4.0, "3d": 7.0}

# Not the paper's: the bare-model training-step ceiling measured on one H100 (bf16 autocast,
# batch 8, input 3 x 26 x 224 x 112; ../shared/gpu/README.md), the reference for our throughput.
H100_CEILING_BF16_BATCH8 = {"2d": {"hemis_per_s": 369, "peak_gib": 1.5},
                            "3d": {"hemis_per_s": 245, "peak_gib": 3.8}}
