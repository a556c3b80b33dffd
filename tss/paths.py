"""Paths built from untrusted values (manifest cells, patient ids) that provably stay in their folder.

A manifest is untrusted input: a patient id becomes part of file names (the preprocessing cache,
the synthetic cohort) and a path cell names a file we read. :func:`inside` joins such a value onto
the folder it belongs to and refuses the result unless it resolves (symlinks followed) inside that
folder; :func:`id_problem` is the rule a patient id must pass before it becomes a file name::

    inside(cache / "patients", f"{pid}.npz")     # ValueError for "../../x", "/tmp/x", a symlink out
    id_path(cache / "patients", pid, ".npz")     # the same, and the id must be safe
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["ID_PATTERN", "ID_RULE", "id_problem", "check_id", "inside", "id_path", "is_within"]

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ID_RULE = ("1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit, "
           "without '..' and not ending with '.'")
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def _describe(c: str) -> str:
    if c in "/\\":
        return f"a path separator {c!r}"
    if not c.isprintable():
        return f"a control character {c!r}"
    if c.isspace():
        return f"whitespace {c!r}"
    return repr(c)


def id_problem(pid: object) -> str | None:
    """Why ``pid`` cannot safely be one file-name component on every system, or None when it can.

    Safe: :data:`ID_PATTERN` (no separator, no leading dot or dash, no control character, no
    whitespace, at most 64 characters), no ``..``, no trailing ``.`` (Windows drops it) and not a
    Windows device name (``CON``, ``NUL``, ``COM1``, ...).
    """
    if not isinstance(pid, str):
        return f"not text ({type(pid).__name__})"
    if pid == "":
        return "empty"
    if len(pid) > 64:
        return f"{len(pid)} characters long (at most 64)"
    bad = dict.fromkeys(c for c in pid if not (c.isascii() and (c.isalnum() or c in "._-")))
    if bad:
        return "contains " + ", ".join(_describe(c) for c in bad)
    if not pid[0].isalnum():
        return f"starts with {pid[0]!r}" + (" (a hidden file name)" if pid[0] == "." else "")
    if ".." in pid:
        return "contains '..'"
    if pid.endswith("."):
        return "ends with '.' (Windows drops it)"
    if pid.split(".")[0].upper() in _WINDOWS_DEVICES:
        return "a reserved device name on Windows"
    assert ID_PATTERN.fullmatch(pid)
    return None


def check_id(pid: object) -> str:
    """``pid`` itself when :func:`id_problem` finds nothing; else ValueError naming it."""
    if (problem := id_problem(pid)) is not None:
        raise ValueError(f"unsafe patient id {pid!r}: {problem}; an id becomes a file name, so it must be {ID_RULE}")
    return pid  # type: ignore[return-value]


def inside(root: str | Path, *parts: str | Path) -> Path:
    """``root`` joined with ``parts``, resolved (``..`` and symlinks followed), checked to lie inside
    the resolved ``root``. Raises ValueError naming the value when it does not (an absolute part, a
    ``..`` that climbs out, a symlink that points out, a value naming ``root`` itself) or cannot be
    resolved (a NUL byte, a symlink loop)."""
    value = "/".join(str(p) for p in parts)
    base = Path(root).resolve()
    try:
        target = base.joinpath(*parts).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # NUL byte, symlink loop
        raise ValueError(f"cannot resolve {value!r} inside {root}: {e}") from None
    if not target.is_relative_to(base) or (parts and target == base):
        raise ValueError(f"{value!r} leads outside {root} (to {target}): refused")
    return target


def id_path(root: str | Path, pid: object, suffix: str = "") -> Path:
    """``root / (pid + suffix)`` for a safe patient id (:func:`check_id`), checked by :func:`inside`."""
    return inside(root, check_id(pid) + suffix)


def is_within(path: Path, roots: list[Path]) -> bool:
    """Whether the (already resolved) ``path`` lies in one of the (resolved) ``roots``."""
    return any(path.is_relative_to(r) for r in roots)
