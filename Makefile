# Two commands, each sets up .venv on first use (and again when pyproject.toml changes):
#   make demo   run examples/simple_app (Ctrl-C shuts it down gracefully)
#   make test   mypy --strict over src and tests, then the whole test suite on asyncio and trio
#   make bench  the benchmarks (benchmarks/run.py; ARGS="--quick" or ARGS="--only channel")
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,examples]'
	# an editable install compiles nothing: give every worker start cached bytecode
	$(PY) -m compileall -q src
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/simple_app/main.py $(ARGS)

typecheck: $(STAMP)
	$(PY) -m mypy

test: typecheck
	$(PY) -m pytest $(ARGS)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,examples,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .hypothesis
