"""Cohort manifest: schema, reading/writing, validation and typed loading.

A cohort is a folder (BIDS-like layout) holding ``manifest.csv``: one row per patient with the paths
of its b1000, b0 and FLAIR images (optionally a lesion mask), onset-to-MRI minutes, stroke side,
split, three readers' DWI-FLAIR mismatch calls and demographics. The schema is :data:`COLUMNS`; the
human-readable version is ``data_manifest/README.md`` (its table is :func:`schema_markdown`).

Synthetic and real cohorts go through the same code::

    findings = validate("data/my-cohort")        # list of Finding, never raises for bad content
    print(format_findings(findings))
    cohort = load_cohort("data/my-cohort")       # typed table; raises ManifestError when fatal
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tss.atomic import atomic_path

__all__ = ["MANIFEST_NAME", "COLUMNS", "Field", "Finding", "ManifestError", "Cohort", "SPLITS",
           "STROKE_SIDES", "SEXES", "resolve_manifest_path", "read_manifest", "write_manifest",
           "validate", "format_findings", "load_cohort", "schema_markdown"]

MANIFEST_NAME = "manifest.csv"
SPLITS = ("train", "val", "test")
STROKE_SIDES = ("left", "right", "both", "none")
SEXES = ("F", "M")
PROGRESS_MIN_FILES = 20  # fewer files than this: no progress bar


@dataclass(frozen=True)
class Field:
    """One manifest column. ``kind``: id, path, number, integer, choice or binary."""

    name: str
    required: bool
    kind: str
    description: str


COLUMNS: tuple[Field, ...] = (
    Field("patient_id", True, "id", "Unique patient identifier (one row per patient)."),
    Field("b1000", True, "path", "DWI b=1000 s/mm² image (NIfTI, 3D or 4D)."),
    Field("b0", True, "path", "DWI b=0 image (NIfTI, 3D or 4D), same grid as b1000. May be empty when "
          "`adc` is given: b0 is then derived as b1000 * exp(b * ADC)."),
    Field("flair", True, "path", "FLAIR image (NIfTI, 3D or 4D), native FLAIR grid."),
    Field("lesion_mask", False, "path", "Lesion mask on the DWI grid (NIfTI); empty = unknown."),
    Field("onset_to_mri_min", True, "number",
          "Minutes from stroke onset to MRI (the time since stroke onset, TSS); number >= 0."),
    Field("stroke_side", True, "choice", "left, right, both or none (case-insensitive; stored lowercase)."),
    Field("split", True, "choice", "train, val or test (case-insensitive; stored lowercase)."),
    Field("reader1", False, "binary",
          "Reader 1: 1 = DWI-FLAIR mismatch (predicts TSS < 4.5 h), 0 = no mismatch, empty = not read."),
    Field("reader2", False, "binary", "Reader 2, coded as reader1."),
    Field("reader3", False, "binary", "Reader 3, coded as reader1."),
    Field("age", False, "number", "Age in years, 0-120."),
    Field("sex", False, "choice", "F or M (case-insensitive; stored uppercase)."),
    Field("nihss", False, "integer", "NIH Stroke Scale on admission, integer 0-42."),
    Field("adc", False, "path", "ADC map in 1e-3 mm²/s on the DWI grid (NIfTI); used only to derive a "
          "missing b0 (b from the b1000 JSON sidecar's DiffusionBValue)."),
)
_BY_NAME = {f.name: f for f in COLUMNS}
_NAMES = tuple(f.name for f in COLUMNS)
_PATHS = tuple(f.name for f in COLUMNS if f.kind == "path")
_RANGES = {"onset_to_mri_min": (0.0, math.inf), "age": (0.0, 120.0), "nihss": (0.0, 42.0)}
_CHOICES = {"stroke_side": STROKE_SIDES, "split": SPLITS, "sex": SEXES}


def schema_markdown() -> str:
    """The schema as a Markdown table (``data_manifest/README.md`` contains it verbatim)."""
    lines = ["| column | required | kind | description |", "|---|---|---|---|"]
    lines += [f"| `{f.name}` | {'required' if f.required else 'optional'} | {f.kind} | {f.description} |"
              for f in COLUMNS]
    return "\n".join(lines)


@dataclass(frozen=True)
class Finding:
    """One problem in a manifest. Cohort-level problems use ``patient_id == "-"``."""

    patient_id: str
    field: str
    problem: str
    fatal: bool = True

    def __str__(self) -> str:
        level = "error" if self.fatal else "warning"
        return f"[{level}] patient {self.patient_id}, field {self.field}: {self.problem}"


class ManifestError(ValueError):
    """A manifest with fatal findings; ``.findings`` holds all of them (fatal and warnings)."""

    def __init__(self, findings: list[Finding], source: str | Path | None = None):
        self.findings = list(findings)
        fatal = [f for f in self.findings if f.fatal]
        where = f" {source}" if source is not None else ""
        super().__init__(f"manifest{where} has {len(fatal)} fatal finding(s):\n"
                         + "\n".join(str(f) for f in fatal))


def resolve_manifest_path(cohort: str | Path) -> Path:
    """A cohort folder -> ``folder/manifest.csv``; a ``.csv`` file -> itself."""
    p = Path(cohort).expanduser()
    if p.is_dir():
        m = p / MANIFEST_NAME
        if not m.is_file():
            raise FileNotFoundError(f"cohort folder {p} has no {MANIFEST_NAME}")
        return m
    if p.suffix.lower() == ".csv" and p.is_file():
        return p
    raise FileNotFoundError(f"{p} is neither a cohort folder holding {MANIFEST_NAME} nor an existing .csv file")


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV as strings (empty cell = ""), whitespace stripped, column names too."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda s: s.astype(str).str.strip()).reset_index(drop=True)


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in _NAMES if c in df.columns] + [c for c in df.columns if c not in _BY_NAME]]


def _cell(v) -> object:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return ""
    return v.as_posix() if isinstance(v, Path) else v


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Write a manifest atomically (temp file + ``os.replace``): schema columns first, then extras.

    Missing values become empty cells, ``Path`` objects POSIX strings, and float columns whose
    values are all whole numbers (readers, NIHSS) are written without ``.0``.
    """
    path = Path(path)
    out = _ordered(df).copy()
    for c in out.columns:
        s = out[c]
        if pd.api.types.is_float_dtype(s):
            finite = s.dropna()
            if len(finite) and np.isfinite(finite).all() and (finite == np.round(finite)).all():
                out[c] = s.astype("Int64")
        else:
            out[c] = s.map(_cell).astype(object)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        out.to_csv(fh, index=False, na_rep="")


