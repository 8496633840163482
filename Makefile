# medgen: two commands do all the set-up on a fresh machine.
#   make demo   create/reuse .venv, install medgen (with the eval and demo extras), run the main job on embedded data
#   make test   create/reuse .venv, install medgen with test extras (they include eval and demo), run the test suite
#               (all but `gpu`); tests that need the FID Inception weights fail, not skip, when they are missing
# On a GPU cluster, install your CUDA torch first and then `pip install -e ".[eval]"`; the pin below is for
# local/CI installs, where `torch==2.13.0` resolves to the CPU wheel.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.medgen-installed
PYTEST_ARGS ?=
# pytest-xdist workers: one per core by default (each worker and its subprocesses use one thread: tests/conftest.py)
PYTEST_WORKERS ?= auto

.PHONY: all venv demo test test-fast lint typecheck bench clean

all: test

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medgen demo --out demo_out

test: $(STAMP)
	-bash scripts/get_browser.sh
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal -m "not slow and not gpu" -x -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check medgen tests benchmarks
	$(VENV)/bin/ruff format --check medgen tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/data_pipeline.py

clean:
	rm -rf demo_out .pytest_cache .mypy_cache .ruff_cache
