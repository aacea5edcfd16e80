# Quickstart: `make run` (set up + the main job on its defaults), `make test`
# (set up + the whole test suite). `make help` lists every command.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build that lies on these machines' disk. On a GPU cluster, install
# your CUDA build of torch into the venv first, or run `make TORCH_SPEC= ...`
# to keep whatever torch is already installed.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: help setup run test test-fast bench analysis status clean-venv

help:  ## list the commands
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		$(BIN)/python -m pip install -q "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install -q --config-settings editable_mode=compat -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with its test extras

run: $(STAMP)  ## run the main job on its embedded defaults and say where the results are
	$(BIN)/python -m pipeline

test: $(STAMP)  ## run the whole test suite (slow end-to-end tests included)
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## the test suite without the slow end-to-end tests
	$(BIN)/python -m pytest -m "not slow"

clean-venv:  ## remove the virtual environment
	rm -rf $(VENV)
