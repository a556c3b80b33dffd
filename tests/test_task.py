"""The tasks' one type (tss.task): thresholds, label rule, names."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tss import paper
from tss.task import Task, title_of_phase
from tss.train.config import PHASES


def test_labels_cut_at_the_papers_thresholds_strictly_below():
    minutes = np.array([0, 179, 180, 181, 269, 270, 271, np.nan])
    np.testing.assert_array_equal(Task.TSS3.label(minutes), [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(Task.TSS45.label(minutes), [1, 1, 1, 1, 1, 0, 0, 0])  # unknown time: not early
    assert (Task.TSS3.threshold_min, Task.TSS45.threshold_min) == (paper.TSS_3H_MIN, paper.TSS_45H_MIN)
    s = pd.Series([100.0, 300.0], index=["a", "b"])
    assert Task.TSS45.label(s).to_dict() == {"a": 1, "b": 0}  # a Series keeps its index
    with pytest.raises(ValueError, match="lesion"):
        Task.STROKE.label(minutes)


def test_a_task_is_its_string_so_old_configurations_and_keys_read_the_same():
    assert Task.TSS45 == "tss_lt_4_5h" and Task("tss_lt_3h") is Task.TSS3
    assert json.dumps({"task": Task.TSS3}) == json.dumps({"task": "tss_lt_3h"})
    assert {p.task for p in PHASES.values()} >= set(Task)


def test_phases_and_titles():
    assert [Task.of_phase(p) for p in ("stroke", "tss3", "tss45", "attention")] == [Task.STROKE, Task.TSS3, Task.TSS45,
                                                                                   Task.TSS45]
    assert title_of_phase("tss3") == "TSS < 3 h" and title_of_phase("attention") == "TSS < 4.5 h"
    for p in ("stroke", "tss3", "tss45", "attention"):
        assert PHASES[p].task == Task.of_phase(p)
    with pytest.raises(ValueError, match="tss45"):
        Task.of_phase("genesis")
