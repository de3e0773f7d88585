"""Accounts' lanes on a real Redis: spilling from the events stream, reading back through the
delivery group, deleting what was delivered, reclaiming a dead worker's lane entries."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.ids import entry_id
from service.storage import keys
from service.storage.dead_letters import DeadLetterStore
from service.storage.events import EventStore
from service.storage.lanes import Lanes
from service.storage.status import StatusStore
from service.storage.stream import EventStream
from tests.storage.test_events import event

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ACCOUNT = DEFAULT_ACCOUNT


async def stored(redis: Redis, count: int) -> list[str]:
    """`count` events appended and read by consumer "c1": their entry ids, pending."""
    store = EventStore(redis, maxlen=10_000, dedup_ttl_seconds=60)
    ids = (await store.append("sendgrid", [event(n) for n in range(count)])).stored
    stream = EventStream(redis)
    await stream.ensure_group()
    await stream.read_new("c1", count=count, block_ms=10)
    return [entry_id(event_id) or "" for event_id in ids]


async def pending(redis: Redis, stream: str) -> int:
    return int((await redis.xpending(stream, keys.DELIVERY_GROUP))["pending"])


async def test_a_spill_moves_entries_to_the_lane_and_acknowledges_them(real_redis: Redis) -> None:
    entries = await stored(real_redis, 3)
    lanes = Lanes(real_redis)
    copied = await lanes.spill(keys.EVENTS_STREAM, 0, [(e, ACCOUNT) for e in entries], 1000)
    assert copied == 3
    assert await pending(real_redis, keys.EVENTS_STREAM) == 0  # no longer the stream's
    assert await real_redis.xlen(keys.EVENTS_STREAM) == 3  # still stored there, for reads
    assert await lanes.accounts(0) == [ACCOUNT]
    assert (await StatusStore(real_redis).readings()).in_lanes == 3

    read = await lanes.read(ACCOUNT, "c2", count=2)
    assert [(original, e.provider_event_id) for _, original, e in read.events] == [
        (entries[0], "sg-0"),
        (entries[1], "sg-1"),
    ]
    assert read.events[0][2].id == f"evt_{entries[0]}"  # the event keeps its own id
    assert await lanes.ack(ACCOUNT, [read.events[0][0]]) == 0  # two left
    rest = await lanes.read(ACCOUNT, "c2", count=10)
    assert [original for _, original, _ in rest.events] == [entries[2]]
    # The last ones delivered: the lane is deleted and unlisted.
    assert await lanes.ack(ACCOUNT, [read.events[1][0], rest.events[0][0]]) == 1
    assert not await real_redis.exists(keys.lane(ACCOUNT))
    assert await lanes.accounts(0) == []
    assert (await lanes.read(ACCOUNT, "c2", count=10)).gone


async def test_a_lane_with_entries_read_but_unfinished_is_kept(real_redis: Redis) -> None:
    entries = await stored(real_redis, 2)
    lanes = Lanes(real_redis)
    await lanes.spill(keys.EVENTS_STREAM, 0, [(e, ACCOUNT) for e in entries], 1000)
    read = await lanes.read(ACCOUNT, "c2", count=10)
    assert await lanes.ack(ACCOUNT, [read.events[0][0]]) == 0  # one still in flight
    assert await lanes.accounts(0) == [ACCOUNT]


async def test_an_entry_gone_from_the_stream_is_only_acknowledged(real_redis: Redis) -> None:
    [kept, deleted] = await stored(real_redis, 2)
    await real_redis.xdel(keys.EVENTS_STREAM, deleted)
    lanes = Lanes(real_redis)
    assert await lanes.spill(keys.EVENTS_STREAM, 0, [(kept, ACCOUNT), (deleted, ACCOUNT)], 1) == 1
    assert await pending(real_redis, keys.EVENTS_STREAM) == 0
    read = await lanes.read(ACCOUNT, "c2", count=10)
    assert [original for _, original, _ in read.events] == [kept]


async def test_a_dead_workers_lane_entries_are_reclaimed_with_their_count(
    real_redis: Redis,
) -> None:
    entries = await stored(real_redis, 2)
    lanes = Lanes(real_redis)
    await lanes.spill(keys.EVENTS_STREAM, 0, [(e, ACCOUNT) for e in entries], 1000)
    await lanes.read(ACCOUNT, "dead", count=10)
    taken = await lanes.reclaim(ACCOUNT, "alive", min_idle_ms=0, count=10)
    assert [original for _, original, _ in taken.events] == entries
    assert set(taken.deliveries.values()) == {2}  # handed out twice: to dead, then alive
    assert (await lanes.reclaim(ACCOUNT, "alive", min_idle_ms=60_000, count=10)).events == []


async def test_a_lane_read_as_nothing_is_left_unread_is_empty_not_gone(real_redis: Redis) -> None:
    entries = await stored(real_redis, 1)
    lanes = Lanes(real_redis)
    await lanes.spill(keys.EVENTS_STREAM, 0, [(entries[0], ACCOUNT)], 1000)
    await lanes.read(ACCOUNT, "c2", count=10)
    again = await lanes.read(ACCOUNT, "c2", count=10)
    assert (again.events, again.gone) == ([], False)


async def test_partitioned_lanes_touch_one_slot(partitioned_redis: Redis) -> None:
    """With 16 partitions a spill and an acknowledgement run on the slot-checking Redis."""
    account = "acc_partitioned"
    partition = keys.partitioning().of_account(account)
    stream = keys.in_partition(partition) + "events"  # the partition's stream's slot
    entry = (await partitioned_redis.xadd(stream, {"e": b"{}", "a": account.encode()})).decode()
    await partitioned_redis.xgroup_create(stream, keys.DELIVERY_GROUP, id="0")
    await partitioned_redis.xreadgroup(keys.DELIVERY_GROUP, "c1", {stream: ">"})
    lanes = Lanes(partitioned_redis)
    assert await lanes.spill(stream, partition, [(entry, account)], 1000) == 1
    assert keys.lane(account).startswith(keys.in_partition(partition))
    read = await partitioned_redis.xreadgroup(keys.DELIVERY_GROUP, "c2", {keys.lane(account): ">"})
    lane_id = read[0][1][0][0].decode()
    assert await lanes.ack(account, [lane_id]) == 1
    assert await lanes.accounts(partition) == []


async def test_status_counts_what_waits_in_lanes_and_its_oldest(real_redis: Redis) -> None:
    entries = await stored(real_redis, 3)
    await Lanes(real_redis).spill(keys.EVENTS_STREAM, 0, [(e, ACCOUNT) for e in entries], 1)
    readings = await StatusStore(real_redis).readings()
    assert (readings.in_lanes, readings.oldest_in_lane) == (3, entries[0])
    assert readings.in_progress == 0  # acknowledged in the stream, not delivered


async def test_a_lane_entry_is_set_aside_as_a_dead_letter_once_handed_out_enough(
    real_redis: Redis,
) -> None:
    [entry] = await stored(real_redis, 1)
    lanes = Lanes(real_redis)
    await lanes.spill(keys.EVENTS_STREAM, 0, [(entry, ACCOUNT)], 1000)
    read = await lanes.read(ACCOUNT, "c2", count=1)
    lane_id = read.events[0][0]
    aside = {"consumer": "c2", "reason": "failed", "detail": "boom", "at": "t"}
    # Handed out once: not yet (at least 2 asked); then once more, by a reclaim.
    assert await lanes.dead_letter(ACCOUNT, lane_id, **aside, min_deliveries=2) is None
    await lanes.reclaim(ACCOUNT, "c2", min_idle_ms=0, count=1)
    letter = await lanes.dead_letter(ACCOUNT, lane_id, **aside, min_deliveries=2)
    assert letter is not None
    # It reads as the event it was: its own entry id, its fields.
    [found], _ = await DeadLetterStore(real_redis).page(before=None, limit=10)
    assert (found.reason, found.original, found.lane_entry) == ("failed", entry, lane_id)
    assert found.event_id == f"evt_{entry}"
    assert not await real_redis.exists(keys.lane(ACCOUNT))  # it was the lane's last entry
    assert await lanes.accounts(0) == []


async def test_touching_held_entries_keeps_them_from_a_reclaim_without_counting(
    real_redis: Redis,
) -> None:
    """A worker's held entries (waiting their turn in a slow account's queue) are touched
    well within the claim window: no reclaim takes them, and no delivery is counted."""
    entries = await stored(real_redis, 2)  # read by c1
    stream = EventStream(real_redis)
    await real_redis.xclaim(
        keys.EVENTS_STREAM, keys.DELIVERY_GROUP, "c1", 0, entries, idle=60_000, justid=True
    )
    await stream.touch("c1", entries)
    assert (await stream.reclaim("c2", min_idle_ms=30_000, count=10)).events == []
    rows = await real_redis.xpending_range(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, "-", "+", 10)
    assert [(r["consumer"], r["times_delivered"]) for r in rows] == [(b"c1", 1), (b"c1", 1)]
