"""The browser check of the built book (tools/check_book.py) finds each fault it promises to find,
on a small site with one fault of each kind beside a clean page, in headless Chromium."""

from __future__ import annotations

import base64
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_book  # noqa: E402

# .ci/run installs Chromium and sets this, so that there the check cannot be skipped
REQUIRED = os.environ.get("TSS_REQUIRE_BROWSER") == "1"
chromium = shutil.which("chromium") or check_book.CHROMIUM
if not Path(chromium).exists():
    if REQUIRED:
        raise RuntimeError(f"TSS_REQUIRE_BROWSER=1 but no Chromium at {chromium}")
    pytest.skip("no Chromium here (apt-get install chromium)", allow_module_level=True)

PNG = base64.b64decode(  # 1 x 1 pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _page(body: str, script: str = "") -> str:
    return (f"<!doctype html><html><head><title>t</title>{script}</head>"
            f"<body><main style='width:800px'><article style='width:800px'>{body}</article></main></body></html>")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "_images").mkdir()
    (root / "_images" / "ok.png").write_bytes(PNG)
    good_figure = "<figure><img src='_images/ok.png'><figcaption>A caption.</figcaption></figure>"
    (root / "index.html").write_text(_page(
        good_figure + "<a href='clean.html#sec'>fine</a><a href='https://example.org/'>external, not followed</a>"))
    (root / "clean.html").write_text(_page(f"<section id='sec'>{good_figure}<a href='index.html'>home</a></section>"))
    (root / "faulty.html").write_text(_page(
        "<figure><img src='_images/missing.png'><figcaption>Gone.</figcaption></figure>"
        "<img src='_images/ok.png'>"
        "<a href='nowhere.html'>a</a><a href='clean.html#no-such-section'>b</a>"
        "<table style='width:2000px'><tr><th>wide</th></tr></table>"
        "<img src='https://example.org/remote.png' alt='remote'>",
        script="<script>console.error('boom')</script><script>null.x</script>"))
    return root


@pytest.fixture(scope="module")
def reports(site, tmp_path_factory) -> dict[str, check_book.PageReport]:
    shots = tmp_path_factory.mktemp("shots")
    return {r.page: r for r in check_book.check_book(site, shots, search=None, chromium=chromium)}


def test_clean_pages_pass_and_get_a_screenshot(reports):
    for page in ("index.html", "clean.html"):
        assert reports[page].errors == [], reports[page].errors
        assert Path(reports[page].screenshot).stat().st_size > 1000


def test_every_fault_of_the_faulty_page_is_reported(reports):
    errors = "\n".join(reports["faulty.html"].errors)
    assert "image does not load: _images/missing.png" in errors
    assert "image without a figure caption: _images/ok.png" in errors
    assert "no nowhere.html" in errors
    assert "no element #no-such-section on clean.html" in errors
    assert "table wider than the text column" in errors
    assert "console error: boom" in errors
    assert "JavaScript exception" in errors
    assert "fetches from outside the book: https://example.org/remote.png" in errors


def test_links_that_leave_the_book_are_not_followed(site):
    origin = "http://127.0.0.1:1"
    assert check_book.link_problem(site, origin, "https://example.org/x.html") is None
    assert check_book.link_problem(site, origin, f"{origin}/clean.html#sec") is None
    assert "no element #nope" in check_book.link_problem(site, origin, f"{origin}/clean.html#nope")


def test_the_checker_refuses_a_folder_with_no_book(tmp_path):
    with pytest.raises(FileNotFoundError, match="build the book first"):
        check_book.check_book(tmp_path, chromium=chromium)
