# ftmatrix developer commands. Every target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Trains the four quickstart jobs on CPU (about a minute) and writes the report: the
# figures the README shows (tests/test_readme_demo.py checks that). Two CPU threads on
# any machine: full fine-tuning's gradient sums, and so its figures, depend on how many
# threads share them.
demo: $(STAMP)
	$(BIN)/ftmatrix validate matrices/quickstart.yaml
	OMP_NUM_THREADS=2 $(BIN)/ftmatrix run matrices/quickstart.yaml
	$(BIN)/ftmatrix report matrices/quickstart.yaml --rows lora.enabled --cols train.lr

# Everything, as CI runs it (about 24 minutes on 2 cores; the Slurm tests need
# scripts/slurm-local.sh start, and skip without a cluster).
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# The edit-test loop (a few minutes): every test but those marked slow, which run real
# job processes or train models in-process for longer than a few seconds.
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow"

# ruff (lint, format, complexity <= 15) and mypy over the pure modules (see pyproject).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
