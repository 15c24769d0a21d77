# Two commands set up and use a fresh machine:  `make run`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-slow lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch only for the inference-benchmark tests: pin the CPU build that CI machines hold locally
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,bench,mujoco,sweep]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/pipelag demo

lint: setup
	$(PY) -m ruff check src tests benchmarks

test: setup lint
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow
