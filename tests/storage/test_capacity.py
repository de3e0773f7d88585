"""Holding ingest back short of a full Redis: the rule, and its readings of a real Redis."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import anyio
import fakeredis
import pytest
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ConnectionError, ResponseError

from devtools.redis_cluster import PrivateCluster
from service.storage.capacity import Capacity, memory, over_limit
from tests.conftest import FIXED_NOW


@pytest.mark.parametrize(
    ("used", "maxmemory", "expected"),
    [(899, 1000, False), (900, 1000, True), (2000, 1000, True), (10**12, 0, False)],
)
def test_over_limit(used: int, maxmemory: int, expected: bool) -> None:
    assert over_limit(used, maxmemory, 0.9) is expected


class MovingClock:
    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """To `seconds` after the start (not by)."""
        self.now = FIXED_NOW + timedelta(seconds=seconds)


@pytest.mark.anyio
@pytest.mark.redis
async def test_reads_memory_once_a_second(real_redis: Redis) -> None:
    clock = MovingClock()
    capacity = Capacity(real_redis, limit=0.9, clock=clock)
    assert await capacity.full() is False
    used = int((await real_redis.info("memory"))["used_memory"])
    await real_redis.config_set("maxmemory-policy", "noeviction")
    await real_redis.config_set("maxmemory", used + 1024)
    try:
        clock.advance(0.99)
        assert await capacity.full() is False  # the last reading still stands
        clock.advance(1.0)
        assert await capacity.full() is True
    finally:
        await real_redis.config_set("maxmemory", 0)
    clock.advance(2.0)
    assert await capacity.full() is False


@pytest.mark.anyio
async def test_a_redis_without_info_never_holds_ingest_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # fakeredis has no INFO, like managed services that rename it.
    redis = fakeredis.aioredis.FakeRedis()
    clock = MovingClock()
    capacity = Capacity(redis, limit=0.9, clock=clock)
    assert await capacity.full() is False
    clock.advance(100.0)
    assert await capacity.full() is False
    assert ["cannot read redis memory" in r.getMessage() for r in caplog.records] == [True]
    await redis.aclose()


class ScriptedInfo:
    """A Redis whose INFO answers what the test says next, and records each call."""

    def __init__(self, *answers: dict[str, int] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def info(self, section: str) -> dict[str, int]:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


FULL = {"used_memory": 950, "maxmemory": 1000}
ROOMY = {"used_memory": 100, "maxmemory": 1000}


@pytest.mark.anyio
async def test_a_redis_that_never_answers_holds_no_request_for_long() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = Redis.from_url(f"redis://127.0.0.1:{port}")
    capacity = Capacity(redis, limit=0.9, read_timeout_seconds=0.2, clock=MovingClock())
    try:
        with anyio.fail_after(2):  # two requests, one behind the other's INFO
            assert await asyncio.gather(capacity.full(), capacity.full()) == [False, False]
    finally:
        await redis.aclose()
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()


@pytest.mark.anyio
async def test_a_failed_reading_keeps_the_last_and_tries_again_a_second_later() -> None:
    redis = ScriptedInfo(FULL, ConnectionError("reset"), ResponseError("ERR busy"), ROOMY)
    clock = MovingClock()
    capacity = Capacity(redis, limit=0.9, clock=clock)  # type: ignore[arg-type]
    assert await capacity.full() is True
    clock.advance(1.0)
    assert await capacity.full() is True  # INFO failed: the last reading stands
    clock.advance(2.0)
    assert await capacity.full() is True  # an error, not a missing command: still trying
    clock.advance(3.0)
    assert await capacity.full() is False
    assert redis.calls == 4


@pytest.mark.anyio
async def test_no_maxmemory_field_means_unlimited() -> None:
    redis = ScriptedInfo({"used_memory": 10**12})
    capacity = Capacity(redis, limit=0.9, clock=MovingClock())  # type: ignore[arg-type]
    assert await capacity.full() is False


@pytest.mark.anyio
@pytest.mark.redis
async def test_on_a_cluster_the_fullest_master_counts(
    cluster_redis: RedisCluster, redis_cluster: PrivateCluster
) -> None:
    clock = MovingClock()
    capacity = Capacity(cluster_redis, limit=0.9, clock=clock)
    assert await capacity.full() is False
    assert (await memory(cluster_redis))[1] == 0  # no maxmemory: unlimited
    node = redis_cluster.nodes[2]  # one master only, not the one REDIS_URL names
    info = dict(
        line.split(":", 1)
        for line in redis_cluster.cli(node, "info", "memory").split()
        if ":" in line
    )
    used = int(info["used_memory"])
    redis_cluster.cli(node, "config", "set", "maxmemory-policy", "noeviction")
    redis_cluster.cli(node, "config", "set", "maxmemory", str(used + 1024))
    try:
        clock.advance(1.0)
        assert await capacity.full() is True
        used_now, maxmemory = await memory(cluster_redis)
        assert maxmemory == used + 1024
        assert used_now >= 0.9 * maxmemory
    finally:
        redis_cluster.cli(node, "config", "set", "maxmemory", "0")
    clock.advance(2.0)
    assert await capacity.full() is False
