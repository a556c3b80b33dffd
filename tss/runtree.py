"""The run tree: where training writes each run and where every later step reads it.

One profile's runs live in ``results/<profile>/runs/seed<k>/<experiment>/``: ``summary.json`` (the
run finished), ``skipped.json`` (it could not start, with why), ``config.json``, ``epochs.csv``,
``predictions.csv`` (per hemisphere), ``patients.csv`` (per patient), and ``best.pt`` / ``last.pt``
(checkpoints, never committed). :class:`RunTree` is the only code that spells that layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SEED_PREFIX = "seed"


def _seed_of(seed_dir: Path) -> int:
    return int(seed_dir.name.removeprefix(SEED_PREFIX))


@dataclass(frozen=True)
class RunTree:
    """The runs of one profile under ``root`` (``results/<profile>/runs``)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def seed_dir(self, seed: int) -> Path:
        """The folder of one seed's runs (``run_grid`` writes each experiment under it)."""
        return self.root / f"{SEED_PREFIX}{seed}"

    def run_dir(self, experiment: str, seed: int) -> Path:
        return self.seed_dir(seed) / experiment

    def _files(self, name: str, experiment: str = "*") -> list[Path]:
        return sorted(self.root.glob(f"{SEED_PREFIX}*/{experiment}/{name}"))

    def seeds(self, experiment: str) -> list[int]:
        """The seeds of ``experiment`` that finished, ascending."""
        return sorted(_seed_of(f.parent.parent) for f in self._files("summary.json", experiment))

    def summaries(self, experiment: str = "*") -> list[Path]:
        """``summary.json`` of every finished run (of one experiment, or all), sorted by path."""
        return self._files("summary.json", experiment)

    def skipped(self, experiment: str = "*") -> list[Path]:
        """``skipped.json`` of every run that could not start."""
        return self._files("skipped.json", experiment)

    def has_runs(self) -> bool:
        """Whether any run finished here."""
        return any(self.root.glob(f"{SEED_PREFIX}*/*/summary.json"))

    def epoch_logs(self, experiment: str) -> list[tuple[int, Path]]:
        """``(seed, epochs.csv)`` of every seed of ``experiment`` that has a log (finished or not)."""
        return [(_seed_of(f.parent.parent), f) for f in self._files("epochs.csv", experiment)]

    def checkpoint(self, experiment: str, seed: int | None = None) -> Path | None:
        """``best.pt`` of one seed (default: the first finished one), or None when it is not here
        (a clone holds the small files of a run, never its weights)."""
        s = self.seeds(experiment)
        if seed is None and not s:
            return None
        f = self.run_dir(experiment, s[0] if seed is None else seed) / "best.pt"
        return f if f.exists() else None
