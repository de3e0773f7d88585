# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit browser screenshots bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devtools.run

test: $(STAMP) lint typecheck browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not redis'

# The portal's browser tests drive the system Chromium: installed here when missing and this
# user can (root, apt-get), else those tests skip (and fail under CI=true).
browser: $(STAMP)
	$(BIN)/python -m devtools.browser

# Runs the browser tests and keeps their screenshots in docs/portal/ (docs/portal.md).
screenshots: $(STAMP) browser
	PORTAL_SCREENSHOTS=docs/portal $(BIN)/python -m pytest -q tests/test_portal_browser.py

bench: $(STAMP)
	$(BIN)/python -m bench

# Five minutes of ingest under chaos, then a drain: about six minutes (docs/operations.md).
soak: $(STAMP)
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
