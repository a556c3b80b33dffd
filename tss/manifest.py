"""Cohort manifest: schema, reading/writing, validation and typed loading.

A cohort is a folder (BIDS-like layout) holding ``manifest.csv``: one row per patient with the paths
of its b1000, b0 and FLAIR images (optionally a lesion mask), onset-to-MRI minutes, stroke side,
split, three readers' DWI-FLAIR mismatch calls and demographics. The schema is :data:`COLUMNS`; the
human-readable version is ``data_manifest/README.md`` (its table is :func:`schema_markdown`).

Synthetic and real cohorts go through the same code::

    findings = validate("data/my-cohort")        # list of Finding, never raises for bad content
    print(format_findings(findings))
    cohort = load_cohort("data/my-cohort")       # typed table; raises ManifestError when fatal

A manifest is untrusted input: patient ids become file names and path cells name files we read.
:func:`safety_findings` holds the cheap checks that keep both inside the folders the user named
(safe, unique ids; path cells inside the data roots: the manifest's folder plus ``data_roots``);
:func:`require_safe` is what the pipeline calls before any work starts.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tss import paths
from tss.atomic import atomic_path

__all__ = ["MANIFEST_NAME", "COLUMNS", "Field", "Finding", "ManifestError", "CohortTable", "SPLITS",
           "STROKE_SIDES", "SEXES", "resolve_manifest_path", "read_manifest", "write_manifest",
           "validate", "safety_findings", "require_safe", "format_findings", "load_cohort", "schema_markdown"]

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

    def __init__(self, findings: list[Finding], source: str | Path | None = None, action: str | None = None):
        self.findings = list(findings)
        fatal = [f for f in self.findings if f.fatal]
        where = f" {source}" if source is not None else ""
        head = f"refusing to start {action}: " if action else ""
        super().__init__(f"{head}manifest{where} has {len(fatal)} fatal finding(s):\n"
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


def _decode(data: bytes) -> str:
    """The manifest's bytes as text: UTF-8 (a byte-order mark allowed), else ValueError saying what
    the file looks like and how to re-save it. Nothing is decoded by guessing."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError("the file is UTF-16 (a spreadsheet's 'Unicode text' export?): "
                         "save it as CSV UTF-8, comma-separated")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        try:
            data.decode("cp1252")
            guess = "looks like Windows-1252/Latin-1"
        except UnicodeDecodeError:
            guess = "not Windows-1252 either"
        raise ValueError(f"not UTF-8 (byte 0x{data[e.start]:02x} on line {line}; {guess}): re-save it as UTF-8 "
                         "(spreadsheets: 'CSV UTF-8')") from None
    if "\x00" in text:
        raise ValueError("the file holds NUL bytes (UTF-16 without a byte-order mark?): re-save it as UTF-8 CSV")
    return text


def _delimiter_problem(header: str) -> str | None:
    """A header that csv.Sniffer reads as ``;``-, tab- or ``|``-separated (spreadsheets in locales
    with a decimal comma export ``;``): what to do about it. A comma anywhere in it: None."""
    if "," in header:
        return None
    try:
        d = csv.Sniffer().sniff(header, delimiters=";\t|").delimiter
    except csv.Error:  # one column: the missing-column findings say the rest
        return None
    name = "tab" if d == "\t" else d
    return (f"the header looks {name}-separated, not comma-separated: export the table as "
            "comma-separated CSV (spreadsheets: 'CSV UTF-8 (comma delimited)')")


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV as strings (empty cell = ""), whitespace stripped, column names too.

    Raises ValueError with what to do when the file is not UTF-8, not comma-separated, empty,
    or names one column twice (pandas would silently rename the second ``age.1``).
    """
    text = _decode(Path(path).read_bytes())
    if not text.strip():
        raise ValueError("the file is empty")
    header = next(line for line in text.splitlines() if line.strip())  # pandas skips blank lines too
    if (problem := _delimiter_problem(header)) is not None:
        raise ValueError(problem)
    names = [c.strip() for c in next(csv.reader([header]))]
    if twice := sorted({c for c in names if c and names.count(c) > 1}):
        raise ValueError(f"column(s) {', '.join(map(repr, twice))} appear more than once in the header")
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
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


def _number_hint(raw: str) -> str:
    """What a spreadsheet probably did to a value that is not a number ("" when nothing obvious)."""
    if raw.startswith("#"):
        return " (a spreadsheet error value: fix the formula or leave the cell empty)"
    if re.fullmatch(r"[-+]?[\d,]*\d,\d+(\.\d*)?", raw):
        return " (a comma in a number: write plain digits with '.' for decimals, e.g. 1234 or 90.5)"
    return ""


def _number(raw: str) -> float | str:
    """``raw`` as a finite float, or a description of why it is not one. Scientific notation
    (``3.0E+2``, as spreadsheets write it) is a number; thousands separators and decimal commas
    are not."""
    if raw == "":
        return "missing value"
    try:
        x = float(raw)
    except ValueError:
        return f"not a number: {raw!r}{_number_hint(raw)}"
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


def _expand(raw: str) -> Path:
    """``raw`` with ``~`` expanded; left as written when it cannot be (``~nosuchuser``)."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:
        return Path(raw)