# --- validation -------------------------------------------------------------------------------


def _number(raw: str) -> float | str:
    """``raw`` as a finite float, or a description of why it is not one."""
    if raw == "":
        return "missing value"
    try:
        x = float(raw)
    except ValueError:
        return f"not a number: {raw!r}"
    return x if math.isfinite(x) else f"not a finite number: {raw!r}"


def _check_cell(name: str, raw: str) -> str | None:
    """Problem with one non-path cell, or None."""
    f = _BY_NAME[name]
    if raw == "" and not f.required:
        return None
    if f.kind in ("number", "integer"):
        x = _number(raw)
        if isinstance(x, str):
            return x
        lo, hi = _RANGES[name]
        if x < lo:
            return f"negative value {raw}" if lo == 0 and x < 0 else f"value {raw} below {lo:g}"
        if x > hi:
            return f"value {raw} above {hi:g}"
        if f.kind == "integer" and x != round(x):
            return f"not an integer: {raw!r}"
    elif f.kind == "choice":
        if raw == "":
            return "missing value"
        allowed = _CHOICES[name]
        if raw.lower() not in {a.lower() for a in allowed}:
            what = {"stroke_side": "unknown stroke side", "split": "unknown split"}.get(name, "bad value")
            return f"{what} {raw!r} (expected one of {', '.join(allowed)})"
    elif f.kind == "binary":
        x = _number(raw)
        if isinstance(x, str) or x not in (0.0, 1.0):
            return f"bad reader value {raw!r} (expected 1 = mismatch, 0 = no mismatch, or empty)"
    return None


def _abs_path(root: Path, raw: str) -> Path:
    return Path(os.path.normpath(root.absolute() / Path(raw).expanduser()))


