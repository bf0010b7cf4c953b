# The two commands of the README quickstart:
#   make run    install into .venv and run the main job on the bundled examples (offline)
#   make test   install into .venv (with test tools) and run lint + the test suite
# .ci/run calls `make test`.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The test install adds the optional extras (semantic dedup's embedding model, Ray Data,
# the Argilla SDK) so that their tests run; `make run` needs none of them. The review tests
# also need Redis and Chromium (Debian: apt-get install redis-server chromium) and
# argilla-server's own virtualenv, which `workbench review serve --install-only` creates.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,semantic,ray,review,dashboard]"
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
