"""Atomic file writes (a reader never sees half a file, and a killed run leaves no partial output) and
the content key of every cached step."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
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


@contextmanager
def exclusive(path: str | Path, waiting: str = "") -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the ``with`` block; a
    second process blocks until the first leaves it, printing ``waiting`` first. The operating
    system releases the lock when its holder dies. POSIX ``flock`` (the standard library's; no
    library adds more here); elsewhere, or on a filesystem without it, a warning and no lock."""
    try:
        import fcntl
    except ImportError:  # Windows: one process per run folder is up to the user
        yield
        return
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(waiting, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as e:  # a filesystem without flock (NFS mounted nolock, some FUSE mounts)
            warnings.warn(f"{path}: no lock on this filesystem ({e}); keep to one process per run folder",
                          stacklevel=3)
        yield


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def content_key(content) -> str:
    """The key of a cached step: 16 hex digits of the sha256 of ``content``, a string as it is, any
    other value as its canonical JSON (sorted keys, ``str`` for what JSON lacks). Every cache in the
    project (cohort patients, processed patients and cohort, Lee features, pooled hemispheres, runs)
    is keyed by it; a stored output whose key differs is recomputed."""
    text = content if isinstance(content, str) else json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(marker: str | Path, key: str, outputs=(), field: str = "key") -> dict | None:
    """A cached step's stored record, if it is current: the JSON ``marker`` (written last by the step,
    so its presence marks completion) when its ``field`` equals ``key`` and every file of ``outputs``
    exists; else None, and the step runs again. Every cached step (a cohort patient, a processed
    patient, the processed cohort, the Lee baseline, a training run) asks this before it computes."""
    marker = Path(marker)
    if not marker.exists() or not all(Path(p).exists() for p in outputs):
        return None
    record = json.loads(marker.read_text())
    return record if record.get(field) == key else None