def _abs_path(root: Path, raw: str) -> Path:
    """A path cell as the absolute path that is opened (relative to the manifest's folder)."""
    return Path(os.path.normpath(root.absolute() / _expand(raw)))


def _is_header(pid: str) -> bool:
    return pid.casefold() == "patient_id"


def _usable_id(pid: str) -> bool:
    """An id that can name its row in findings and files: present, safe, not a repeated header."""
    return pid != "" and not _is_header(pid) and paths.id_problem(pid) is None


def _labels(df: pd.DataFrame) -> list[str]:
    """How findings name each row: its id when that is usable, else ``row N`` (N = data row)."""
    ids = df["patient_id"] if "patient_id" in df.columns else [""] * len(df)
    return [pid if _usable_id(pid) else f"row {i + 1}" for i, pid in enumerate(ids)]


def _id_hint(pid: str) -> str:
    if re.fullmatch(r"[-+]?\d+(\.\d+)?[eE][-+]?\d+", pid):
        return " (a spreadsheet turned it into a number: format the column as text and re-export)"
    return ""


def _id_findings(df: pd.DataFrame, labels: list[str]) -> list[Finding]:
    """Patient ids: present, not a repeated header, safe as a file name (:func:`tss.paths.id_problem`),
    unique within a split and across splits, and unique ignoring case (ids that differ only in
    case name the same file on macOS and Windows)."""
    if "patient_id" not in df.columns:
        return [Finding("-", "patient_id", "missing required column")]
    out = []
    for i, pid in enumerate(df["patient_id"]):
        if pid == "":
            out.append(Finding(labels[i], "patient_id", f"empty patient_id (data row {i + 1})"))
        elif _is_header(pid):
            out.append(Finding(labels[i], "patient_id", f"data row {i + 1} repeats the header "
                                                        "(two exports pasted together?): delete it"))
        elif (problem := paths.id_problem(pid)) is not None:
            out.append(Finding(labels[i], "patient_id", f"unsafe patient_id {pid!r}: {problem}{_id_hint(pid)}; "
                                                        f"ids become file names, so each must be {paths.ID_RULE}"))
    safe = df["patient_id"].map(_usable_id).astype(bool)
    ids = df["patient_id"][safe]
    splits = df["split"].str.lower() if "split" in df.columns else pd.Series([""] * len(df), index=df.index)
    for pid, rows in df[safe].groupby(ids, sort=False).groups.items():
        if len(rows) < 2:
            continue
        s = splits.loc[rows]
        for split, n in s.value_counts().items():
            if n > 1:
                where = f"split {split!r}" if split else "no split"
                out.append(Finding(pid, "patient_id", f"duplicate id: {n} rows in {where}"))
        if s[s.ne("")].nunique() > 1:
            both = ", ".join(sorted(s[s.ne("")].unique()))
            out.append(Finding(pid, "split", f"patient in more than one split: {both}"))
    for _, group in ids.groupby(ids.str.casefold(), sort=False):
        spellings = list(dict.fromkeys(group))
        for pid in spellings if len(spellings) > 1 else []:
            others = ", ".join(repr(o) for o in spellings if o != pid)
            out.append(Finding(pid, "patient_id", f"id differs from {others} only in case: their files would "
                                                  "collide on case-insensitive file systems (macOS, Windows)"))
    return out


