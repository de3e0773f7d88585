"""Holding ingest back short of a full Redis: the rule, and its readings of a real Redis."""

from __future__ import annotations

from datetime import datetime, timedelta

import fakeredis
import pytest
from redis.asyncio import Redis

from service.capacity import Capacity, over_limit
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
