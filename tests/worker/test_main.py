"""python -m worker: arq's loop is run again after an outage, in the same process."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
import redis.exceptions
from arq import func
from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis

import worker.__main__ as main_module
from devtools.redis_server import PrivateRedis


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


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_job_running_at_the_signal_still_lets_shutdown_run(
    real_redis: Redis, redis_server: PrivateRedis
) -> None:
    """SIGTERM while a job runs (a maintenance job, often): on_shutdown, where the consumer
    finishes its in-flight deliveries, still runs and close() returns. arq's own close()
    raised CancelledError there (a suite run caught the worker exiting 1 on SIGTERM)."""
    started, shut_down = asyncio.Event(), asyncio.Event()

    async def long_job(ctx: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        shut_down.set()

    worker = main_module.GracefulWorker(
        functions=[func(long_job, name="long_job")],  # type: ignore[arg-type]
        redis_settings=RedisSettings.from_dsn(redis_server.url),
        on_shutdown=on_shutdown,
        handle_signals=False,
        poll_delay=0.01,
    )
    pool = await create_pool(RedisSettings.from_dsn(redis_server.url))
    await pool.enqueue_job("long_job")
    main = asyncio.create_task(worker.async_run())
    await asyncio.wait_for(started.wait(), 10)
    worker.handle_sig(signal.SIGTERM)  # what arq does on the signal: cancels the running job
    await asyncio.gather(main, return_exceptions=True)
    await asyncio.wait_for(worker.close(), 10)
    assert shut_down.is_set()
    await pool.aclose()
