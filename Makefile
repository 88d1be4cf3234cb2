# Two commands, each sets up .venv on first use (and again when pyproject.toml changes):
#   make demo   run examples/simple_app (Ctrl-C shuts it down gracefully)
#   make test   ruff (lint, format), mypy --strict over src, tests, benchmarks, tools and examples, the docs, Chromium for the browser test (as root, if missing), then the whole test suite on asyncio and trio
#   make docs   the documentation site (Sphinx + MyST) into docs/_build/html; a warning fails it
#   make bench  the benchmarks (benchmarks/run.py; ARGS="--quick" or ARGS="--only channel")
PYTHON ?= python3
# The suite's tests mostly wait on child processes: three at a time keep two cores busy.
TEST_PROCESSES ?= 3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The benchmarks get a venv of their own with what a deployment has (the runtime
# dependencies, setproctitle, the peers compared), not the test tools: schemathesis
# pulls in rich, which structlog imports whenever it is installed (~4 MB per master).
BENCH_VENV ?= .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: demo test lint typecheck docs browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,examples,serve,docs]'
	# an editable install compiles nothing: give every worker start cached bytecode
	$(PY) -m compileall -q src
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/simple_app/main.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

# -E: a fresh environment every time, so a warning of an unchanged page still fails the build
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -n -E -q -b html docs docs/_build/html

# The status page's browser test drives Debian's Chromium through its chromedriver (it is
# skipped without them): as root (CI), install them when missing; a few seconds to a minute.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "make: chromium and chromium-driver are missing (not root): the browser test will be skipped"; fi

test: lint typecheck docs browser
	$(PY) -m pytest -n $(TEST_PROCESSES) $(ARGS)

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet -e '.[examples,bench,proctitle,serve]'
	$(BENCH_PY) -m compileall -q src
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_PY) benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .hypothesis docs/_build
