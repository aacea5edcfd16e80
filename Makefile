# Quickstart: `make run` (set up + the main job on its defaults), `make test`
# (set up + the whole test suite). `make help` lists every command. Nothing
# here writes outside the clone and temporary folders, except `make
# test-system` (LCM_TEST_SYSTEM=1), which installs R, Slurm, munge and MariaDB
# with apt-get as root so that the tests needing them run too.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build that lies on these machines' disk. On a GPU cluster, install
# your CUDA build of torch into the venv first, or run `make TORCH_SPEC= ...`
# to keep whatever torch is already installed.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: help setup run test test-system test-fast lint format bench bench-study status clean-venv

help:  ## list the commands
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-12s %s\n", $$1, $$2}'

# Setup prints one line per step; pip's own output goes to $(SETUP_LOG) and is
# shown only when a step fails.
SETUP_LOG := $(VENV)/setup.log
PIP := $(BIN)/python -m pip --disable-pip-version-check --no-input
define step
	@echo "setup: $(1)"
	@$(2) >>$(SETUP_LOG) 2>&1 || { echo "setup: FAILED: $(1); the end of $(SETUP_LOG):"; tail -n 25 $(SETUP_LOG); exit 1; }
endef

$(BIN)/python:
	@echo "setup: creating the virtual environment $(VENV)/ with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(call step,upgrading pip in $(VENV)/,$(PIP) install --upgrade pip)
	@if [ -z "$(TORCH_SPEC)" ] || $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "setup: torch: keeping $$($(BIN)/python -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'none (pyproject asks for torch>=2.2)')"; \
	else \
		echo "setup: installing $(TORCH_SPEC) (the CPU build; see 'Installing on a GPU cluster' in README.md)"; \
		$(PIP) install "$(TORCH_SPEC)" >>$(SETUP_LOG) 2>&1 || { echo "setup: FAILED; the end of $(SETUP_LOG):"; tail -n 25 $(SETUP_LOG); exit 1; }; \
	fi
	$(call step,installing the project (editable) with its dependencies and test extras,$(PIP) install -e ".[test]")
	@touch $(STAMP)
	@echo "setup: done. Commands: $(BIN)/lcm --help (or source $(VENV)/bin/activate), make help; pip's log: $(SETUP_LOG)"

setup: $(STAMP)  ## create .venv and install the project with its test extras

# The main job: a small complete study (one replicate of each of the 25 design
# cells, 20 epochs, at the default data sizes; measured on a quiet 2-core VM after setup:
# 4 min 34 s in all, sweep + analysis (5 s) + health table; the maps move by epoch 20), then its
# analysis and the training-health table (updates per epoch, test accuracy, map
# movement). Relaunching skips finished runs. OUTPUTS, SEEDS and EPOCHS are overridable.
OUTPUTS ?= outputs
SEEDS ?= range(0,25)
EPOCHS ?= 20

bench: $(STAMP)  ## benchmarks (bench/): KNN vs scikit-learn, runs per hour, analysis; each prints the machine
	$(BIN)/python bench/bench_knn.py
	$(BIN)/python bench/bench_runs.py
	$(BIN)/python bench/bench_analysis.py

bench-study: $(STAMP)  ## the 25-cell study + analysis timed end to end, 750-run extrapolation (~30 min on 2 free cores)
	$(BIN)/python bench/bench_study.py

run: $(STAMP)  ## run the default study + analysis and say where the results are
	$(BIN)/python -m pipeline -m 'seed=$(SEEDS)' trainer.epochs=$(EPOCHS) paths.root=$(OUTPUTS)
	$(BIN)/python -m analysis --root $(OUTPUTS) --study headline --out $(OUTPUTS)/analysis
	$(BIN)/python -m analysis.health --root $(OUTPUTS) --study headline
	@echo
	@echo "run records:  $(OUTPUTS)/headline/runs/<run_id>/  (python -m pipeline.status --root $(OUTPUTS))"
	@echo "analysis:     $(OUTPUTS)/analysis/report.html  (read this first), metrics.parquet, *.csv, figures"

status:  ## how far the study under OUTPUTS is, per design cell
	$(BIN)/python -m pipeline.status --root $(OUTPUTS)

# The tests that need system software (a real Slurm cluster, R with lme4) run
# where it is installed and skip, saying why, where it is not. LCM_TEST_SYSTEM=1
# installs it first (apt-get, root; what CI's .ci/run does); 0 turns the Slurm
# tests off. Either way the test cluster is private and temporary (tests/slurm_cluster.py).
LCM_TEST_SYSTEM ?=
export LCM_TEST_SYSTEM

test: lint  ## lint, then the whole test suite; installs nothing outside .venv (Slurm/R tests run where installed)
	@if [ "$(LCM_TEST_SYSTEM)" = 1 ]; then bash .ci/install-r.sh && bash slurm/cluster/install.sh; fi
	$(BIN)/python -m pytest

test-system:  ## make test, installing R, Slurm, munge and MariaDB first (apt-get, as root; CI does this)
	$(MAKE) test LCM_TEST_SYSTEM=1

lint: $(STAMP)  ## ruff (lint, complexity, formatting), mypy (types) and function length (80 lines) of pipeline/, analysis/, hydra_plugins/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python tools/function_size.py

format: $(STAMP)  ## ruff: format the code and apply the safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-fast: $(STAMP)  ## the test suite without the slow end-to-end tests
	$(BIN)/python -m pytest -m "not slow"

clean-venv:  ## remove the virtual environment
	rm -rf $(VENV)
