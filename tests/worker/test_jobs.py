"""The worker's maintenance jobs, called as arq calls them, on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from config import Config
from service.storage import keys
from service.storage.events import EventStore
from service.storage.stream import EventStream
from tests.storage.test_events import consume, event
from worker.jobs import forget_dead_consumers, trim_events
from worker.settings import Stores

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def consumer_names(redis: Redis) -> set[bytes]:
    consumers = await redis.xinfo_consumers(keys.EVENTS_STREAM, keys.DELIVERY_GROUP)
    return {consumer["name"] for consumer in consumers}


async def test_idle_consumers_with_nothing_pending_are_forgotten(real_redis: Redis) -> None:
    stores = Stores.create(real_redis, Config())
    await stores.stream.ensure_group()
    await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{}"})
    await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{}"})
    # "dead" read one entry and acknowledged it; "busy" holds one unacknowledged.
    [[_, [(entry, _)]]] = await real_redis.xreadgroup(
        keys.DELIVERY_GROUP, "dead", {keys.EVENTS_STREAM: ">"}, count=1
    )
    await real_redis.xack(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, entry)
    await real_redis.xreadgroup(keys.DELIVERY_GROUP, "busy", {keys.EVENTS_STREAM: ">"}, count=1)

    await forget_dead_consumers({"stores": stores})  # neither idle for a day yet
    assert await consumer_names(real_redis) == {b"dead", b"busy"}

    await forget_dead_consumers({"stores": stores}, idle_limit_ms=-1)
    assert await consumer_names(real_redis) == {b"busy"}  # pending entries keep it


async def test_trim_events_frees_the_delivered_backlog_without_appends(
    real_redis: Redis,
) -> None:
    # Ingest is held back while Redis is nearly full, so no append trims: the worker must.
    backlog = EventStore(real_redis, maxlen=10**6, dedup_ttl_seconds=60)  # no trims
    await EventStream(real_redis).ensure_group()
    for start in range(0, 30_000, 1000):
        await backlog.append("sendgrid", [event(n) for n in range(start, start + 1000)])
    stores = Stores.create(real_redis, Config(events_maxlen=1000, dedup_ttl_seconds=60))
    ctx = {"redis": real_redis, "stores": stores}
    await trim_events(ctx)
    assert await real_redis.xlen(keys.EVENTS_STREAM) == 30_000  # nothing delivered yet
    await consume(real_redis, keep=set())
    await trim_events(ctx)  # 29,000 past maxlen: three plans and scripts, a fourth plan empty
    assert 1000 <= await real_redis.xlen(keys.EVENTS_STREAM) <= 1200
