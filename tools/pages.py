"""The book's pages in their order: the one list the Makefile's notebook loop, the Colab export
(tools/colab.py) and the tests read. book/_toc.yml, which Jupyter Book needs, must list the same
pages in the same order (tests/test_notebooks.py checks it).

Run: ``python tools/pages.py`` prints the page names; ``--source PAGE`` the notebook under
``notebooks/`` a page is executed from; ``--papermill PAGE`` its papermill parameters (``-p NAME
VALUE``). Standard library only: the Makefile calls it before any environment exists.
"""

from __future__ import annotations

import sys

# page -> (source under notebooks/, parameters); the three Training pages are one notebook, run once
# per chapter's phases
PAGES = {
    "01_cohort": ("01_cohort", {}),
    "02_preprocessing": ("02_preprocessing", {}),
    "03_models": ("03_models", {}),
    "04_training_pretrain": ("04_training", {"phases": "genesis,medical,stroke"}),
    "05_training_tss": ("04_training", {"phases": "tss3,tss45"}),
    "06_training_attention": ("04_training", {"phases": "attention"}),
    "06b_data_size": ("06b_data_size", {}),
    "06c_clock": ("06c_clock", {}),
    "07_baseline_lee": ("07_baseline_lee", {}),
    "08_results": ("08_results", {}),
    "09_gradcam": ("09_gradcam", {}),
    "10_reproduction": ("10_reproduction", {}),
    "11_provenance": ("11_provenance", {}),
}


def main(argv: list[str]) -> int:
    if not argv:
        print(" ".join(PAGES))
        return 0
    if len(argv) != 2 or argv[0] not in ("--source", "--papermill") or argv[1] not in PAGES:
        print(f"usage: pages.py [--source PAGE | --papermill PAGE]; pages: {' '.join(PAGES)}", file=sys.stderr)
        return 2
    source, params = PAGES[argv[1]]
    print(source if argv[0] == "--source" else " ".join(f"-p {k} {v}" for k, v in params.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
