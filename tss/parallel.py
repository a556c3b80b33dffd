"""One way to run a step over many patients: worker processes, a progress bar, no lost work.

Synthesis, preprocessing and the Lee baseline each map one function over the patients of a cohort.
:func:`map_patients` runs it with joblib, shows progress as results arrive (in any order), returns
them in the input's order, and turns an exception in one task into a :class:`Failed` for that item,
so one bad patient never stops the others or discards their results.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Failed:
    """A task that raised: its item, ``"ExceptionType: message"`` and the worker's traceback."""

    item: Any
    error: str
    trace: str


def _guarded(fn: Callable, index: int, item) -> tuple[int, Any]:
    try:
        return index, fn(item)
    except Exception as e:  # one task's failure is a result, not the end of the map
        return index, Failed(item, f"{type(e).__name__}: {e}", traceback.format_exc())


def map_patients(fn: Callable, items: Sequence, jobs: int = -1, desc: str = "", unit: str = "patient",
                 progress: bool = True) -> list:
    """``[fn(item) for item in items]`` in joblib worker processes (``jobs``: -1 all cores, 1 in this
    process), with a progress bar; a task that raises gives a :class:`Failed` in its place.

    ``fn`` must be picklable (a module-level function, or :func:`functools.partial` of one).
    """
    from joblib import Parallel, delayed
    from tqdm import tqdm

    out: list = [None] * len(items)
    work = Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(_guarded)(fn, i, item) for i, item in enumerate(items))
    for i, result in tqdm(work, total=len(items), desc=desc, unit=unit, disable=not progress):
        out[i] = result
    return out
