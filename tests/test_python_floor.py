"""The interpreter meets pyproject's requires-python. Its own module, importing only the standard
library that every Python 3 has: a module that imports tomllib (3.11+) would fail to collect on an
older Python before this test could say why."""

import re
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requires_python(text: str) -> tuple[int, ...]:
    """The floor of ``requires-python = ">=3.11"`` in pyproject's text, as (3, 11)."""
    m = re.search(r'^requires-python\s*=\s*"\s*>=\s*([\d.]+)\s*"', text, re.M)
    if not m:
        raise ValueError("pyproject.toml has no requires-python = \">=X.Y\"")
    return tuple(int(p) for p in m.group(1).split("."))


def test_python_meets_the_floor():
    floor = requires_python(PYPROJECT.read_text())
    assert sys.version_info[:len(floor)] >= floor, f"Python {sys.version.split()[0]} is below the floor {floor}"


def test_the_floor_is_read_from_pyproject():
    assert requires_python('[project]\nrequires-python = ">=3.11"\n') == (3, 11)
    assert requires_python(PYPROJECT.read_text()) >= (3, 11)
