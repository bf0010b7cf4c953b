# The two commands of the README quickstart:
#   make run    install into .venv and run the main job on the bundled examples (offline)
#   make test   install into .venv (with test tools) and run lint + the test suite
# .ci/run calls `make test`.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?=

.PHONY: setup run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The install adds the optional extras (semantic dedup's embedding model, Ray Data, the
# Argilla SDK, the dashboard, fine-tuning: `make run` ends with a tiny CPU fine-tune) so that
# their tests run. torch comes first and pinned: the finetune extra leaves torch unpinned, so
# pip keeps this one instead of pulling a newer CUDA build. On this project's machines
# torch==2.13.0 is a local CPU build; elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu
# for the CPU build (CI has no GPU), or leave it empty on a GPU machine. The review tests also need Redis and Chromium
# (Debian: apt-get install redis-server chromium) and argilla-server's own virtualenv,
# which `workbench review serve --install-only` creates.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev,semantic,ray,review,dashboard,finetune,evaluate]"
	$(BIN)/workbench review serve --install-only
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/workbench run

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) workbench-store .pytest_cache
