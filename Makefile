# The two commands a researcher needs: `make report` and `make test` (ruff, then pytest).
# Both create .venv if it is absent and (re)install the package when pyproject.toml changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= default
NB ?=
PYTEST_ARGS ?=

.PHONY: report test lint lab bench install clean-reports tensorboard

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

report: install
	$(BIN)/polyspace report --preset $(PRESET) $(if $(NB),--nb $(NB))

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
