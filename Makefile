# TSS companion. Quick start: `make book` and `make test` (Python >= 3.11 and make are all you need).
#   PROFILE=quick|lowres|full   default: full when a CUDA GPU is visible, else quick
#   JOBS=N               worker processes for cohort generation (default: all cores)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
JOBS ?= -1
STAMP := $(VENV)/.installed
LOCK := requirements.lock

# profile is decided lazily (needs torch from the venv)
PROFILE_CMD = $${PROFILE:-$$($(PY) -m tss default-profile)}

NOTEBOOKS := $(shell $(PYTHON) tools/pages.py)  # the one page list (tools/pages.py)
GENERATED := book/generated

.PHONY: setup lock test book cohort notebooks pages html check-book check-colab bench clean help

help:
	@echo "make book    regenerate every result and build the book into book/_build/html"
	@echo "make test    run the test suite"
	@echo "make setup   create/refresh $(VENV) from $(LOCK) (the exact versions of every package)"
	@echo "make lock    re-resolve $(LOCK) from pyproject.toml's ranges and lock-constraints.txt"
	@echo "make check-book  open every built page in headless Chromium (images, links, console, captions, search, table widths); screenshots in book/_build/screenshots"
	@echo "make check-colab  run the first chapter as on Colab (fresh environment, install cell, working directory elsewhere)"
	@echo "make bench   benchmarks (preprocessing s/patient; training steps: hemispheres/s, memory; frozen-stage cache, whole epochs against bare steps, the quick grid before and after the CPU speed-ups, runs side by side against one run on all cores, as ratios)"
	@echo "options: PROFILE=quick|lowres|full JOBS=N"

setup: $(STAMP)

# exactly the lock's versions (pip-sync semantics would also remove strays; a fresh venv has none)
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# one command refreshes the lock: every package, direct and transitive, for Python 3.11+ on every
# platform (universal), from today's registry; commit the result with the change that needed it
lock:
	@test -x $(VENV)/bin/uv || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(PY) -m pip install --quiet uv; }
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	  --constraints lock-constraints.txt --custom-compile-command "make lock" --quiet -o $(LOCK)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# one papermill run per page of tools/pages.py: notebooks/NN_name.py (jupytext percent format) is
# converted to a notebook and executed into book/generated/NN_name.ipynb; the three Training pages
# are one notebook, notebooks/04_training.py, executed once per chapter's `phases`
notebooks: $(STAMP)
	@set -euo pipefail; profile=$(PROFILE_CMD); mkdir -p $(GENERATED); \
	echo "profile: $$profile"; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for nb in $(NOTEBOOKS); do \
	  src=$$($(PYTHON) tools/pages.py --source $$nb); extra=($$($(PYTHON) tools/pages.py --papermill $$nb)); \
	  start=$$(date +%s.%N); \
	  $(PY) -m jupytext --quiet --to ipynb --output $$tmp/$$nb.ipynb notebooks/$$src.py; \
	  $(PY) -m papermill --kernel python3 --language python --cwd notebooks $$tmp/$$nb.ipynb $(GENERATED)/$$nb.ipynb \
	    -p profile $$profile -p jobs $(JOBS) "$${extra[@]}"; \
	  $(PY) tools/prepare_pages.py $(GENERATED)/$$nb.ipynb; \
	  $(PY) -m tss.provenance results/$$profile --stage $$nb --since $$start; \
	  echo "$$nb: $$(( $$(date +%s) - $${start%.*} )) s"; \
	done

# the pages `make notebooks` runs, in order (tests/test_notebooks.py asks make for them)
pages:
	@echo $(NOTEBOOKS)

html: $(STAMP)
	@# the intro's findings box, from the result files of the profile the Results pages show
	$(PY) -m tss findings --profile $(PROFILE_CMD) --out $(GENERATED)/findings.md
	$(VENV)/bin/jupyter-book build book --warningiserror --keep-going
	@# the rendered book must not reveal the build machine's paths
	@if grep -rlF "$(CURDIR)" book/_build/html --include=*.html; then \
	  echo "error: the pages above contain the absolute path $(CURDIR)"; exit 1; fi

book: notebooks html
	@echo "book: book/_build/html/index.html"

# the built book in a real browser, served over HTTP as a static host would serve it (needs Debian's chromium)
check-book: $(STAMP)
	$(PY) tools/check_book.py book/_build/html --screenshots book/_build/screenshots

# a chapter run as on Colab: a fresh environment, the working directory elsewhere, the install cell
# fetching this checkout's last commit (tools/colab.py)
check-colab: $(STAMP)
	$(PY) tools/colab.py check --page 01_cohort

# throughput goals live here, not in tests
bench: $(STAMP)
	$(PY) benchmarks/bench_preprocess.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_frozen.py
	$(PY) benchmarks/bench_loop.py
	$(PY) benchmarks/bench_quickgrid.py
	$(PY) benchmarks/bench_channels_last.py
	$(PY) benchmarks/bench_lanes.py
	$(PY) benchmarks/bench_grid.py

clean:
	rm -rf book/_build $(GENERATED)
