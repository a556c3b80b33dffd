"""Where the project's folders are, from any working directory.

The notebooks, the command line and the tests all name the same folders: the cohort
``data/synthetic-<profile>``, and under ``results/<profile>/`` the preprocessing caches, the runs,
the data-size study and one folder of result files per chapter. :class:`ProfilePaths` is the one
place that spells them, from the project root that :func:`root` finds, so that a notebook runs the
same from ``notebooks/`` (``make book``), from the repository root, or from Colab's ``/content``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tss import profiles

ENV_ROOT = "TSS_ROOT"


def _is_root(folder: Path) -> bool:
    return (folder / "pyproject.toml").is_file() and (folder / "tss" / "__init__.py").is_file()


def root() -> Path:
    """The project root: ``$TSS_ROOT`` when set; else the checkout this package was imported from
    (a clone, or an editable install); else the nearest folder at or above the working directory that
    holds the project. Raises FileNotFoundError saying what to set when none does (a wheel installed
    into site-packages has no ``results/`` beside it)."""
    if env := os.environ.get(ENV_ROOT):
        folder = Path(env).expanduser().resolve()
        if not _is_root(folder):
            raise FileNotFoundError(f"{ENV_ROOT}={env} is not this project's folder (no pyproject.toml and tss/ there)")
        return folder
    here = Path(__file__).resolve().parents[1]
    if _is_root(here):
        return here
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if _is_root(folder):
            return folder
    raise FileNotFoundError(f"cannot find the project folder from {cwd}: clone the repository and work inside "
                            f"it, or set {ENV_ROOT} to it")


def shown(path: str | Path) -> str:
    """``path`` as a reader should see it: relative to the project root when inside it (a page of
    the book must not reveal the folder it was built in), else as given."""
    p = Path(path)
    try:
        return p.resolve().relative_to(root()).as_posix()
    except (ValueError, FileNotFoundError):
        return str(p)


@dataclass(frozen=True)
class ProfilePaths:
    """One profile's folders under the project root."""

    profile: str
    base: Path
    results_base: Path | None = None  # a results folder elsewhere (a test's); None: ``base / "results"``

    @property
    def results_root(self) -> Path:
        """``results/``: every profile's results (the book shows the largest profile that has runs)."""
        return self.results_base if self.results_base is not None else self.base / "results"

    @property
    def results(self) -> Path:
        """``results/<profile>/``."""
        return self.results_root / self.profile

    @property
    def cohort(self) -> Path:
        """The synthetic cohort ``data/synthetic-<profile>/`` (a real cohort is named explicitly instead)."""
        return self.base / "data" / f"synthetic-{self.profile}"

    @property
    def cache(self) -> Path:
        """The processed cohort: ``results/<profile>/cache/preprocess``."""
        return self.results / "cache" / "preprocess"

    @property
    def runs(self) -> Path:
        """The training runs: ``results/<profile>/runs`` (a :class:`tss.runtree.RunTree`)."""
        return self.results / "runs"

    @property
    def lee(self) -> Path:
        """The Lee et al. baseline's files: ``results/<profile>/baselines/lee``."""
        return self.results / "baselines" / "lee"

    @property
    def cohort_tables(self) -> Path:
        """The cohort's committed small tables (manifest, latent truth): ``results/<profile>/cohort``."""
        return self.results / "cohort"

    @property
    def outputs(self) -> Path:
        """The tables and figures the Results pages derive: ``results/<profile>/results``."""
        return self.results / "results"

    @property
    def study(self) -> Path:
        """The data-size study: ``results/<profile>/study``."""
        return self.results / "study"

    @property
    def clock(self) -> Path:
        """The TSS phases under other training recipes: ``results/<profile>/clock`` (a RunTree)."""
        return self.results / "clock"

    @property
    def planted(self) -> Path:
        """The TSS phases on the planted cohort (the positive control): ``results/planted`` (a RunTree;
        profile-independent, like ``bench``)."""
        return self.results_root / "planted"

    @property
    def planted_small(self) -> Path:
        """The planted cohort at the lesion size of the models' own input (:data:`tss.train.clock.PLANTED_SMALL`):
        ``results/planted-small`` (a RunTree; profile-independent)."""
        return self.results_root / "planted-small"

    @property
    def audit(self) -> Path:
        """Where the clock's signal goes along the data flow: ``results/<profile>/audit``."""
        return self.results / "audit"

    @property
    def bench(self) -> Path:
        """``results/bench``: what ``make bench`` measured (profile-independent)."""
        return self.results_root / "bench"

    @property
    def manifests(self) -> Path:
        """``data_manifest/``: committed manifests of real data (the ISLES'22 sample)."""
        return self.base / "data_manifest"

    def variant_cohort(self, variant: str) -> Path:
        """The synthetic cohort of a named variant (:data:`tss.synth.params.VARIANTS`, which
        :func:`tss.synth.generate` checks): the default variant's is :attr:`cohort`; another's is
        ``data/synthetic-<profile>-<variant>/``."""
        return self.cohort if variant == profiles.DEFAULT_VARIANT else self.base / "data" / f"synthetic-{self.profile}-{variant}"

    def variant(self, variant: str) -> Path:
        """A cohort variant's small committed tables and its calibration against patients:
        ``results/<profile>/variants/<variant>/``."""
        return self.results / "variants" / variant

    def stage(self, name: str) -> Path:
        """A chapter's result files: ``results/<profile>/<name>`` (cohort, preprocess, models, lee, results)."""
        return self.results / name


def paths(profile: str, base: str | Path | None = None) -> ProfilePaths:
    """The folders of ``profile`` under ``base`` (default: :func:`root`)."""
    profiles.check(profile)
    return ProfilePaths(profile, Path(base).resolve() if base is not None else root())


def under(results_root: str | Path, profile: str) -> ProfilePaths:
    """The folders of ``profile`` for a results folder given by its path (the project's
    ``results/``, or a test's under any name); the cohort is looked for beside it, in ``data/``."""
    return ProfilePaths(profile, Path(results_root).parent, Path(results_root))


# a finished training run of a profile's grid, under results/<profile>/
FINISHED_RUNS = "runs/seed*/*/summary.json"


def profiles_with(patterns: str | tuple[str, ...], results_root: str | Path,
                  among: tuple[str, ...] = profiles.BY_SIZE) -> list[str]:
    """The one rule for which profiles a page shows: those of ``among`` (by default the largest first:
    full, lowres, quick) with a file matching one of the globs ``patterns`` under
    ``<results_root>/<profile>/``, in that order. A page about one profile shows the first; a page
    that compares profiles shows each of them, in this order."""
    patterns = (patterns,) if isinstance(patterns, str) else patterns
    return [p for p in among if any(any(under(results_root, p).results.glob(g)) for g in patterns)]


def bench_dir(base: str | Path | None = None) -> Path:
    """``results/bench`` of the project (or of ``base``): what ``make bench`` measured, for every
    profile (:attr:`ProfilePaths.bench`)."""
    return paths(profiles.PROFILES[0], base).bench


def largest_with(pattern: str, base: str | Path | None = None) -> str | None:
    """The largest profile with a file matching the glob ``pattern`` under the project's (or
    ``base``'s) ``results/<profile>/`` (:func:`profiles_with`), or None: which profile a page shows."""
    found = profiles_with(pattern, paths(profiles.BY_SIZE[0], base).results_root)
    return found[0] if found else None
