"""The delivery group's reads of the events stream, on a real Redis (XAUTOCLAIM, XINFO)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.core.ids import entry_id
from service.storage import keys
from service.storage.events import EventStore
from service.storage.stream import EventStream
from tests.storage.test_events import event

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def pending(redis: Redis) -> int:
    summary = await redis.xpending(keys.EVENTS_STREAM, keys.DELIVERY_GROUP)
    return int(summary["pending"])


async def test_ensure_group_is_idempotent_and_reads_from_the_first_entry(
    real_redis: Redis,
) -> None:
    store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)
    stored = (await store.append("sendgrid", [event(1)])).stored
    stream = EventStream(real_redis)
    await stream.ensure_group()
    await stream.ensure_group()
    read = await stream.read_new("c1", count=10, block_ms=10)
    assert [(e, ev.provider_event_id, ev.id) for e, ev in read.events] == [
        (entry_id(stored[0]), "sg-1", stored[0])
    ]


async def test_entries_that_are_not_events_come_apart(real_redis: Redis) -> None:
    stream = EventStream(real_redis)
    await stream.ensure_group()
    store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)
    await store.append("sendgrid", [event(1)])
    no_field = (await real_redis.xadd(keys.EVENTS_STREAM, {"x": b"1"})).decode()
    not_json = (await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{not json"})).decode()
    await store.append("sendgrid", [event(2)])
    read = await stream.read_new("c1", count=10, block_ms=10)
    assert [ev.provider_event_id for _, ev in read.events] == ["sg-1", "sg-2"]
    assert read.not_events == [no_field, not_json]
    await stream.ack(read.not_events)
    assert await pending(real_redis) == 2  # the two events, still to deliver


async def test_an_empty_read_waits_then_returns_nothing(real_redis: Redis) -> None:
    stream = EventStream(real_redis)
    await stream.ensure_group()
    read = await stream.read_new("c1", count=10, block_ms=10)
    assert (read.events, read.not_events) == ([], [])


async def test_reclaim_takes_over_idle_entries_and_reports_deleted_ones(
    real_redis: Redis,
) -> None:
    stream = EventStream(real_redis)
    await stream.ensure_group()
    store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)
    stored = (await store.append("sendgrid", [event(n) for n in range(3)])).stored
    await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{not json"})
    await stream.read_new("dead", count=10, block_ms=10)
    gone = entry_id(stored[1])
    await real_redis.xdel(keys.EVENTS_STREAM, gone)  # deleted by hand while pending

    # Not idle long enough: nothing is taken over, but what has gone is reported (once).
    early = await stream.reclaim("alive", min_idle_ms=60_000, count=10)
    assert (early.events, early.not_events, early.deleted) == ([], [], [gone])
    read = await stream.reclaim("alive", min_idle_ms=0, count=10)
    assert [e for e, _ in read.events] == [entry_id(stored[0]), entry_id(stored[2])]
    assert len(read.not_events) == 1
    assert read.deleted == []


async def test_ack_goes_through_the_pipeline(real_redis: Redis) -> None:
    stream = EventStream(real_redis)
    await stream.ensure_group()
    store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)
    await store.append("sendgrid", [event(n) for n in range(3)])
    read = await stream.read_new("c1", count=10, block_ms=10)
    assert await stream.ack([e for e, _ in read.events]) == 3
    assert await pending(real_redis) == 0


async def test_forget_dead_consumers_keeps_those_with_entries_pending(
    real_redis: Redis,
) -> None:
    stream = EventStream(real_redis)
    await stream.ensure_group()
    store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)
    await store.append("sendgrid", [event(n) for n in range(2)])
    done = await stream.read_new("done", count=1, block_ms=10)
    await stream.ack([e for e, _ in done.events])
    await stream.read_new("busy", count=1, block_ms=10)
    assert await stream.forget_dead_consumers(24 * 3600 * 1000) == []
    assert await stream.forget_dead_consumers(-1) == ["done"]
