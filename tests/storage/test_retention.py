"""Retention on a real Redis: the prune deletes only what retention lets go, checked again
in its script, and runs in the background at most once an interval per webhook."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from service.core.accounts import DEFAULT_ACCOUNT
from service.storage import keys
from service.storage.deliveries import DeliveryStore
from service.storage.lanes import Lanes
from service.storage.retention import DeliveryPruner
from tests.storage.test_deliveries import LEASE, claim, delivery
from tests.storage.test_events import make_group
from tests.worker.test_deliverer import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def finish(
    store: DeliveryStore, id_: str, *, now: int, verdict: str, retention_count: int = 100
) -> None:
    await claim(store, "a", now=now, id_=id_)
    await store.record(
        await delivery(store, id_), owner="a", now_ms=now, verdict=verdict,
        disable_after_ms=10**9, retention_count=retention_count, retention_seconds=3600,
    )  # fmt: skip


async def test_old_finished_deliveries_go_pending_ones_stay(real_redis: Redis) -> None:
    store = DeliveryStore(real_redis)
    await claim(store, "a", now=0, id_="dlv_0-0_1")  # pending for ever
    for n in range(1, 4):
        await finish(store, f"dlv_{n}-0_1", now=n * 1000, verdict="failed")
    # At 1 h 2.5 s, those created at 1 s and 2 s are past the hour; 3 s is not.
    went = await DeliveryPruner(real_redis).prune(
        1, now_ms=3_602_500, retention_count=100, retention_seconds=3600
    )
    assert went == 2
    listed, _ = await store.page(1, status=None, before=None, limit=10)
    assert [d.id for d in listed] == ["dlv_3-0_1", "dlv_0-0_1"]
    assert not await real_redis.exists(keys.delivery_attempts("dlv_1-0_1"))
    assert await real_redis.zcard(keys.deliveries(1, "failed")) == 1


async def test_a_stale_plan_deletes_only_what_retention_lets_go_now(real_redis: Redis) -> None:
    store = DeliveryStore(real_redis)
    ids = [f"dlv_{n}-0_1" for n in range(5)]
    for n, id_ in enumerate(ids):
        await finish(store, id_, now=n, verdict="failed")
    pruner = DeliveryPruner(real_redis)
    plan = await pruner.plan(1, now_ms=10, retention_count=2, retention_seconds=3600)
    assert plan is not None
    assert [m.split(":")[1] for m in plan.members] == ids[:3]
    # Before the script runs, manual retries of the oldest and the newest: both pending
    # now, and with one failed fewer, 2 is among the newest 2 failed again.
    for id_ in (ids[0], ids[4]):
        assert await store.requeue(await delivery(store, id_), owner="m", now_ms=11,
                                   lease_ms=LEASE)  # fmt: skip
    assert await pruner.apply(plan) == 1
    listed, _ = await store.page(1, status=None, before=None, limit=10)
    assert [d.id for d in listed] == [ids[4], ids[3], ids[2], ids[0]]
    failed, _ = await store.page(1, status="failed", before=None, limit=10)
    assert [d.id for d in failed] == [ids[3], ids[2]]
    assert not await real_redis.exists(keys.delivery(ids[1]), keys.delivery_attempts(ids[1]))


async def test_a_webhook_is_pruned_at_most_once_an_interval(real_redis: Redis) -> None:
    store = DeliveryStore(real_redis, prune_interval_seconds=60)
    ids = [f"dlv_{n}-0_1" for n in range(6)]
    for n, id_ in enumerate(ids[:4]):
        await finish(store, id_, now=n, verdict="succeeded", retention_count=3)

    async def first_pruned() -> bool:
        return not await real_redis.exists(keys.delivery(ids[0]))

    await eventually(first_pruned)
    for n, id_ in enumerate(ids[4:], start=4):
        await finish(store, id_, now=n, verdict="succeeded", retention_count=3)
    await asyncio.sleep(0.2)
    assert await real_redis.zcard(keys.deliveries(1, "succeeded")) == 5  # not yet
    await store.drain()  # the next prune, without waiting out the interval
    assert await real_redis.zcard(keys.deliveries(1, "succeeded")) == 3


async def test_deliveries_of_entries_the_group_still_needs_stay_whatever_retention_says(
    real_redis: Redis,
) -> None:
    # A worker read entries, delivered them and crashed before acknowledging: the entries
    # come back to another worker after the reclaim window, and their delivery records are
    # what says "already delivered". Retention (count 1 here) must not take them first.
    await make_group(real_redis)
    entries = [(await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{}"})).decode() for _ in range(6)]
    await real_redis.xreadgroup(keys.DELIVERY_GROUP, "done", {keys.EVENTS_STREAM: ">"}, count=2)
    await real_redis.xack(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, *entries[:2])
    await real_redis.xreadgroup(keys.DELIVERY_GROUP, "crashed", {keys.EVENTS_STREAM: ">"}, count=2)
    store = DeliveryStore(real_redis)
    ids = [f"dlv_{entry}_1" for entry in entries[:4]]  # two acknowledged, two still pending
    for n, id_ in enumerate(ids):
        await finish(store, id_, now=n, verdict="succeeded")
    pruner = DeliveryPruner(real_redis)
    went = await pruner.prune(1, now_ms=10, retention_count=1, retention_seconds=3600)
    assert went == 2  # only the acknowledged entries' deliveries
    kept, _ = await store.page(1, status="succeeded", before=None, limit=10)
    assert [d.id for d in kept] == [ids[3], ids[2]]
    # Acknowledged at last: now retention applies to them too.
    await real_redis.xack(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, *entries[2:4])
    assert await pruner.prune(1, now_ms=10, retention_count=1, retention_seconds=3600) == 1
    kept, _ = await store.page(1, status="succeeded", before=None, limit=10)
    assert [d.id for d in kept] == [ids[3]]


async def test_test_deliveries_have_no_entry_to_wait_for(real_redis: Redis) -> None:
    await make_group(real_redis)
    store = DeliveryStore(real_redis)
    for n in range(3):
        await finish(store, f"dlv_test_t{n}_1", now=n, verdict="succeeded")
    went = await DeliveryPruner(real_redis).prune(
        1, now_ms=10, retention_count=1, retention_seconds=3600
    )
    assert went == 2


async def test_deliveries_of_entries_waiting_in_their_accounts_lane_stay(
    real_redis: Redis,
) -> None:
    """Spilled to the account's lane, an entry is acknowledged in the stream, yet a worker may
    still hand it out again (a lane acknowledgement lost): its delivery's record stays."""
    await make_group(real_redis)
    entries = [(await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{}"})).decode() for _ in range(4)]
    await real_redis.xreadgroup(keys.DELIVERY_GROUP, "w", {keys.EVENTS_STREAM: ">"}, count=4)
    await real_redis.xack(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, *entries[:2])
    # The last two went to the default account's lane (webhook 1 has no account field).
    await Lanes(real_redis).spill(
        keys.EVENTS_STREAM, 0, [(entry, DEFAULT_ACCOUNT) for entry in entries[2:]], 1
    )
    await real_redis.hset(keys.webhook(1), mapping={"id": "1", "url": "https://a.example/"})
    store = DeliveryStore(real_redis)
    ids = [f"dlv_{entry}_1" for entry in entries]
    for n, id_ in enumerate(ids):
        await finish(store, id_, now=n, verdict="succeeded")
    pruner = DeliveryPruner(real_redis)
    assert await pruner.prune(1, now_ms=10, retention_count=1, retention_seconds=3600) == 2
    kept, _ = await store.page(1, status="succeeded", before=None, limit=10)
    assert [d.id for d in kept] == [ids[3], ids[2]]