def _probe(path: Path, check_data: bool) -> tuple[str | None, tuple[int, ...] | None, list[str]]:
    """Open one image: (fatal problem or None, spatial shape, warnings)."""
    import nibabel as nib

    if not path.exists():
        return f"file not found: {path}", None, []
    if not path.is_file():
        return f"not a file: {path}", None, []
    try:
        img = nib.load(str(path))
    except Exception as e:  # noqa: BLE001 - any failure means unreadable
        return f"cannot load {path.name} with nibabel: {type(e).__name__}: {e}", None, []
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        return f"not a NIfTI image ({type(img).__name__}): {path.name}", None, []
    shape = tuple(int(n) for n in img.shape)
    if len(shape) not in (3, 4):
        return f"image is {len(shape)}D {shape}, expected 3D or 4D: {path.name}", None, []
    if min(shape) == 0:
        return f"empty image {shape}: {path.name}", None, []
    warnings = []
    if check_data:
        try:
            data = np.asanyarray(img.dataobj)
        except Exception as e:  # noqa: BLE001 - truncated gzip, short file, ...
            return f"cannot read image data of {path.name} (truncated or corrupt?): {type(e).__name__}: {e}", None, []
        if data.dtype.kind in "fc" and not np.isfinite(data).all():
            warnings.append(f"image contains NaN or infinite voxels: {path.name}")
    return None, shape[:3], warnings


def _probe_all(paths: list[Path], check_data: bool) -> dict[Path, tuple]:
    """Probe each distinct file once, in a thread pool (nibabel/zlib release the GIL)."""
    from tqdm import tqdm

    unique = list(dict.fromkeys(paths))
    if not unique:
        return {}
    bar = tqdm(total=len(unique), desc="checking images", unit="file",
               disable=not check_data or len(unique) < PROGRESS_MIN_FILES)
    out = {}
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) + 4)) as pool:
        for p, res in zip(unique, pool.map(lambda q: _probe(q, check_data), unique)):
            out[p] = res
            bar.update()
    bar.close()
    return out


def validate(cohort: str | Path, check_data: bool = True) -> list[Finding]:
    """Check a cohort's manifest and files; return findings sorted by patient then field.

    Never raises for bad content (an unreadable or missing manifest is a fatal finding with
    patient "-", field "manifest"). With ``check_data`` every image is read fully (a truncated
    ``.nii.gz`` is caught); without it only headers are read.
    """
    try:
        mpath = resolve_manifest_path(cohort)
        df = read_manifest(mpath)
    except (OSError, ValueError, UnicodeError, pd.errors.ParserError) as e:
        return [Finding("-", "manifest", f"cannot read manifest: {e}")]
    root = mpath.parent
    findings: list[Finding] = []
    add = lambda pid, field, problem, fatal=True: findings.append(Finding(pid, field, problem, fatal))  # noqa: E731

    for f in COLUMNS:
        if f.required and f.name not in df.columns:
            add("-", f.name, "missing required column")
    if df.empty:
        add("-", "manifest", "manifest has no patient rows")

    has_id = "patient_id" in df.columns
    labels = [(df.at[i, "patient_id"] if has_id else "") or f"row {i + 1}" for i in range(len(df))]
    if has_id:
        for i in np.flatnonzero(df["patient_id"].eq("").to_numpy()):
            add(labels[i], "patient_id", f"empty patient_id (data row {i + 1})")
        ids = df["patient_id"]
        splits = df["split"].str.lower() if "split" in df.columns else pd.Series([""] * len(df))
        for pid, rows in df[ids.ne("")].groupby(ids[ids.ne("")], sort=False).groups.items():
            if len(rows) < 2:
                continue
            s = splits.loc[rows]
            for split, n in s.value_counts().items():
                if n > 1:
                    where = f"split {split!r}" if split else "no split"
                    add(pid, "patient_id", f"duplicate id: {n} rows in {where}")
            if s[s.ne("")].nunique() > 1:
                add(pid, "split", f"patient in more than one split: {', '.join(sorted(s[s.ne('')].unique()))}")

    for name in _NAMES:
        if name in df.columns and _BY_NAME[name].kind not in ("id", "path"):
            for i, raw in enumerate(df[name]):
                if (problem := _check_cell(name, raw)) is not None:
                    add(labels[i], name, problem)

    if "split" in df.columns and not df.empty:
        present = set(df["split"].str.lower())
        for s in SPLITS:
            if s not in present:
                add("-", "split", f"empty split: no patients in {s!r}")

    # files: path values, then each distinct file opened once
    todo: list[tuple[int, str, Path]] = []
    for name in _PATHS:
        if name not in df.columns:
            continue
        for i, raw in enumerate(df[name]):
            if raw == "":
                derivable = name == "b0" and "adc" in df.columns and df.at[i, "adc"] != ""
                if _BY_NAME[name].required and not derivable:
                    add(labels[i], name, "missing path" + (" (give b0, or adc to derive it)" if name == "b0" else ""))
            else:
                todo.append((i, name, _abs_path(root, raw)))
    probed = _probe_all([p for _, _, p in todo], check_data)
    shapes: dict[tuple[int, str], tuple] = {}
    for i, name, p in todo:
        problem, shape, warns = probed[p]
        if problem:
            add(labels[i], name, problem)
        else:
            shapes[i, name] = shape
        for w in warns:
            add(labels[i], name, w, False)
    for i in range(len(df)):
        ref = shapes.get((i, "b1000"))
        for name in ("b0", "lesion_mask"):
            other = shapes.get((i, name))
            if ref is not None and other is not None and other != ref:
                add(labels[i], name, f"grid {other} differs from b1000 grid {ref}", False)
    users: dict[Path, set[tuple[str, str]]] = {}
    for i, name, p in todo:
        users.setdefault(p, set()).add((labels[i], name))
    for i, name, p in todo:
        if others := sorted(users[p] - {(labels[i], name)}):
            said = ", ".join(f"{pid} {field}" for pid, field in others)
            add(labels[i], name, f"same file as {said}: {p.name}", False)

    return sorted(set(findings), key=lambda f: (f.patient_id != "-", f.patient_id, f.field, not f.fatal, f.problem))


