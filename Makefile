# telemetry_lab — every target creates and fills .venv itself on first use.
#   make test    lint (ruff), types (mypy --strict) once, then pytest on every CPython >= 3.11
#                found (each in its own venv under .venvs/; CI=true requires 3.11-3.13)
#   make pytest-here   pytest in .venv only (PYTEST_ARGS="-x tests/test_mpsc.py" to narrow)
#   make demo    run the demo
#   make bench   run the benchmarks (same-run ratios); installs the `bench` extra (the peer
#                libraries aiochannel, anyio, frequenz-channels) into .venv first
#   make stress  end 150 runs with real signals and cancellations, writes in flight
#   make lab     open the workshop notebooks in JupyterLab (ARGS="--no-browser --port 8888")

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: test lint typecheck pytest pytest-here demo bench stress lab clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "telemetry_lab needs Python >= 3.11; $(PYTHON) is " + sys.version.split()[0] + ". Run: make PYTHON=python3.12 ...")'
	@if [ -d $(VENV) ]; then echo "Updating $(VENV) (pyproject.toml changed)..."; else echo "Setting up $(VENV) (first run only, about a minute)..."; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# The peers bench/primitives.py compares against; only `make bench` needs them.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@touch $@

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python tools/matrix.py $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

pytest-here: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m telemetry_lab

bench: $(BENCH_STAMP)
	$(BIN)/python bench/primitives.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/notebooks.py

stress: $(STAMP)
	$(BIN)/python bench/stress_signals.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(ARGS)

clean:
	rm -rf $(VENV) .venvs .mypy_cache .pytest_cache .ruff_cache .hypothesis build *.egg-info
