# Two commands on a fresh machine: `make sweep` and `make test`. Everything else is a building block.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pinned: on CPU machines this resolves to the local CPU wheel; a looser pin pulls GBs of CUDA packages.
TORCH  ?= torch==2.13.0
EXTRAS ?= dev
# the default sweep's experiments, one multirun each under one label: arith (both architectures) and tally
EXP    ?= default default_tally
STAMP  := $(VENV)/.installed-$(EXTRAS)

.PHONY: help setup data test test-all lint sweep sweep-slurm tiny tables plots paper clean
.DEFAULT_GOAL := help

help:  ## this list
	@echo "make sweep              the default sweep (arith on both embedded models, tally beside it), then tables and plots"
	@echo "make sweep SWEEP=again  the same sweep again under a new label (new run folders) to compare with"
	@echo "make test               the test suite without the slow tests (make test-all: with them)"
	@echo "make tables / plots     results/tables, results/plots of the latest sweep (SWEEP=<label>: that one)"
	@echo "make paper              the published Fast-dLLM/SSD numbers and d3LLM's AUP leaderboard beside matching runs"
	@echo "make sweep-slurm        the sweep as a Slurm job array (ARGS='hydra.launcher.partition=...')"
	@echo "make setup / data / tiny / lint / clean   building blocks (EXP=<experiments>, ARGS=<overrides>)"
	@echo "one job: .venv/bin/python -m ssd.run limit=10   (the base config: the embedded model, seconds)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	@touch $@

data: setup
	$(BIN)/python -m ssd.benchmarks.data

tiny: setup
	$(BIN)/python scripts/make_tiny_checkpoints.py

test: setup data
	$(BIN)/python -m pytest -q -m "not slow"

test-all: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check ssd tests scripts
	$(BIN)/ruff format --check ssd tests scripts

# The sweep, then the tables (with AUP) and plots (Pareto, projected speedup, AUP) of its runs. SWEEP=<label>
# runs it under another label: the label is part of each run's identity, so that makes new run folders.
# EXP's first experiment runs in the foreground and the others beside it, one process each (every job is
# one thread: on two cores, arith and tally one core each), logging to outputs/sweep-<experiment>.log; their
# jobs' tokens/s may be marked contended (†), their paired speedups hold. JOBS=1 runs them one after another.
JOBS ?= 2
SWEEP_ARGS = $(if $(SWEEP),sweep=$(SWEEP)) $(ARGS)
sweep: setup data tiny
	@set -e; first=$(firstword $(EXP)); rest="$(wordlist 2,99,$(EXP))"; pids=; \
	if [ "$(JOBS)" != 1 ]; then mkdir -p outputs; for exp in $$rest; do \
	  echo "sweep: $$exp runs beside $$first (log: outputs/sweep-$$exp.log)"; \
	  $(BIN)/python -m ssd.run -m +experiment=$$exp $(SWEEP_ARGS) > outputs/sweep-$$exp.log 2>&1 & pids="$$pids $$!"; done; rest=; fi; \
	$(BIN)/python -m ssd.run -m +experiment=$$first $(SWEEP_ARGS) || { [ -z "$$pids" ] || kill $$pids; exit 1; }; \
	for exp in $$rest; do $(BIN)/python -m ssd.run -m +experiment=$$exp $(SWEEP_ARGS); done; \
	for p in $$pids; do wait $$p || { echo "sweep: an experiment beside $$first failed, see outputs/"; exit 1; }; done; \
	for exp in $(wordlist 2,99,$(EXP)); do [ "$(JOBS)" = 1 ] || grep '^summary:' outputs/sweep-$$exp.log || true; done
	$(BIN)/python -m ssd.report.tables $(if $(SWEEP),--sweep $(SWEEP))
	$(BIN)/python -m ssd.report.plots $(if $(SWEEP),--sweep $(SWEEP))

# On a Slurm login node: one job array, one GPU per job (conf/hydra/launcher/submitit_slurm.yaml), e.g.
# ARGS='hydra.launcher.partition=gpu'. Rerunning it after an interruption skips or resumes each job.
sweep-slurm: setup data tiny
	set -e; for exp in $(EXP); do \
	  $(BIN)/python -m ssd.run -m +experiment=$$exp hydra/launcher=submitit_slurm $(ARGS); done

# Reports derived from the run folders in results/runs alone: the latest sweep's (SWEEP=<label>: that one).
tables: setup
	$(BIN)/python -m ssd.report.tables $(if $(SWEEP),--sweep $(SWEEP))

plots: setup
	$(BIN)/python -m ssd.report.plots $(if $(SWEEP),--sweep $(SWEEP))

paper: setup
	$(BIN)/python -m ssd.report.paper $(if $(SWEEP),--sweep $(SWEEP))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