def format_findings(findings: list[Finding]) -> str:
    """A readable report: one line per finding plus a summary of errors and warnings."""
    if not findings:
        return "manifest OK: no findings"
    n_err = sum(f.fatal for f in findings)
    n_warn = len(findings) - n_err
    plural = lambda n, w: f"{n} {w}{'' if n == 1 else 's'}"  # noqa: E731
    head = "manifest has errors" if n_err else "manifest OK (warnings only)"
    lines = [str(f) for f in findings]
    lines.append(f"{head}: {plural(n_err, 'error')}, {plural(n_warn, 'warning')}")
    return "\n".join(lines)


# --- typed cohort -----------------------------------------------------------------------------


@dataclass
class Cohort:
    """A loaded cohort: ``root`` folder and typed ``table`` (one row per patient).

    Types: onset_to_mri_min, age, nihss, reader1-3 float (NaN when missing); b1000, b0, flair,
    lesion_mask absolute ``Path`` or None; stroke_side, split lowercase str; sex "F"/"M" or None;
    extra columns kept as strings. Optional schema columns absent from the CSV are added empty.
    """

    root: Path
    table: pd.DataFrame

    def split(self, name: str) -> pd.DataFrame:
        """Rows of one split (train, val or test), index reset."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.table[self.table["split"] == name].reset_index(drop=True)

    def ids(self, split: str | None = None) -> list[str]:
        """Patient ids, of one split or of all."""
        t = self.table if split is None else self.split(split)
        return [str(x) for x in t["patient_id"]]

    def __len__(self) -> int:
        return len(self.table)


def _typed(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for f in COLUMNS:
        raw = df[f.name] if f.name in df.columns else pd.Series([""] * len(df), index=df.index, dtype=str)
        if f.kind == "path":
            out[f.name] = pd.Series([_abs_path(root, r) if r else None for r in raw], index=df.index, dtype=object)
        elif f.kind in ("number", "integer", "binary"):
            out[f.name] = pd.to_numeric(raw, errors="coerce").astype(float)
        elif f.name == "sex":
            out[f.name] = pd.Series([r.upper() or None for r in raw], index=df.index, dtype=object)
        elif f.kind == "choice":
            out[f.name] = raw.str.lower()
        else:
            out[f.name] = raw
    for c in df.columns:
        if c not in _BY_NAME:
            out[c] = df[c]
    return out.reset_index(drop=True)


def load_cohort(cohort: str | Path, check: bool = True, check_data: bool = False) -> Cohort:
    """Load a cohort folder (or manifest CSV) into a typed :class:`Cohort`.

    With ``check`` the manifest is validated first (headers only unless ``check_data``) and
    :class:`ManifestError` is raised on any fatal finding. Without it, unparsable values become NaN.
    """
    mpath = resolve_manifest_path(cohort)
    if check:
        findings = validate(mpath, check_data=check_data)
        if any(f.fatal for f in findings):
            raise ManifestError(findings, mpath)
    return Cohort(root=mpath.parent.absolute(), table=_typed(read_manifest(mpath), mpath.parent))
