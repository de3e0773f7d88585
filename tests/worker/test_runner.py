"""The worker's own process host on a Redis Cluster (worker/runner.py), where arq cannot run:
start-up, maintenance at its times, a graceful stop, an outage raised for python -m worker."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
import redis
import redis.exceptions
from redis.asyncio import Redis

from config import Config
from devtools.redis_server import PrivateRedis
from service.storage import keys
from tests.conftest import StartProcess
from tests.worker.test_deliverer import eventually
from worker import runner
from worker.jobs import MAINTENANCE, Periodic
from worker.settings import arq_cron, shutdown

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def worker_ctx(server: PrivateRedis) -> dict[str, Any]:
    return {"config": Config(redis_url=server.url, delivery_timeout=1.0)}


class TestPeriodic:
    def test_next_run_is_the_next_offset_past_a_multiple(self) -> None:
        every_ten = Periodic(lambda ctx: asyncio.sleep(0), every=10, offset=5)
        assert every_ten.next_run(3600.0) == 3605.0
        assert every_ten.next_run(3605.0) == 3615.0
        assert every_ten.next_run(3609.9) == 3615.0
        hourly = Periodic(lambda ctx: asyncio.sleep(0), every=3600, offset=17 * 60)
        assert hourly.next_run(7200.0) == 7200.0 + 17 * 60

    def test_arq_runs_them_at_the_same_times(self) -> None:
        crons = {job.name: job for job in map(arq_cron, MAINTENANCE)}
        assert crons["cron:heartbeat"].second == {0, 15, 30, 45}
        assert crons["cron:heartbeat"].run_at_startup is True
        assert crons["cron:requeue_expired_leases"].second == {5, 15, 25, 35, 45, 55}
        assert crons["cron:trim_events"].second == {8, 18, 28, 38, 48, 58}
        forget = crons["cron:forget_dead_consumers"]
        assert (forget.minute, forget.second) == (17, 0)


class TestServe:
    async def test_starts_runs_maintenance_on_time_and_stops_gracefully(
        self, redis_server: PrivateRedis, real_redis: Redis
    ) -> None:
        ctx = worker_ctx(redis_server)
        runs: list[float] = []

        async def job(ctx: dict[str, Any]) -> None:
            assert "deliverer" in ctx  # after start-up
            runs.append(time.time())

        stop = asyncio.Event()
        serving = asyncio.create_task(
            runner.serve(
                ctx, [*MAINTENANCE[:1], Periodic(job, every=1, at_startup=True)], stop=stop
            )
        )
        await eventually(lambda: _after(lambda: len(runs) >= 3))
        # The heartbeat (MAINTENANCE[0]) ran at start, through the stores start-up made.
        assert await real_redis.exists(keys.WORKER_HEARTBEAT)
        assert all(abs(at - round(at)) < 0.2 for at in runs[1:])  # on the second
        stop.set()
        await asyncio.wait_for(serving, 10)
        assert "http" not in ctx
        assert "store_redis" not in ctx  # shutdown closed the clients
        assert not [key async for key in real_redis.scan_iter("arq:*")]

    async def test_a_failing_job_runs_again_at_its_next_time(
        self, redis_server: PrivateRedis
    ) -> None:
        runs = 0

        async def flaky(ctx: dict[str, Any]) -> None:
            nonlocal runs
            runs += 1
            raise ValueError("a bug")

        stop = asyncio.Event()
        ctx = worker_ctx(redis_server)
        serving = asyncio.create_task(
            runner.serve(ctx, [Periodic(flaky, every=1, at_startup=True)], stop=stop)
        )
        await eventually(lambda: _after(lambda: runs >= 2))
        stop.set()
        await asyncio.wait_for(serving, 10)

    async def test_an_outage_ends_the_run_for_python_m_worker_to_run_again(
        self, redis_server: PrivateRedis
    ) -> None:
        async def outage(ctx: dict[str, Any]) -> None:
            raise redis.exceptions.ConnectionError("Connection closed by server.")

        ctx = worker_ctx(redis_server)
        with pytest.raises(redis.exceptions.ConnectionError):
            await runner.serve(ctx, [Periodic(outage, every=1, at_startup=True)])
        # Nothing was shut down (Redis is gone, as far as it knows): the test does it.
        assert "consumer" in ctx
        await shutdown(ctx)


async def _after(check: Any) -> bool:
    return bool(check())


def test_python_m_worker_runs_without_arq_on_a_cluster(
    slot_checking_server: PrivateRedis, start_process: StartProcess
) -> None:
    """REDIS_CLUSTER=true: our runner, not arq (which a cluster refuses), on a server that
    refuses what a cluster refuses; SIGTERM stops it gracefully."""
    client = redis.Redis.from_url(slot_checking_server.url)
    client.flushall()
    process = start_process(
        "worker", REDIS_URL=slot_checking_server.url, REDIS_CLUSTER="true", EVENT_PARTITIONS="1"
    )
    deadline = time.monotonic() + 20
    while not client.exists(keys.WORKER_HEARTBEAT):
        assert process.poll() is None, process.communicate()[0].decode()
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "worker stopping" in output
    assert not client.keys("arq:*")
    client.close()