def _roots(mpath: Path, data_roots) -> tuple[list[Path], list[Finding]]:
    """The data roots, resolved: the manifest's folder, then ``data_roots``."""
    roots, out = [mpath.parent.resolve()], []
    for r in data_roots or ():
        try:
            roots.append(Path(r).expanduser().resolve())
        except (OSError, RuntimeError, ValueError) as e:
            out.append(Finding("-", "data_root", f"cannot resolve data root {str(r)!r}: {e}"))
    return roots, out


def _locate(df: pd.DataFrame, labels: list[str], mpath: Path,
            roots: list[Path]) -> tuple[list[tuple[int, str, Path]], list[Finding]]:
    """Every non-empty path cell as (row, field, absolute path), kept only when the path, resolved
    (symlinks followed), lies inside a data root; the others are fatal findings."""
    where = ", ".join(str(r) for r in roots)
    located, out = [], []
    for name in _PATHS:
        for i, raw in (df[name].items() if name in df.columns else ()):
            if raw == "":
                continue
            if raw.startswith("~") and _expand(raw) == Path(raw):
                out.append(Finding(labels[i], name, f"cannot expand '~' in path {raw!r} (no such user?)"))
                continue
            p = _abs_path(mpath.parent, raw)
            try:
                real = p.resolve()
            except (OSError, RuntimeError, ValueError) as e:  # NUL byte, symlink loop
                out.append(Finding(labels[i], name, f"cannot resolve path {raw!r}: {e}"))
                continue
            if not paths.is_within(real, roots):
                out.append(Finding(labels[i], name, f"path {raw!r} leads outside the data roots ({where}) to {real}: "
                                                    "move the file under one, or name its folder as a data root "
                                                    "(--data-root DIR, data_roots=[...])"))
            else:
                located.append((i, name, p))
    return located, out


def _read(cohort: str | Path) -> tuple[Path, pd.DataFrame]:
    mpath = resolve_manifest_path(cohort)
    return mpath, read_manifest(mpath)


_READ_ERRORS = (OSError, ValueError, UnicodeError, csv.Error)  # pandas' ParserError is a ValueError


def safety_findings(cohort: str | Path, data_roots=(), check_roots: bool = True) -> list[Finding]:
    """The cheap checks that keep every file we write or read inside the folders the user named:
    the manifest reads; patient ids are safe file names and unique (also ignoring case); with
    ``check_roots`` every path cell resolves (symlinks followed) inside the data roots, i.e. the
    manifest's folder or one of ``data_roots``. No image is opened; never raises."""
    try:
        mpath, df = _read(cohort)
    except _READ_ERRORS as e:
        return [Finding("-", "manifest", f"cannot read manifest: {e}")]
    labels = _labels(df)
    out = _id_findings(df, labels)
    if check_roots:
        roots, bad_roots = _roots(mpath, data_roots)
        out += bad_roots + _locate(df, labels, mpath, roots)[1]
    return _sorted(out)


def require_safe(cohort: str | Path, data_roots=(), check_roots: bool = True, action: str = "work") -> Path:
    """Raise :class:`ManifestError` (a ValueError) listing the fatal :func:`safety_findings`, so
    that ``action`` does not start; else return the manifest's path. A missing manifest raises
    FileNotFoundError."""
    mpath = resolve_manifest_path(cohort)
    findings = safety_findings(mpath, data_roots, check_roots)
    if any(f.fatal for f in findings):
        raise ManifestError(findings, mpath, action=action)
    return mpath


@dataclass(frozen=True)
class _Probe:
    """What validation learns from opening one image."""

    problem: str | None = None
    shape: tuple[int, ...] | None = None  # spatial (first three axes)
    warnings: tuple[str, ...] = ()
    volumes: int = 1                      # 4th axis (1 for 3D)
    bvals: tuple[float, ...] | None = None  # from a .bval file beside it, if any


