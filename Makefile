# Two commands for a fresh clone; each sets up .venv on first use.
#   make run    build the example dataset (offline): examples/ -> out/
#   make test   run the test suite (offline, CPU)
#   make example-card   rebuild the example dataset and copy its card (and plots) into data_cards/

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall when pyproject.toml changes.
CORE_STAMP := $(VENV)/.core-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test bench clean-out example-card

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The pipeline alone (no torch): enough for `make run`.
$(CORE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Everything: models, trainer, test tools (torch is pinned to 2.13.0; see DEPENDENCIES in README).
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(CORE_STAMP)

run: $(CORE_STAMP)
	$(BIN)/storyloom examples --out examples
	$(BIN)/storyloom ingest examples/sources.yaml --out out

# The bundled example card: out/card.md and its plots out/card/*.png, links kept relative.
example-card: run
	cp out/card.md data_cards/example-card.md
	rm -rf data_cards/card
	cp -r out/card data_cards/card

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

bench: $(DEV_STAMP)
	$(BIN)/python bench/keyframes_speed.py
	$(BIN)/python bench/samples_accuracy.py
	$(BIN)/python bench/card_speed.py

clean-out:
	rm -rf out examples
