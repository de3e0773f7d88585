"""The worker's maintenance jobs, called as arq calls them, on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service import keys
from worker.consumer import ensure_group
from worker.jobs import forget_dead_consumers

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def consumer_names(redis: Redis) -> set[bytes]:
    consumers = await redis.xinfo_consumers(keys.EVENTS_STREAM, keys.DELIVERY_GROUP)
    return {consumer["name"] for consumer in consumers}


async def test_idle_consumers_with_nothing_pending_are_forgotten(real_redis: Redis) -> None:
    await ensure_group(real_redis)
    await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{}"})
    await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{}"})
    # "dead" read one entry and acknowledged it; "busy" holds one unacknowledged.
    [[_, [(entry, _)]]] = await real_redis.xreadgroup(
        keys.DELIVERY_GROUP, "dead", {keys.EVENTS_STREAM: ">"}, count=1
    )
    await real_redis.xack(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, entry)
    await real_redis.xreadgroup(keys.DELIVERY_GROUP, "busy", {keys.EVENTS_STREAM: ">"}, count=1)

    await forget_dead_consumers({"redis": real_redis})  # neither idle for a day yet
    assert await consumer_names(real_redis) == {b"dead", b"busy"}

    await forget_dead_consumers({"redis": real_redis}, idle_limit_ms=-1)
    assert await consumer_names(real_redis) == {b"busy"}  # pending entries keep it
