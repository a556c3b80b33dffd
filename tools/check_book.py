"""Open every page of the built book in headless Chromium, served over HTTP as a static host serves
it, and check what a reviewer would trip over. Saves a screenshot per page.

Checked on every page (an error fails the check):
- every image loads (complete, non-zero natural size);
- no JavaScript error (console errors and uncaught exceptions), no request that fails or returns
  >= 400, and no request that leaves the host (a reader offline, or behind a hospital proxy, would
  miss what it fetches);
- every internal link leads to a page that exists, and its ``#fragment`` to an element on it;
- every image in the text is a figure with a caption;
- no table is wider than the text column (its right-hand columns would be cut off or scroll away).
And once: the search page finds a word that every page of the book uses.

Run: python tools/check_book.py [book/_build/html] [--screenshots DIR] [--search stroke]
(``make check-book``). Needs Debian's chromium (``apt-get install chromium``) and playwright, which
drives it (no browser download: ``--chromium`` names the executable).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = "/usr/bin/chromium"
# the flags this machine family needs: no sandbox as root, no GPU, and no calls home
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
ID_RE = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")

# evaluated in the page: what the checks need, read off the rendered DOM
_PAGE_JS = """() => {
  const article = document.querySelector('article') || document.querySelector('main') || document.body;
  const col = article.getBoundingClientRect();
  const imgs = Array.from(document.images);
  return {
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    uncaptioned: Array.from(article.querySelectorAll('img')).filter(i => {
        const f = i.closest('figure');
        return !(f && f.querySelector('figcaption') && f.querySelector('figcaption').textContent.trim());
      }).map(i => i.getAttribute('src')),
    figures: Array.from(article.querySelectorAll('figure img')).map(i => ({
        src: i.getAttribute('src'), shown: i.getBoundingClientRect().width, natural: i.naturalWidth})),
    wide_tables: Array.from(article.querySelectorAll('table')).filter(t =>
        t.scrollWidth > Math.ceil(col.width) + 1 || t.getBoundingClientRect().right > col.right + 1
      ).map(t => ({width: t.scrollWidth, column: Math.round(col.width),
                   head: (t.querySelector('th') || t).textContent.trim().slice(0, 40)})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  };
}"""


@dataclass
class PageReport:
    page: str
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screenshot: str | None = None


def pages(root: Path) -> list[str]:
    """The book's HTML pages, relative to its root (theme assets and sources left out)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if not (SKIP_DIRS & set(p.relative_to(root).parts[:-1])))


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    return frozenset(ID_RE.findall(path.read_text(encoding="utf-8", errors="replace")))


def link_problem(root: Path, origin: str, href: str) -> str | None:
    """Why an internal link is broken (None when it is fine, or leaves the book)."""
    parts = urlsplit(href)
    if f"{parts.scheme}://{parts.netloc}" != origin:
        return None
    target = root / unquote(parts.path).lstrip("/")
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return f"broken link: {href} (no {target.relative_to(root).as_posix()})"
    frag = unquote(parts.fragment)
    if frag and target.suffix == ".html" and frag not in _ids(target):
        return f"broken link: {href} (no element #{frag} on {target.relative_to(root).as_posix()})"
    return None


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(root: Path) -> tuple[ThreadingHTTPServer, str]:
    """A static HTTP server of ``root`` on a free local port, in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _watch(page, origin: str, report: PageReport) -> None:
    page.on("console", lambda m: m.type == "error" and report.errors.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: report.errors.append(f"JavaScript exception: {e}"))
    page.on("requestfailed", lambda r: r.url.startswith(origin) and report.errors.append(
        f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and report.errors.append(f"HTTP {r.status}: {r.url}"))


def _block_outside(context, origin: str, reports: list) -> None:
    def route(r):
        if r.request.url.startswith(origin) or r.request.url.startswith("data:"):
            r.continue_()
        else:
            reports[-1].errors.append(f"fetches from outside the book: {r.request.url}")
            r.abort()
    context.route("**/*", route)


def check_page(context, root: Path, origin: str, rel: str, shots: Path | None, reports: list) -> PageReport:
    report = PageReport(rel)
    reports.append(report)
    page = context.new_page()
    _watch(page, origin, report)
    try:
        page.goto(f"{origin}/{rel}", wait_until="load")
        page.wait_for_load_state("networkidle")
        dom = page.evaluate(_PAGE_JS)
        report.errors += [f"image does not load: {s}" for s in dom["broken"]]
        report.errors += [f"image without a figure caption: {s}" for s in dom["uncaptioned"]]
        report.errors += [f"table wider than the text column ({t['width']} px > {t['column']} px): {t['head']!r}"
                          for t in dom["wide_tables"]]
        report.errors += sorted({p for h in dom["links"] if (p := link_problem(root, origin, h))})
        report.notes += [f"figure shown at {f['shown'] / f['natural']:.0%} of its size: {f['src']}"
                         for f in dom["figures"] if f["natural"] and f["shown"] / f["natural"] < 0.6]
        if shots is not None:
            out = shots / (rel.replace("/", "__").removesuffix(".html") + ".png")
            page.screenshot(path=str(out), full_page=True)
            report.screenshot = str(out)
    finally:
        page.close()
    return report


def check_search(context, origin: str, word: str, reports: list) -> PageReport:
    """The search page finds ``word`` (Sphinx's client-side search, run by the page's JavaScript)."""
    report = PageReport(f"search.html?q={word}")
    reports.append(report)
    page = context.new_page()
    _watch(page, origin, report)
    try:
        page.goto(f"{origin}/search.html?q={word}", wait_until="load")
        try:
            page.wait_for_selector("#search-results ul.search li", timeout=20_000)
            n = page.locator("#search-results ul.search li").count()
            report.notes.append(f"search for {word!r}: {n} result(s)")
        except Exception:  # playwright's TimeoutError: no result appeared
            report.errors.append(f"search for {word!r} found nothing within 20 s")
    finally:
        page.close()
    return report


def check_book(root: Path, shots: Path | None = None, search: str | None = "stroke",
               chromium: str = CHROMIUM, width: int = 1400, height: int = 1000) -> list[PageReport]:
    """Check every page of the built book at ``root``; one report per page (and one for search)."""
    from playwright.sync_api import sync_playwright

    root = Path(root).resolve()
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root} holds no index.html: build the book first (make book)")
    if not Path(chromium).exists():
        raise FileNotFoundError(f"no Chromium at {chromium}: apt-get install chromium (Debian), or --chromium PATH")
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    server, origin = serve(root)
    reports: list[PageReport] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": width, "height": height})
            _block_outside(context, origin, reports)
            for rel in pages(root):
                check_page(context, root, origin, rel, shots, reports)
            if search and (root / "search.html").is_file():
                check_search(context, origin, search, reports)
            browser.close()
    finally:
        server.shutdown()
    return reports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", type=Path, default=Path("book/_build/html"))
    ap.add_argument("--screenshots", type=Path, default=Path("book/_build/screenshots"),
                    help="a full-page PNG per page goes here")
    ap.add_argument("--search", default="stroke", help="a word the search page must find ('' to skip)")
    ap.add_argument("--chromium", default=CHROMIUM, help="the Chromium executable")
    ap.add_argument("--width", type=int, default=1400, help="window width in pixels")
    ap.add_argument("--json", type=Path, help="also write the reports as JSON")
    args = ap.parse_args(argv)
    reports = check_book(args.root, args.screenshots, args.search or None, args.chromium, args.width)
    for r in reports:
        print(f"{'FAIL' if r.errors else 'ok  '} {r.page}")
        for line in r.errors:
            print(f"       error: {line}")
        for line in r.notes:
            print(f"       note:  {line}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in reports], indent=1))
    bad = sum(bool(r.errors) for r in reports)
    print(f"{len(reports)} checked, {bad} with errors; screenshots in {args.screenshots}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
