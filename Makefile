# Everything a user runs. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/default.yaml
EXPERIMENT ?=
ARGS ?=
# An experiment is applied on top of configs/experiment/baseline.yaml.
CONFIGS := --config $(CONFIG) $(if $(EXPERIMENT),--config configs/experiment/baseline.yaml \
	$(if $(filter-out baseline,$(EXPERIMENT)),--config configs/experiment/$(EXPERIMENT).yaml))

.DEFAULT_GOAL := help
EXPERIMENTS ?=
DECIDE ?=
comma := ,
SEEDS ?= $(if $(DECIDE),0$(comma)1$(comma)2,0$(comma)1$(comma)2$(comma)3$(comma)4)
MAX_SEEDS ?= 12
MARGIN ?= 0.01
ERROR ?= fdr
CLAIMS ?= configs/lab/lecture.yaml
BASELINE ?=
VARY ?= both
JOBS ?=
DATASET ?=
NAME ?= default
SPACE ?= configs/search/default.yaml
TRIALS ?= 20
STORAGE ?=
REPLICATE ?=
SWEEP ?= data.train_size=100,200,500,1000,3500
CURVE_SEEDS ?= 0,1,2
PAGE ?=

.PHONY: help install train lr-find test test-all lint tensorboard compare compare-report curve search prepare bench bench-quick gpu-check docs docs-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: CONFIG=path.yaml EXPERIMENT=name ARGS='--trainer.max_epochs=5 ...'"
	@echo "             EXPERIMENTS=baseline,dropout SEEDS=0,1,2 VARY=both|data|init JOBS=2 DATASET=mnist NAME=study (make compare)"
	@echo "             DECIDE=1 MAX_SEEDS=12 MARGIN=0.01 ERROR=fdr|fwer CLAIMS=configs/lab/lecture.yaml (make compare: seeds until decided)"
	@echo "             BASELINE=my/baseline.yaml (make compare, make curve: instead of configs/experiment/baseline.yaml)"
	@echo "             STORAGE=postgresql://... NAME=study (make compare on several machines, make compare-report)"
	@echo "             SPACE=configs/search/default.yaml TRIALS=20 STORAGE=postgresql://... NAME=study (make search)"

install: $(VENV)/.installed ## make .venv and install the project with its dev tools and the search's database drivers (idempotent)

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

train: install ## fit the model, test the best checkpoint, print a summary (CONFIG=, EXPERIMENT=, ARGS=)
	$(BIN)/project fit $(CONFIGS) $(ARGS)

prepare: install ## convert the data set into LitData chunks for data.stream (once; CONFIG=, ARGS=), data/stream/
	$(BIN)/project prepare $(CONFIGS) $(ARGS)

lr-find: install ## learning-rate range test: suggests a rate, plots loss vs rate in logs/<name>-lr_find/ (CONFIG=, EXPERIMENT=, ARGS=)
	$(BIN)/project lr-find $(CONFIGS) $(ARGS)

test: install ## run the test suite (slow tests excluded)
	$(BIN)/python -m pytest -q

test-all: install ## run every test: the default suite, then the slow ones one at a time (they time and use ports)
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q -m slow -n 0

lint: install ## ruff over the package and the tests (settings in pyproject.toml)
	$(BIN)/ruff check project tests

compare: install ## run experiments over seeds, write logs/compare/NAME/ (EXPERIMENTS=a,b SEEDS=0,1,2 VARY=both JOBS= DATASET= NAME= REPLICATE=1; DECIDE=1: the lecture's claims, seeds until decided, MAX_SEEDS=12 MARGIN=0.01 CLAIMS=; STORAGE=postgresql://...: one worker of a study shared by every machine)
	$(BIN)/python -m project.lab --seeds $(SEEDS) --vary $(VARY) --name $(NAME) $(if $(JOBS),--jobs $(JOBS)) \
		$(if $(EXPERIMENTS),--experiments $(EXPERIMENTS)) $(if $(DATASET),--dataset $(DATASET)) \
		$(if $(REPLICATE),--replicate) $(if $(DECIDE),--until-decided --max-seeds $(MAX_SEEDS) --margin $(MARGIN) \
		--error $(ERROR) --claims $(CLAIMS)) $(if $(BASELINE),--baseline $(BASELINE)) $(if $(STORAGE),--storage $(STORAGE)) \
		$(if $(ARGS),-- $(ARGS))

compare-report: install ## a shared study's report from its storage alone, on any machine (NAME= STORAGE=postgresql://...)
	$(BIN)/python -m project.lab --report --name $(NAME) --storage $(STORAGE)

curve: install ## a learning or dose curve: the baseline over one setting's values, write logs/compare/curve_NAME/ (SWEEP= SEEDS=0,1,2)
	$(BIN)/python -m project.lab --sweep $(SWEEP) --seeds $(CURVE_SEEDS) --name curve_$(NAME) $(if $(JOBS),--jobs $(JOBS)) \
		$(if $(BASELINE),--baseline $(BASELINE)) $(if $(ARGS),-- $(ARGS))

search: install ## Optuna search over a YAML space, write logs/search/NAME/ (SPACE= TRIALS=20 NAME= STORAGE= ARGS=)
	$(BIN)/python -m project.search --space $(SPACE) --trials $(TRIALS) --name $(NAME) \
		$(if $(STORAGE),--storage $(STORAGE)) $(if $(ARGS),-- $(ARGS))

bench: install ## measure speed as ratios to hand-written references, write logs/bench/ (several minutes)
	$(BIN)/python -m project.bench

bench-quick: install ## the benchmark on smaller sizes (a few minutes)
	$(BIN)/python -m project.bench --quick

gpu-check: install ## run the GPU paths for real on this machine's GPU, once (a few minutes), write logs/gpu_check/report.txt
	$(BIN)/python -m project.run.gpu_check

tensorboard: install ## serve logs/ on http://localhost:6006
	$(BIN)/tensorboard --logdir logs --port 6006

clean: ## remove logs, caches and build leftovers (keeps .venv)
	rm -rf logs/* .pytest_cache build *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

docs: install ## rerun what every figure in README.md and docs/ came from, rewrite the marked blocks (PAGE=readme|lab|train ...; all: about an hour)
	$(BIN)/python -m project.docs $(if $(PAGE),--page $(PAGE))

docs-check: install ## fail where a marked figure in README.md or docs/ differs from what its stored sources render (CI)
	$(BIN)/python -m project.docs --check
