# Set-up and common commands. `make train` and `make test` set everything up first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup train test bench

setup: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

# The default training job, sized for a 2-core CPU: multi-task ProcGen with srwm,
# a few minutes, ending with a checkpoint, TensorBoard logs and a short evaluation.
train: setup
	$(PY) -m launch.train --core srwm \
	  --env procgen:bigfish,fruitbot,maze,leaper,plunder,starpilot \
	  --num-actors 2 --envs-per-actor 3 --batch-size 6 --unroll-length 20 \
	  --total-steps 12000 --checkpoint-interval-s 60 \
	  --eval-episodes 2 --name default-$$(date +%Y%m%d-%H%M%S)

# The test suite (what CI runs). Exit code 5 (no tests collected) counts as failure.
test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m launch.bench
