# One command each, from a fresh clone (Python >= 3.10 on PATH):
#   make train             install, then train with the defaults (python -m gan.train)
#   make train ARGS="model=mlp trainer.max_epochs=5"
#   make test              install, then lint (ruff, the import contracts) and run every test tier
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install train test test-fast lint format

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,app]"
	touch $@

train: install
	$(BIN)/python -m gan.train $(ARGS)

lint: install
	$(BIN)/ruff check gan tests bench
	$(BIN)/ruff format --check gan tests bench
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff check --fix gan tests bench
	$(BIN)/ruff format gan tests bench

test: lint
	$(BIN)/pytest -m "slow or not slow" -p no:cacheprovider

test-fast: install
	$(BIN)/pytest -m "not slow"
