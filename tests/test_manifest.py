"""Cohort manifest: schema docs, reading/writing, validation findings, typed loading, CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tss import cli, manifest
from tss.manifest import COLUMNS, Finding, ManifestError

REPO = Path(__file__).resolve().parents[1]
NAMES = [f.name for f in COLUMNS]
SPLIT_OF = {"P001": "train", "P002": "train", "P003": "val", "P004": "val", "P005": "test", "P006": "test"}


def _nifti(path: Path, shape=(8, 8, 4), seed=0, mask=False) -> None:
    rng = np.random.default_rng(seed)
    arr = (rng.random(shape) > 0.8).astype(np.uint8) if mask else rng.integers(0, 1000, shape).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.diag([2.0, 2.0, 6.0, 1.0])), str(path))


def _rel(pid: str) -> dict[str, str]:
    return {"b1000": f"{pid}/dwi/{pid}_acq-b1000_dwi.nii.gz", "b0": f"{pid}/dwi/{pid}_acq-b0_dwi.nii.gz",
            "flair": f"{pid}/anat/{pid}_FLAIR.nii.gz",
            "lesion_mask": f"derivatives/lesion_masks/{pid}_space-dwi_mask.nii.gz"}


def make_cohort(root: Path) -> Path:
    """Six patients, two per split; images 8x8x4 (FLAIR 8x8x5); P006 has no lesion mask."""
    rows = []
    for k, (pid, split) in enumerate(SPLIT_OF.items()):
        rel = _rel(pid)
        for j, key in enumerate(("b1000", "b0", "flair", "lesion_mask")):
            if key == "lesion_mask" and pid == "P006":
                rel[key] = ""
                continue
            _nifti(root / rel[key], shape=(8, 8, 5) if key == "flair" else (8, 8, 4), seed=10 * k + j,
                   mask=key == "lesion_mask")
        rows.append({"patient_id": pid, **rel, "onset_to_mri_min": 60.0 * (k + 1) + 0.5,
                     "stroke_side": ["left", "right", "both", "none"][k % 4], "split": split,
                     "reader1": k % 2, "reader2": 1, "reader3": np.nan if pid == "P004" else 0,
                     "age": 50 + k, "sex": "FM"[k % 2], "nihss": k + 3, "site": f"site{k % 2}"})
    manifest.write_manifest(pd.DataFrame(rows), root / manifest.MANIFEST_NAME)
    return root


@pytest.fixture
def cohort(tmp_path) -> Path:
    return make_cohort(tmp_path / "cohort")


def edit(root: Path, pid: str, **values) -> None:
    df = manifest.read_manifest(root / manifest.MANIFEST_NAME)
    for col, v in values.items():
        df.loc[df["patient_id"] == pid, col] = v
    manifest.write_manifest(df, root / manifest.MANIFEST_NAME)


def append_copy(root: Path, pid: str, **values) -> None:
    df = manifest.read_manifest(root / manifest.MANIFEST_NAME)
    row = df[df["patient_id"] == pid].copy()
    for col, v in values.items():
        row[col] = v
    manifest.write_manifest(pd.concat([df, row], ignore_index=True), root / manifest.MANIFEST_NAME)


def assert_only(findings: list[Finding], pid: str, field: str, words: str = "") -> Finding:
    """A fatal finding names ``pid`` and ``field`` (problem containing ``words``); nobody else has one."""
    hits = [f for f in findings if f.fatal and f.patient_id == pid and f.field == field and words in f.problem]
    assert hits, manifest.format_findings(findings)
    assert {f.patient_id for f in findings} == {pid}, manifest.format_findings(findings)
    return hits[0]


# --- schema and docs --------------------------------------------------------------------------


def test_readme_documents_every_column():
    readme = (REPO / "data_manifest" / "README.md").read_text(encoding="utf-8")
    for name in NAMES:
        assert f"`{name}`" in readme, name
    assert manifest.schema_markdown() in readme, "README table out of date: paste manifest.schema_markdown()"


def test_example_manifest_has_every_column_and_validates_with_its_files(tmp_path):
    example = manifest.read_manifest(REPO / "data_manifest" / "example_manifest.csv")
    assert list(example.columns) == NAMES and len(example) == 3
    assert not any(Path(p).is_absolute() for c in ("b1000", "b0", "flair", "lesion_mask", "adc") for p in example[c] if p)
    shutil.copy(REPO / "data_manifest" / "example_manifest.csv", tmp_path / manifest.MANIFEST_NAME)
    only_missing = manifest.validate(tmp_path)
    assert only_missing and all("file not found" in f.problem for f in only_missing)
    for i, c in enumerate(("b1000", "b0", "flair", "lesion_mask", "adc")):
        for p in example[c]:
            if p:
                _nifti(tmp_path / p, mask=c == "lesion_mask", seed=i)
    assert manifest.validate(tmp_path) == []


def test_columns_are_ordered_and_required_as_documented():
    assert NAMES[:8] == ["patient_id", "b1000", "b0", "flair", "lesion_mask", "onset_to_mri_min",
                         "stroke_side", "split"]
    assert {f.name for f in COLUMNS if f.required} == {"patient_id", "b1000", "b0", "flair",
                                                       "onset_to_mri_min", "stroke_side", "split"}


# --- valid cohort -----------------------------------------------------------------------------


def test_valid_cohort_has_no_findings_and_loads_typed(cohort):
    assert manifest.validate(cohort) == []
    assert manifest.format_findings([]) == "manifest OK: no findings"
    c = manifest.load_cohort(cohort, check_data=True)
    t = c.table
    assert len(c) == 6 and list(t.columns) == NAMES + ["site"]
    for col in ("onset_to_mri_min", "age", "nihss", "reader1", "reader2", "reader3"):
        assert t[col].dtype == np.float64, col
    assert np.isnan(t.set_index("patient_id").at["P004", "reader3"])
    for col in ("b1000", "b0", "flair"):
        assert all(isinstance(p, Path) and p.is_absolute() and p.is_file() for p in t[col])
    masks = t.set_index("patient_id")["lesion_mask"]
    assert masks["P006"] is None and masks["P001"].is_file()
    assert c.ids() == list(SPLIT_OF) and c.ids("val") == ["P003", "P004"]
    assert list(c.split("test")["patient_id"]) == ["P005", "P006"]
    assert c.root.is_absolute()
    with pytest.raises(ValueError):
        c.split("training")


def test_manifest_path_can_be_folder_or_csv(cohort, tmp_path):
    assert manifest.resolve_manifest_path(cohort) == cohort / "manifest.csv"
    assert manifest.resolve_manifest_path(cohort / "manifest.csv") == cohort / "manifest.csv"
    assert len(manifest.load_cohort(cohort / "manifest.csv")) == 6
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        manifest.resolve_manifest_path(tmp_path)
    with pytest.raises(FileNotFoundError):
        manifest.resolve_manifest_path(tmp_path / "nope.csv")
    [f] = manifest.validate(tmp_path / "nowhere")
    assert f.fatal and (f.patient_id, f.field) == ("-", "manifest")


def test_case_and_whitespace_are_normalised(cohort):
    edit(cohort, "P001", stroke_side=" LEFT ", split="Train", sex="f")
    assert manifest.validate(cohort) == []
    row = manifest.load_cohort(cohort).table.iloc[0]
    assert (row["stroke_side"], row["split"], row["sex"]) == ("left", "train", "F")


def test_optional_columns_may_be_absent(cohort):
    m = cohort / manifest.MANIFEST_NAME
    manifest.write_manifest(manifest.read_manifest(m).drop(columns=["reader3", "nihss", "sex", "lesion_mask"]), m)
    assert manifest.validate(cohort) == []
    t = manifest.load_cohort(cohort).table
    assert t["reader3"].isna().all() and t["nihss"].isna().all()
    assert t["sex"].isna().all() and t["lesion_mask"].isna().all()


# --- one finding per kind of error ------------------------------------------------------------


@pytest.mark.parametrize("pid, field, value, words", [
    ("P002", "onset_to_mri_min", "", "missing value"),
    ("P002", "onset_to_mri_min", "-5", "negative value -5"),
    ("P002", "onset_to_mri_min", "about 3 h", "not a number"),
    ("P002", "onset_to_mri_min", "nan", "not a finite number"),
    ("P002", "onset_to_mri_min", "inf", "not a finite number"),
    ("P003", "stroke_side", "middle", "unknown stroke side"),
    ("P003", "stroke_side", "", "missing value"),
    ("P004", "split", "training", "unknown split"),
    ("P005", "reader2", "2", "bad reader value"),
    ("P005", "reader1", "yes", "bad reader value"),
    ("P001", "age", "130", "above 120"),
    ("P001", "age", "old", "not a number"),
    ("P001", "sex", "X", "bad value"),
    ("P006", "nihss", "4.5", "not an integer"),
    ("P006", "nihss", "43", "above 42"),
    ("P006", "b0", "", "missing path"),
    ("P001", "b1000", "P001/dwi/nope.nii.gz", "file not found"),
])
def test_bad_value_is_named(cohort, pid, field, value, words):
    edit(cohort, pid, **{field: value})
    f = assert_only(manifest.validate(cohort), pid, field, words)
    assert str(f).startswith(f"[error] patient {pid}, field {field}: ")


def test_negative_onset_message(cohort):
    edit(cohort, "P002", onset_to_mri_min="-5")
    [f] = manifest.validate(cohort)
    assert str(f) == "[error] patient P002, field onset_to_mri_min: negative value -5"


def test_missing_file(cohort):
    (cohort / _rel("P002")["flair"]).unlink()
    assert_only(manifest.validate(cohort), "P002", "flair", "file not found")


def test_truncated_gzip_is_caught_only_when_reading_data(cohort):
    rel = _rel("P003")
    for key in ("b1000", "b0", "lesion_mask"):  # big enough that half the file still holds the header
        _nifti(cohort / rel[key], shape=(32, 32, 8), mask=key == "lesion_mask")
    path = cohort / rel["b1000"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert manifest.validate(cohort, check_data=False) == []  # the header still reads
    assert_only(manifest.validate(cohort, check_data=True), "P003", "b1000", "cannot read image data")


@pytest.mark.parametrize("name, content", [
    ("notes.txt", b"not an image\n"),
    ("garbage.nii.gz", bytes(range(256)) * 4),
    ("garbage.nii", b"\x00" * 400),
])
def test_non_nifti_file(cohort, name, content):
    path = cohort / "P004" / name
    path.write_bytes(content)
    edit(cohort, "P004", b0=f"P004/{name}")
    assert_only(manifest.validate(cohort), "P004", "b0", "")


def test_2d_image_is_rejected(cohort):
    _nifti(cohort / "P005" / "flat.nii.gz", shape=(8, 8))
    edit(cohort, "P005", flair="P005/flat.nii.gz")
    assert_only(manifest.validate(cohort), "P005", "flair", "expected 3D or 4D")


def test_duplicate_id_in_one_split(cohort):
    append_copy(cohort, "P002")
    assert_only(manifest.validate(cohort), "P002", "patient_id", "duplicate id")


def test_patient_in_two_splits(cohort):
    append_copy(cohort, "P001", split="test")
    f = assert_only(manifest.validate(cohort), "P001", "split", "more than one split")
    assert "train" in f.problem and "test" in f.problem


def test_empty_patient_id(cohort):
    edit(cohort, "P003", patient_id="")
    assert_only(manifest.validate(cohort), "row 3", "patient_id", "empty patient_id")


def test_empty_split(cohort):
    edit(cohort, "P003", split="train")
    edit(cohort, "P004", split="train")
    f = assert_only(manifest.validate(cohort), "-", "split", "empty split")
    assert "'val'" in f.problem


def test_missing_required_column(cohort):
    m = cohort / manifest.MANIFEST_NAME
    manifest.write_manifest(manifest.read_manifest(m).drop(columns=["onset_to_mri_min"]), m)
    assert_only(manifest.validate(cohort), "-", "onset_to_mri_min", "missing required column")


def test_findings_are_sorted_and_counted(cohort):
    edit(cohort, "P005", stroke_side="up", onset_to_mri_min="-1")
    edit(cohort, "P002", reader1="maybe")
    edit(cohort, "P003", split="train")
    edit(cohort, "P004", split="train")
    findings = manifest.validate(cohort)
    assert [(f.patient_id, f.field) for f in findings] == [
        ("-", "split"), ("P002", "reader1"), ("P005", "onset_to_mri_min"), ("P005", "stroke_side")]
    report = manifest.format_findings(findings)
    assert report.splitlines()[-1].endswith("4 errors, 0 warnings")


def test_warnings_are_not_fatal(cohort):
    _nifti(cohort / "P001" / "odd_b0.nii.gz", shape=(8, 8, 6))
    edit(cohort, "P001", b0="P001/odd_b0.nii.gz")
    findings = manifest.validate(cohort)
    assert [(f.patient_id, f.field, f.fatal) for f in findings] == [("P001", "b0", False)]
    assert "differs from b1000 grid" in findings[0].problem
    assert str(findings[0]).startswith("[warning] ")
    assert "0 errors, 1 warning" in manifest.format_findings(findings)
    assert len(manifest.load_cohort(cohort)) == 6


# --- loading, CLI, round trip -----------------------------------------------------------------


def test_load_cohort_raises_on_fatal_findings(cohort):
    edit(cohort, "P006", stroke_side="sideways")
    with pytest.raises(ManifestError, match="P006") as err:
        manifest.load_cohort(cohort)
    assert any(f.patient_id == "P006" and f.field == "stroke_side" for f in err.value.findings)
    assert isinstance(err.value, ValueError)
    assert len(manifest.load_cohort(cohort, check=False)) == 6  # unchecked load still works


def test_cli_validate_exit_codes(cohort, capsys):
    assert cli.main(["validate", str(cohort)]) == 0
    assert "manifest OK" in capsys.readouterr().out
    (cohort / _rel("P004")["b1000"]).unlink()
    assert cli.main(["validate", str(cohort), "--headers-only"]) == 1
    out = capsys.readouterr().out
    assert "patient P004, field b1000" in out and "1 error" in out


def test_write_read_round_trip(tmp_path):
    df = pd.DataFrame({"site": ["a", "b"], "split": ["train", "test"], "patient_id": ["X1", "X2"],
                       "reader1": [1.0, np.nan], "nihss": [4.0, 7.0], "age": [61.5, np.nan],
                       "b1000": [Path("X1/b.nii.gz"), Path("X2/b.nii.gz")], "sex": ["F", None]})
    path = tmp_path / "sub" / "manifest.csv"
    manifest.write_manifest(df, path)
    back = manifest.read_manifest(path)
    assert list(back.columns) == ["patient_id", "b1000", "split", "reader1", "age", "sex", "nihss", "site"]
    assert back.to_dict("list") == {
        "patient_id": ["X1", "X2"], "b1000": ["X1/b.nii.gz", "X2/b.nii.gz"], "split": ["train", "test"],
        "reader1": ["1", ""], "age": ["61.5", ""], "sex": ["F", ""], "nihss": ["4", "7"], "site": ["a", "b"]}
    assert [p.name for p in path.parent.iterdir()] == ["manifest.csv"]  # no temp file left behind
    manifest.write_manifest(back, path)
    pd.testing.assert_frame_equal(manifest.read_manifest(path), back)


def test_typed_table_round_trips(cohort, tmp_path):
    """A loaded table written back (absolute paths, float readers) is a valid manifest again."""
    c = manifest.load_cohort(cohort)
    manifest.write_manifest(c.table, tmp_path / "copy.csv")
    assert manifest.validate(tmp_path / "copy.csv") == []
    again = manifest.load_cohort(tmp_path / "copy.csv")
    pd.testing.assert_frame_equal(again.table, c.table)


def test_b0_may_be_empty_only_when_adc_is_given(cohort):
    df = manifest.read_manifest(cohort / manifest.MANIFEST_NAME)
    pid = df.at[0, "patient_id"]
    df.at[0, "b0"] = ""
    manifest.write_manifest(df, cohort / manifest.MANIFEST_NAME)
    bad = [f for f in manifest.validate(cohort) if f.fatal]
    assert [(f.patient_id, f.field) for f in bad] == [(pid, "b0")] and "adc" in bad[0].problem
    df["adc"] = ""
    df.at[0, "adc"] = df.at[0, "b1000"]  # any readable NIfTI stands in for the ADC map here
    manifest.write_manifest(df, cohort / manifest.MANIFEST_NAME)
    assert not [f for f in manifest.validate(cohort) if f.fatal]


# --- malformed exports: each gets one clear finding before any work ---------------------------


def _only_manifest_finding(cohort: Path) -> str:
    findings = manifest.validate(cohort)
    assert [(f.patient_id, f.field, f.fatal) for f in findings] == [("-", "manifest", True)], \
        manifest.format_findings(findings)
    with pytest.raises(ValueError):
        manifest.read_manifest(cohort / manifest.MANIFEST_NAME)
    return findings[0].problem


@pytest.mark.parametrize("sep, word", [(";", "looks ;-separated"), ("\t", "looks tab-separated"),
                                       ("|", "looks |-separated")])
def test_other_delimiters_are_named(cohort, sep, word):
    m = cohort / manifest.MANIFEST_NAME
    df = manifest.read_manifest(m)
    m.write_text(df.to_csv(index=False, sep=sep), encoding="utf-8")
    problem = _only_manifest_finding(cohort)
    assert word in problem and "comma-separated" in problem


def test_latin1_file_is_named_not_decoded(cohort):
    m = cohort / manifest.MANIFEST_NAME
    df = manifest.read_manifest(m)
    df.loc[3, "site"] = "Zürich"
    m.write_bytes(df.to_csv(index=False).encode("latin-1"))
    problem = _only_manifest_finding(cohort)
    assert "not UTF-8" in problem and "Windows-1252/Latin-1" in problem and "line 5" in problem
    assert "re-save it as UTF-8" in problem


def test_utf16_file_is_named(cohort):
    m = cohort / manifest.MANIFEST_NAME
    m.write_bytes(m.read_text(encoding="utf-8").encode("utf-16"))  # with its byte-order mark
    assert "UTF-16" in _only_manifest_finding(cohort)


def test_utf8_byte_order_mark_is_accepted(cohort):
    m = cohort / manifest.MANIFEST_NAME
    m.write_bytes(m.read_text(encoding="utf-8").encode("utf-8-sig"))
    assert manifest.validate(cohort) == []


def test_empty_file_and_repeated_column_are_named(cohort):
    m = cohort / manifest.MANIFEST_NAME
    text = m.read_text(encoding="utf-8")
    m.write_text("", encoding="utf-8")
    assert "empty" in _only_manifest_finding(cohort)
    m.write_text(text.replace("nihss,", "age,", 1), encoding="utf-8")  # pandas would rename it age.1
    assert "'age' appear more than once" in _only_manifest_finding(cohort)


def test_repeated_header_row_is_named(cohort):
    m = cohort / manifest.MANIFEST_NAME
    lines = m.read_text(encoding="utf-8").splitlines()
    m.write_text("\n".join(lines[:4] + lines[:1] + lines[4:]) + "\n", encoding="utf-8")  # two exports pasted
    f = assert_only(manifest.validate(cohort), "row 4", "patient_id", "repeats the header")
    assert [x for x in manifest.validate(cohort) if x.fatal] == [f]  # and nothing else about that row
    assert manifest.safety_findings(cohort) == [f]


def test_folder_as_image_path(cohort):
    edit(cohort, "P002", flair="P002/anat")
    assert_only(manifest.validate(cohort), "P002", "flair", "is a folder, not an image file")


@pytest.mark.parametrize("value, words", [("1,234", "comma in a number"), ("90,5", "comma in a number"),
                                          ("#N/A", "spreadsheet error value")])
def test_spreadsheet_mangled_numbers_are_explained(cohort, value, words):
    edit(cohort, "P002", onset_to_mri_min=value)
    assert_only(manifest.validate(cohort), "P002", "onset_to_mri_min", words)


def test_scientific_notation_is_a_number(cohort):
    edit(cohort, "P002", onset_to_mri_min="3.0E+2")
    assert manifest.validate(cohort) == []
    assert manifest.load_cohort(cohort).table.at[1, "onset_to_mri_min"] == 300.0


def test_id_turned_into_a_number_is_explained(cohort):
    edit(cohort, "P002", patient_id="1.23E+05")
    f = assert_only(manifest.validate(cohort), "row 2", "patient_id", "unsafe patient_id '1.23E+05'")
    assert "turned it into a number" in f.problem


def _nifti_with(path: Path, pixdim=None, srow_z=None, sform=1) -> None:
    """An uncompressed NIfTI-1 whose header fields are patched in its bytes after saving (nibabel
    repairs a zero pixdim and rewrites the sform from the affine when it writes a file)."""
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.int16), np.diag([2.0, 2.0, 6.0, 1.0])), str(path))
    raw = bytearray(path.read_bytes())
    fields = nib.Nifti1Header.template_dtype.fields

    def put(name, values, start=0):
        dtype, offset = fields[name][:2]
        arr = np.asarray(values, dtype.base)
        offset += start * dtype.base.itemsize
        raw[offset:offset + arr.nbytes] = arr.tobytes()

    put("sform_code", sform)
    if pixdim is not None:
        put("pixdim", pixdim, start=1)
    if srow_z is not None:
        put("srow_z", srow_z)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("kwargs, fatal, words", [
    ({"pixdim": [2, 2, 0], "sform": 0}, True, "voxel sizes (pixdim) [2.0, 2.0, 0.0] in the header and no sform"),
    ({"pixdim": [2, np.nan, 6], "sform": 0}, True, "NaN or infinite"),
    ({"srow_z": [0, 0, 0, 0]}, True, "not invertible"),
    ({"pixdim": [2, 2, 0]}, False, "the sform is used"),  # nibabel places the voxels by the sform
])
def test_unusable_geometry(cohort, kwargs, fatal, words):
    _nifti_with(cohort / "P003" / "odd.nii", **kwargs)
    edit(cohort, "P003", flair="P003/odd.nii")
    findings = manifest.validate(cohort)
    assert [(f.patient_id, f.field, f.fatal) for f in findings] == [("P003", "flair", fatal)], \
        manifest.format_findings(findings)
    assert words in findings[0].problem
    assert ("unusable geometry" in findings[0].problem) == fatal


def test_4d_images_need_bvals_or_one_volume(cohort):
    rel = _rel("P001")["b1000"]
    data = np.random.default_rng(0).integers(1, 1000, (8, 8, 4, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 6.0, 1.0])), str(cohort / "P001/dwi/dwi4d.nii.gz"))
    edit(cohort, "P001", b1000="P001/dwi/dwi4d.nii.gz", b0="P001/dwi/dwi4d.nii.gz")
    bad = {(f.patient_id, f.field) for f in manifest.validate(cohort) if f.fatal}
    assert bad == {("P001", "b1000"), ("P001", "b0")}
    assert "no .bval file" in assert_only(manifest.validate(cohort), "P001", "b1000").problem
    (cohort / "P001/dwi/dwi4d.bval").write_text("0 1000\n")
    assert "a .bval with 2 values" in assert_only(manifest.validate(cohort), "P001", "b0").problem
    (cohort / "P001/dwi/dwi4d.bval").write_text("0 1000 1000\n")
    assert not [f for f in manifest.validate(cohort) if f.fatal]  # the pipeline can pick b0 and b1000
    (cohort / "P001/dwi/dwi4d.bval").write_text("0 0 0\n")
    assert "without a b1000 volume" in assert_only(manifest.validate(cohort), "P001", "b1000").problem
    edit(cohort, "P001", b1000=rel, b0=_rel("P001")["b0"], flair="P001/dwi/dwi4d.nii.gz")
    assert "expected one" in assert_only(manifest.validate(cohort), "P001", "flair").problem
