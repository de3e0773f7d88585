"""The test suite, in folders mirroring the code (core, providers, storage, http, worker)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
REPO = TESTS.parent
