# aligndepth — two commands on a fresh clone:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; override (e.g. TORCH_SPEC="torch") on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# Worker processes for the fast tests (pytest-xdist); 0 runs them all in one process.
TEST_WORKERS ?= 2

.PHONY: install browser demo test test-slow test-all check bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,api,train]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/aligndepth organism build
	$(VENV)/bin/aligndepth audit

# Debian's Chromium, for the tests that drive report.html in a browser: installed only
# where it can be (root, apt-get); never fatal, those tests are skipped without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null 2>&1 \
	  && { apt-get install -y -qq chromium >/dev/null 2>&1 \
	       || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } \
	  || echo "no chromium (not root, or no apt-get): the report's browser tests are skipped"

# Unit, family, judge and CLI tests (what CI runs), in $(TEST_WORKERS) processes.
test: install browser
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS)

# The papers' phenomena on the standard organism (builds it once into the user cache).
test-slow: install
	ALIGNDEPTH_TEST_REUSE_ORGANISMS=1 $(PY) -m pytest -q -m slow

test-all: install
	$(PY) -m pytest -q

check: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
