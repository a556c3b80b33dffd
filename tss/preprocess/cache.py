"""The preprocessing cache: where preprocessing writes and every later step reads.

``<root>/patients/<id>.npz`` and ``<id>.json`` (one registered, skull-stripped patient and its
metadata), ``<root>/failures.csv`` (who failed, at which step, why) and, once assembled,
``<root>/cohort/hemispheres.npy`` with ``index.csv`` and ``cohort.json`` (the normalisation's
reference, landmarks and key). :class:`PreprocessCache` is the only code that spells that layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tss import paths


@dataclass(frozen=True)
class PreprocessCache:
    """One processed cohort under ``root`` (e.g. ``results/<profile>/cache/preprocess``)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # per patient
    @property
    def patients_dir(self) -> Path:
        return self.root / "patients"

    def patient_file(self, pid: str, suffix: str) -> Path:
        """``patients/<pid><suffix>``; ValueError for an unsafe id or a path leaving that folder."""
        return paths.id_path(self.patients_dir, pid, suffix)

    def has_patient(self, pid: str) -> bool:
        """Whether both of the patient's files are here (a finished patient)."""
        return self.patient_file(pid, ".npz").exists() and self.patient_file(pid, ".json").exists()

    def patient_ids(self) -> list[str]:
        """Every processed patient's id, sorted."""
        return sorted(p.stem for p in self.patients_dir.glob("*.npz"))

    def patient_meta(self, pid: str) -> dict:
        return json.loads(self.patient_file(pid, ".json").read_text())

    def load_patient(self, pid: str) -> dict:
        """One patient's arrays (volume float16 (3, 224, 224, 26) in RAS order, brain, lesion) and ``meta``."""
        with np.load(self.patient_file(pid, ".npz")) as z:
            out = {k: z[k] for k in z.files}
        out["meta"] = self.patient_meta(pid)
        return out

    @property
    def failures_csv(self) -> Path:
        return self.root / "failures.csv"

    # the assembled cohort
    @property
    def cohort_dir(self) -> Path:
        return self.root / "cohort"

    @property
    def hemispheres_npy(self) -> Path:
        return self.cohort_dir / "hemispheres.npy"

    @property
    def index_csv(self) -> Path:
        return self.cohort_dir / "index.csv"

    @property
    def cohort_json(self) -> Path:
        return self.cohort_dir / "cohort.json"

    def assembled(self) -> bool:
        """Whether the hemisphere array and its index are here."""
        return self.hemispheres_npy.exists() and self.index_csv.exists()

    def cohort_meta(self) -> dict:
        """``cohort.json``: the assembly's key, reference patient, intensity landmarks and channels."""
        return json.loads(self.cohort_json.read_text())

    def load_hemispheres(self, mmap: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
        """The assembled cohort: (array (n_hemispheres, 3, 26, 224, 112) float16, index table)."""
        arr = np.load(self.hemispheres_npy, mmap_mode="r" if mmap else None)
        return arr, pd.read_csv(self.index_csv)
