"""The one parallel map over patients: ordered results, one failure never stops the others."""

from __future__ import annotations

from tss.parallel import Failed, map_patients


def _square_unless_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is a bad patient")
    return x * x


def test_a_failing_task_becomes_a_failure_in_its_place_and_the_others_finish():
    for jobs in (1, 2):
        out = map_patients(_square_unless_three, [1, 2, 3, 4, 5], jobs=jobs, progress=False)
        assert [r for r in out if not isinstance(r, Failed)] == [1, 4, 16, 25]   # input order, every other task
        assert isinstance(out[2], Failed) and out[2].item == 3
        assert out[2].error == "ValueError: three is a bad patient" and "_square_unless_three" in out[2].trace
