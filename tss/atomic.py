"""Atomic file writes: a reader never sees half a file, and a killed run leaves no partial output."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path`` in one
    step (``os.replace``), when it fails it is removed. The temporary name keeps the extension,
    so nibabel and numpy write the right format (``.nii.gz``, ``.npz``, ``.npy``)."""
    path = Path(path)
    tmp = path.with_name(f".{os.getpid()}.tmp.{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
