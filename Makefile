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
	$(PY) -m pip install -q -e '.[dev,bench,mujoco,mjx,sweep]'
	touch $(STAMP)

# the main job on its embedded default: delay profiles, then a short PPO run of the paper's MinAtar
# skip & aug agent on Breakout (small networks: 196k steps in ≈ 2.5 min on a 2-core CPU, where its evaluation
# goes from ≈ 0.5 at 16k steps to ≈ 1.7 sampled / 1.8 greedy (one seed: 0.8 / 3.2 before session 9 changed the
# rollout's random stream); the paper-size run is the same command without
# --set, on a GPU: see docs/ppo.md)
run: setup
	$(VENV)/bin/pipelag demo
	$(VENV)/bin/pipelag train --algo ppo --env MinAtar/Breakout-v0 --arch cnn-skip-res --action-history 1 \
		--total-steps 196608 --eval-episodes 16 --set 'channels=[8,16,16]' --set hidden=64 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

lint: setup
	$(PY) -m ruff check src tests benchmarks

test: setup lint
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow
