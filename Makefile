# Two commands, each sets up .venv on first use (and again when pyproject.toml changes):
#   make demo   run examples/simple_app (Ctrl-C shuts it down gracefully)
#   make test   ruff (lint, format), mypy --strict over src, tests, benchmarks, tools and examples, the docs, then the whole test suite on asyncio and trio
#   make docs   the documentation site (Sphinx + MyST) into docs/_build/html; a warning fails it
#   make bench  the benchmarks (benchmarks/run.py; ARGS="--quick" or ARGS="--only channel")
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The benchmarks get a venv of their own with what a deployment has (the runtime
# dependencies, setproctitle, the peers compared), not the test tools: schemathesis
# pulls in rich, which structlog imports whenever it is installed (~4 MB per master).
BENCH_VENV ?= .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: demo test lint typecheck docs bench clean

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

test: lint typecheck docs
	$(PY) -m pytest $(ARGS)

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
