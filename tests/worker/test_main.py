"""python -m worker: arq's loop is run again after an outage, in the same process."""

from __future__ import annotations

import pytest
import redis.exceptions

import worker.__main__ as main_module


@pytest.fixture(autouse=True)
def process_wide_settings_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() configures logging and the collector for its process: not the test runner's."""
    monkeypatch.setattr(main_module.logging.config, "dictConfig", lambda config: None)
    monkeypatch.setattr(main_module.gc, "freeze", lambda: None)
    monkeypatch.setattr(main_module.gc, "set_threshold", lambda *thresholds: None)


@pytest.mark.parametrize(
    "outage",
    [
        redis.exceptions.ConnectionError("Connection closed by server."),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        # What redis-py raises from a WATCHed pipeline whose connection dropped: arq's
        # job bookkeeping meets it at a Redis restart (found by make soak).
        redis.exceptions.WatchError(
            "A ConnectionError occurred on while watching one or more keys"
        ),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
    ],
)
def test_an_outage_runs_the_worker_again(
    monkeypatch: pytest.MonkeyPatch, outage: Exception
) -> None:
    runs: list[str] = []
    pauses: list[float] = []

    def run_once() -> None:
        runs.append("run")
        if len(runs) < 3:
            raise outage

    monkeypatch.setattr(main_module, "run_once", run_once)
    monkeypatch.setattr(main_module.time, "sleep", pauses.append)
    assert main_module.main() == 0
    assert len(runs) == 3
    assert pauses == [1.0, 2.0]  # backing off between runs


def test_a_bug_is_not_taken_for_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    def run_once() -> None:
        raise redis.exceptions.ResponseError("ERR unknown command")

    monkeypatch.setattr(main_module, "run_once", run_once)
    with pytest.raises(redis.exceptions.ResponseError):
        main_module.main()
