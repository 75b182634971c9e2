# Everything a user runs. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/default.yaml
EXPERIMENT ?=
ARGS ?=
CONFIGS := --config $(CONFIG) $(if $(EXPERIMENT),--config configs/experiment/$(EXPERIMENT).yaml)

.DEFAULT_GOAL := help
.PHONY: help install train test test-all tensorboard clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: CONFIG=path.yaml EXPERIMENT=name ARGS='--trainer.max_epochs=5 ...'"

install: $(VENV)/.installed ## make .venv and install the project with its dev tools (idempotent)

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

train: install ## fit the model, test the best checkpoint, print a summary (CONFIG=, EXPERIMENT=, ARGS=)
	$(BIN)/project fit $(CONFIGS) $(ARGS)

test: install ## run the test suite (slow tests excluded)
	$(BIN)/python -m pytest -q

test-all: install ## run every test, slow ones included
	$(BIN)/python -m pytest -q -m ''

tensorboard: install ## serve logs/ on http://localhost:6006
	$(BIN)/tensorboard --logdir logs --port 6006

clean: ## remove logs, caches and build leftovers (keeps .venv)
	rm -rf logs/* .pytest_cache build *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