def _raw_header(path: Path, img):
    """The header as stored: nibabel's loader silently sets a zero pixdim to 1 (mm)."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as f:
        return type(img.header).from_fileobj(f, check=False)


def _geometry_problem(path: Path, img) -> tuple[str | None, list[str]]:
    """An affine that cannot place the voxels in space (non-finite, a zero scale, singular) or voxel
    sizes that nibabel would silently replace by 1 mm (a zero or NaN pixdim with no sform)."""
    name = path.name
    aff = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(aff).all():
        return f"unusable geometry: the affine holds NaN or infinite values: {name}", []
    scales = np.linalg.norm(aff[:3, :3], axis=0)
    if scales.min() <= 1e-6 or abs(np.linalg.det(aff[:3, :3])) <= 1e-9 * scales.prod():
        sizes = np.round(scales, 4).tolist()
        return f"unusable geometry: the affine is not invertible (voxel sizes {sizes} mm): {name}", []
    raw = _raw_header(path, img)
    pix = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
    if np.isfinite(pix).all() and (pix > 0).all():
        return None, []
    said = f"voxel sizes (pixdim) {pix.tolist()}"
    if int(raw["sform_code"]) == 0:
        return f"unusable geometry: {said} in the header and no sform: {name}", []
    return None, [f"{said} in the header; the sform is used: {name}"]


def _read_bvals(path: Path) -> tuple[float, ...] | None:
    stem = path.name[:-7] if path.name.endswith(".nii.gz") else path.stem
    f = path.with_name(stem + ".bval")
    if not f.is_file():
        return None
    try:
        return tuple(float(b) for b in f.read_text().split())
    except (OSError, ValueError, UnicodeError):
        return ()


def _probe(path: Path, check_data: bool) -> _Probe:
    """Open one image: fatal problem or spatial shape, warnings, number of volumes, b-values."""
    import nibabel as nib

    if not path.exists():
        return _Probe(f"file not found: {path}")
    if path.is_dir():
        return _Probe(f"is a folder, not an image file: {path}")
    if not path.is_file():
        return _Probe(f"not a file: {path}")
    try:
        img = nib.load(str(path))
    except Exception as e:  # noqa: BLE001 - any failure means unreadable
        return _Probe(f"cannot load {path.name} with nibabel: {type(e).__name__}: {e}")
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        return _Probe(f"not a NIfTI image ({type(img).__name__}): {path.name}")
    shape = tuple(int(n) for n in img.shape)
    if len(shape) not in (3, 4):
        return _Probe(f"image is {len(shape)}D {shape}, expected 3D or 4D: {path.name}")
    if min(shape) == 0:
        return _Probe(f"empty image {shape}: {path.name}")
    try:
        problem, warnings = _geometry_problem(path, img)
    except Exception as e:  # noqa: BLE001 - a header nibabel loaded but cannot re-read
        problem, warnings = f"cannot read the header of {path.name}: {type(e).__name__}: {e}", []
    if problem:
        return _Probe(problem)
    if check_data:
        try:
            data = np.asanyarray(img.dataobj)
        except Exception as e:  # noqa: BLE001 - truncated gzip, short file, ...
            return _Probe(f"cannot read image data of {path.name} (truncated or corrupt?): {type(e).__name__}: {e}")
        if data.dtype.kind in "fc" and not np.isfinite(data).all():
            warnings.append(f"image contains NaN or infinite voxels: {path.name}")
    volumes = shape[3] if len(shape) == 4 else 1
    return _Probe(None, shape[:3], tuple(warnings), volumes, _read_bvals(path) if volumes > 1 else None)


def _volume_problem(name: str, p: _Probe, path: Path) -> str | None:
    """A 4D image the pipeline cannot use: b1000 and b0 need a matching ``.bval`` with a volume of
    their b-value (b < 50; |b - 1000| < 200); every other field must hold one volume."""
    if p.volumes == 1:
        return None
    if name not in ("b1000", "b0"):
        return f"4D image with {p.volumes} volumes, expected one: {path.name}"
    if not p.bvals or len(p.bvals) != p.volumes:
        have = "no .bval file" if p.bvals is None else f"a .bval with {len(p.bvals)} values"
        return f"4D image with {p.volumes} volumes and {have} beside it: cannot tell b0 from b1000: {path.name}"
    b = np.asarray(p.bvals)
    if not (b < 50 if name == "b0" else np.abs(b - 1000) < 200).any():
        return f"4D image without a {name} volume among b-values {sorted(set(p.bvals))}: {path.name}"
    return None


def _probe_all(files: list[Path], check_data: bool) -> dict[Path, _Probe]:
    """Probe each distinct file once, in a thread pool (nibabel/zlib release the GIL)."""
    from tqdm import tqdm

    unique = list(dict.fromkeys(files))
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


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(set(findings), key=lambda f: (f.patient_id != "-", f.patient_id, f.field, not f.fatal, f.problem))


def _table_findings(df: pd.DataFrame, labels: list[str], header_rows: set[int]) -> list[Finding]:
    """What the table alone shows: missing columns, no rows, bad cells, an empty split, a missing path."""
    out = []
    add = lambda pid, field, problem, fatal=True: out.append(Finding(pid, field, problem, fatal))  # noqa: E731
    for f in COLUMNS:
        if f.required and f.name not in df.columns:
            add("-", f.name, "missing required column")
    if df.empty:
        add("-", "manifest", "manifest has no patient rows")
    for name in _NAMES:
        if name in df.columns and _BY_NAME[name].kind not in ("id", "path"):
            for i, raw in enumerate(df[name]):
                if i not in header_rows and (problem := _check_cell(name, raw)) is not None:
                    add(labels[i], name, problem)
    if "split" in df.columns and not df.empty:
        present = set(df["split"].str.lower())
        for s in SPLITS:
            if s not in present:
                add("-", "split", f"empty split: no patients in {s!r}")
    for name in _PATHS:
        for i, raw in enumerate(df[name] if name in df.columns else []):
            if raw == "" and i not in header_rows:
                derivable = name == "b0" and "adc" in df.columns and df.at[i, "adc"] != ""
                if _BY_NAME[name].required and not derivable:
                    add(labels[i], name, "missing path" + (" (give b0, or adc to derive it)" if name == "b0" else ""))
    return out


def _file_findings(df: pd.DataFrame, labels: list[str], header_rows: set[int], mpath: Path, data_roots,
                   check_data: bool) -> list[Finding]:
    """What the files show: path values inside the data roots, then each distinct file opened once
    (unreadable, not a volume, a b0 or mask on another grid than b1000, one file used twice)."""
    out = []
    add = lambda pid, field, problem, fatal=True: out.append(Finding(pid, field, problem, fatal))  # noqa: E731
    roots, bad_roots = _roots(mpath, data_roots)
    todo, outside = _locate(df.drop(index=sorted(header_rows)), labels, mpath, roots)
    out += bad_roots + outside
    probed = _probe_all([p for _, _, p in todo], check_data)
    shapes: dict[tuple[int, str], tuple] = {}
    for i, name, p in todo:
        got = probed[p]
        problem = got.problem or _volume_problem(name, got, p)
        if problem:
            add(labels[i], name, problem)
        else:
            shapes[i, name] = got.shape
        for w in got.warnings:
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
    return out


def validate(cohort: str | Path, check_data: bool = True, data_roots=()) -> list[Finding]:
    """Check a cohort's manifest and files; return findings sorted by patient then field.

    Never raises for bad content (an unreadable or missing manifest is a fatal finding with
    patient "-", field "manifest"). Includes :func:`safety_findings`: a path cell outside the data
    roots (the manifest's folder, then ``data_roots``) is fatal and its file is not opened. With
    ``check_data`` every image is read fully (a truncated ``.nii.gz`` is caught); without it only
    headers are read.
    """
    try:
        mpath, df = _read(cohort)
    except _READ_ERRORS as e:
        return [Finding("-", "manifest", f"cannot read manifest: {e}")]
    labels = _labels(df)
    header_rows = {i for i, pid in enumerate(df.get("patient_id", [])) if _is_header(pid)}
    findings = _id_findings(df, labels)
    findings += _table_findings(df, labels, header_rows)
    findings += _file_findings(df, labels, header_rows, mpath, data_roots, check_data)
    return _sorted(findings)


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
class CohortTable:
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


def load_cohort(cohort: str | Path, check: bool = True, check_data: bool = False, data_roots=()) -> CohortTable:
    """Load a cohort folder (or manifest CSV) into a typed :class:`CohortTable`.

    With ``check`` the manifest is validated first (headers only unless ``check_data``; path cells
    must lie in the manifest's folder or ``data_roots``) and :class:`ManifestError` is raised on any
    fatal finding. Without it, unparsable values become NaN and nothing is checked: callers that
    build paths from the table call :func:`require_safe` first.
    """
    mpath = resolve_manifest_path(cohort)
    if check:
        findings = validate(mpath, check_data=check_data, data_roots=data_roots)
        if any(f.fatal for f in findings):
            raise ManifestError(findings, mpath)
    return CohortTable(root=mpath.parent.absolute(), table=_typed(read_manifest(mpath), mpath.parent))
