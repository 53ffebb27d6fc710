# The two commands a researcher needs: `make report` and `make test` (ruff, then pytest).
# Both create .venv if it is absent and (re)install the package when pyproject.toml changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= default
NB ?=
PYTEST_ARGS ?=
# make sweep: PARAMS holds the -p NAME VALUES pairs; NAME, JOBS, METRIC and OVERWRITE=1 are optional
PARAMS ?=
NAME ?=
JOBS ?= 1
METRIC ?=
OVERWRITE ?=
# make report: notebooks at once (the studies 01-06, 07 and 08 are independent; on 2 cores two
# one-thread kernels ran the cold default report in 14.5 min, where one two-thread kernel took
# 17.7 min with less zoo training to do)
REPORT_JOBS ?= 2

.PHONY: report test lint lab bench install clean-reports tensorboard sweep

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

report: install
	$(BIN)/polyspace report --preset $(PRESET) --jobs $(REPORT_JOBS) $(if $(NB),--nb $(NB)) $(if $(OVERWRITE),--overwrite) $(PARAMS)

# e.g. make sweep NB=04 PARAMS="-p fusion_lr 1e-3,3e-4 -p fusion_rank 16,32" PRESET=smoke
#   -> reports/$(PRESET)/sweeps/<name>/index.html; rerunning it resumes
sweep: install
	$(BIN)/polyspace sweep $(if $(NB),--nb $(NB)) $(PARAMS) --preset $(PRESET) --jobs $(JOBS) \
		$(if $(NAME),--name $(NAME)) $(if $(METRIC),--metric $(METRIC)) $(if $(OVERWRITE),--overwrite)

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff with the rules in pyproject.toml, on the whole tree (notebooks included); `make test` runs it first
lint: install
	$(BIN)/ruff check .

lab: install
	POLYSPACE_PRESET=$(PRESET) $(BIN)/jupyter lab --notebook-dir=notebooks

# every training run's curves: runs/<preset>/<stage>/.../tensorboard and the zoo's (data/zoo/tensorboard)
TB_PORT ?= 6006
tensorboard: install
	$(BIN)/tensorboard --logdir_spec $(PRESET):runs/$(PRESET),zoo:data/zoo/tensorboard --port $(TB_PORT)

bench: install
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean-reports:
	rm -rf reports/$(PRESET)
