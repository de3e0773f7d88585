"""service.storage.status: the worker's heartbeat and what /api/status reads, on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.core.status import unread
from service.storage import keys
from service.storage.events import EventStore
from service.storage.status import StatusStore
from service.storage.stream import EventStream
from tests.storage.test_events import ACME, OTHER, event, partition_of

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_a_heartbeat_is_read_back_until_it_expires(real_redis: Redis) -> None:
    status = StatusStore(real_redis)
    assert (await status.readings()).heartbeat is None
    await status.beat("2026-03-03T10:00:00Z", ttl_seconds=60)
    assert (await status.readings()).heartbeat == "2026-03-03T10:00:00Z"
    assert 0 < await real_redis.ttl(keys.WORKER_HEARTBEAT) <= 60


async def test_an_empty_redis_reads_as_nothing_stored(real_redis: Redis) -> None:
    readings = await StatusStore(real_redis).readings()
    assert (readings.stored, readings.group_exists, readings.in_progress) == (0, False, 0)
    assert (readings.last_entry, readings.last_delivered, readings.unreadable) == (None, None, 0)
    assert await StatusStore(real_redis).ping()


async def test_several_partitions_streams_read_as_one(partitioned_redis: Redis) -> None:
    """Counts summed over every partition's stream; the backlog is each stream's unread."""
    store = EventStore(partitioned_redis, maxlen=10_000, dedup_ttl_seconds=60)
    await store.append("sendgrid", [event(n, account_id=ACME) for n in range(3)])
    await store.append("sendgrid", [event(n, account_id=OTHER) for n in range(3, 8)])
    acme = EventStream(partitioned_redis, partition=partition_of(ACME))
    other = EventStream(partitioned_redis, partition=partition_of(OTHER))
    for stream in (acme, other):
        await stream.ensure_group()
    await acme.read_new("w", count=2, block_ms=1)  # two in progress, one unread
    await other.read_new("w", count=5, block_ms=1)  # five in progress
    readings = await StatusStore(partitioned_redis).readings()
    assert (readings.stored, readings.in_progress, readings.dead_letters) == (8, 7, 0)
    assert unread(readings) == 1  # ACME's third; OTHER's all read
    [(entry, _)] = (await other.reclaim("w2", min_idle_ms=0, count=1)).events
    await other.dead_letter(entry, consumer="w2", reason="failed", detail="x", at="2026-03-03")
    readings = await StatusStore(partitioned_redis).readings()
    assert (readings.in_progress, readings.dead_letters) == (6, 1)
    assert readings.oldest_in_progress is not None
