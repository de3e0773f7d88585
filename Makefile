# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What deployments install (Heroku's buildpack, the Dockerfile): `make lock` writes it.
LOCK := requirements.txt

.PHONY: run test lint typecheck unit browser screenshots bench soak lock clean

# The locked runtime set first, hash-checked, so that the tests run what ships; then the
# project (editable) and its dev tools. A dependency added to pyproject but not yet locked
# still installs here, and tests/test_lock.py says to run `make lock`.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devtools.run

# Four pytest processes (pytest-xdist), each with its own private Redis and cluster: the
# suite mostly waits on processes it started, so four fit CI's two cores (docs/design.md).
test: $(STAMP) lint typecheck browser
	$(BIN)/python -m pytest -q -n 4

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

# Regenerates $(LOCK) from pyproject's [project] dependencies: pinned, with every wheel's
# hash, resolved for every platform and Python >= 3.11 (markers where they differ). Pins
# that still fit are kept; `make lock LOCK_ARGS=--upgrade` moves everything to the newest.
# It needs only uv, not the installed lock: a lock left conflicted by a merge is mended by
# taking either side (git checkout --theirs requirements.txt) and running `make lock`.
lock: $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --universal --generate-hashes \
		--custom-compile-command 'make lock' --quiet --output-file $(LOCK) $(LOCK_ARGS)

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
