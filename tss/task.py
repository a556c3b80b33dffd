"""The paper's classification tasks, one type: name, threshold, label rule and display labels.

Every module that labels a patient or names a task takes it from here (as MONAI keeps its keys in
string enums): ``Task.TSS45.label(minutes)`` is the one spelling of "onset to MRI under 4.5 h".
A member is its string (``Task.TSS45 == "tss_lt_4_5h"``), so configurations and run keys written
before this type existed read the same.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from .paper import TSS_3H_MIN, TSS_45H_MIN


class Task(StrEnum):
    STROKE = "stroke"        # phase 1: does this hemisphere hold an acute lesion?
    TSS3 = "tss_lt_3h"       # phase 2: time since stroke onset under 3 h (paper section 2.1)
    TSS45 = "tss_lt_4_5h"    # phases 3-4: under 4.5 h, the thrombolysis window

    @property
    def threshold_min(self) -> int | None:
        """The onset-to-MRI cut in minutes (None for stroke detection, which has no clock)."""
        return {Task.TSS3: TSS_3H_MIN, Task.TSS45: TSS_45H_MIN}.get(self)

    @property
    def title(self) -> str:
        """How the book names it: "stroke detection", "TSS < 3 h", "TSS < 4.5 h"."""
        return {Task.STROKE: "stroke detection", Task.TSS3: "TSS < 3 h", Task.TSS45: "TSS < 4.5 h"}[self]

    @property
    def phase(self) -> str:
        """The training phase (``tss.train.config.PHASES``) that first learns it; phase 4 ("attention")
        learns TSS < 4.5 h again."""
        return {Task.STROKE: "stroke", Task.TSS3: "tss3", Task.TSS45: "tss45"}[self]

    def label(self, minutes) -> np.ndarray:
        """1 where onset to MRI (minutes) is under the threshold, else 0 (a missing time: 0), as int;
        a Series stays a Series (its index kept)."""
        if self.threshold_min is None:
            raise ValueError("stroke detection is labelled by the lesion, not by onset time")
        return (minutes < self.threshold_min).astype(int)

    @classmethod
    def of_phase(cls, phase: str) -> Task:
        """The task a training phase learns: stroke, tss3, tss45 or attention (TSS < 4.5 h)."""
        by = {t.phase: t for t in cls} | {"attention": cls.TSS45}
        if phase not in by:
            raise ValueError(f"phase {phase!r} learns no classification task; expected one of {', '.join(by)}")
        return by[phase]


def title_of_phase(phase: str) -> str:
    """The display label of the task a TSS phase learns ("tss3" -> "TSS < 3 h")."""
    return Task.of_phase(phase).title
