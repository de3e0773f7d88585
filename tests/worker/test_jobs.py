"""The worker's maintenance jobs, called as arq calls them, on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from config import Config
from service.core.ids import delivery_id
from service.core.outcome import Verdict
from service.storage import keys
from service.storage.events import EventStore
from service.storage.stream import EventStream
from tests.storage.test_events import consume, event
from worker.http import WebhookClient
from worker.jobs import forget_dead_consumers, requeue_expired_leases, trim_events
from worker.settings import Stores, build_deliverer

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


@asynccontextmanager
async def worker_ctx(redis: Redis) -> AsyncIterator[dict[str, Any]]:
    """What arq hands the worker's jobs."""
    config = Config()
    stores = Stores.create(redis, config)
    http = WebhookClient(config)
    deliverer = build_deliverer(stores, http=http, config=config)
    try:
        yield {"redis": redis, "stores": stores, "deliverer": deliverer}
    finally:
        await http.aclose()


@pytest.fixture
async def sweep_ctx(partitioned_redis: Redis) -> AsyncIterator[dict[str, Any]]:
    async with worker_ctx(partitioned_redis) as ctx:
        yield ctx


async def test_a_pending_delivery_whose_lease_ran_out_is_scheduled(real_redis: Redis) -> None:
    async with worker_ctx(real_redis) as ctx:
        deliveries = ctx["stores"].deliveries
        stuck = delivery_id("1-0", 1)
        await deliveries.claim(
            delivery_id=stuck, webhook_id=1, event_id="evt_1-0", event_type="email.open",
            owner="dead-worker", now_ms=0, lease_ms=1,
        )  # fmt: skip
        await requeue_expired_leases(ctx)
        assert await real_redis.zcard(keys.retries(0)) == 1
        # Not again next round while that attempt waits: its lease index entry moved on.
        assert await real_redis.zscore(keys.DELIVERY_LEASES, stuck) > 10**12
        await requeue_expired_leases(ctx)
        assert await real_redis.zcard(keys.retries(0)) == 1


class TestLeaseSweep:
    async def test_every_partitions_leases_are_swept(self, sweep_ctx: dict[str, Any]) -> None:
        """With 16 partitions, one lease index each: the sweep reads them all, and drops
        the leases of deliveries that finished or are gone, in whichever partition."""
        redis: Redis = sweep_ctx["redis"]
        deliveries = sweep_ctx["stores"].deliveries
        webhooks = sweep_ctx["stores"].webhooks
        hooks = [
            await webhooks.create(
                account=account, url="https://a.example/", events=("*",), secret="s" * 8,
                active=True, now="t", limit=10,
            )
            for account in ("acc_acme", "acc_globex")
        ]  # fmt: skip
        partitions = {keys.partitioning().of_webhook(hook.id) for hook in hooks}
        assert len(partitions) == 2
        for hook in hooks:
            finished = delivery_id("1-0", hook.id)
            await deliveries.claim(
                delivery_id=finished, webhook_id=hook.id, event_id="evt_1-0",
                event_type="email.open", owner="a", now_ms=0, lease_ms=1,
            )  # fmt: skip
            stored = await deliveries.get(finished)
            await deliveries.record(
                stored, owner="a", now_ms=1, verdict=Verdict.SUCCEEDED, disable_after_ms=10**9,
                retention_count=100, retention_seconds=3600,
            )  # fmt: skip
            # A lease left behind by a worker that died after the delivery finished, and one
            # of a delivery that is gone.
            await deliveries.extend_lease_index(finished, 1)
            await deliveries.extend_lease_index(delivery_id("2-0", hook.id), 1)
        for partition in partitions:
            assert await redis.zcard(keys.delivery_leases(partition)) == 2

        await requeue_expired_leases(sweep_ctx)
        for partition in keys.partitioning().all():
            assert await redis.zcard(keys.delivery_leases(partition)) == 0

    async def test_a_pending_delivery_whose_lease_ran_out_is_requeued(
        self, sweep_ctx: dict[str, Any]
    ) -> None:
        redis: Redis = sweep_ctx["redis"]
        deliveries = sweep_ctx["stores"].deliveries
        hook = await sweep_ctx["stores"].webhooks.create(
            account="acc_globex", url="https://a.example/", events=("*",), secret="s" * 8,
            active=True, now="t", limit=10,
        )  # fmt: skip
        stuck = delivery_id("1-0", hook.id)
        await deliveries.claim(
            delivery_id=stuck, webhook_id=hook.id, event_id="evt_1-0", event_type="email.open",
            owner="dead-worker", now_ms=0, lease_ms=1,
        )  # fmt: skip
        await requeue_expired_leases(sweep_ctx)
        partition = keys.partitioning().of_webhook(hook.id)
        # Scheduled in its own partition's retry set, on the slot-checking Redis.
        assert await redis.zcard(keys.retries(partition)) == 1
        # Not again next round while it waits: its lease index entry moved a lease on.
        assert await redis.zscore(keys.delivery_leases(partition), stuck) > 10**12
