"""service.storage.metrics on a real Redis: flushing tallies into the metrics hash, and what a
scrape reads back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import redis.exceptions
from redis.asyncio import Redis

from service.core.metrics import DeliveryOutcome, RequestOutcome, Tally
from service.storage import keys
from service.storage.metrics import MetricsRecorder, MetricsStore
from tests.storage.test_events import make_group
from tests.worker.test_deliverer import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

NOW_MS = 1_772_532_000_000
LEASE_MS = 31_000


def hash_of(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in raw.items()}


@pytest.fixture
async def recorder(real_redis: Redis) -> AsyncIterator[MetricsRecorder]:
    recorder = MetricsRecorder(MetricsStore(real_redis), Tally(), interval=0.05)
    recorder.start()
    yield recorder
    await recorder.close()


class TestRecorder:
    async def test_counts_reach_redis_within_the_interval(
        self, recorder: MetricsRecorder, real_redis: Redis
    ) -> None:
        recorder.tally.inbound_request("generic", RequestOutcome.ACCEPTED)
        recorder.tally.delivery(DeliveryOutcome.SUCCEEDED, account=None, latency=0.25)
        expected = {
            "inbound_requests|generic|accepted": "1",
            "deliveries|succeeded": "1",
            "delivery_latency_seconds|0.25": "1",
            "delivery_latency_seconds|sum": "0.25",
        }

        async def flushed() -> bool:
            return hash_of(await real_redis.hgetall(keys.METRICS)) == expected

        await eventually(flushed, timeout=1.0)  # the fixture flushes every 0.05 s
        assert not recorder.tally

    async def test_processes_add_up(self, real_redis: Redis) -> None:
        for _ in range(2):  # two processes' recorders, one hash
            recorder = MetricsRecorder(MetricsStore(real_redis), Tally())
            recorder.tally.inbound_request("generic", RequestOutcome.ACCEPTED)
            recorder.tally.attempt("2xx", 0.5)
            await recorder.close()
        found = hash_of(await real_redis.hgetall(keys.METRICS))
        assert found["inbound_requests|generic|accepted"] == "2"
        assert found["delivery_attempt_duration_seconds|2xx|0.5"] == "2"
        assert float(found["delivery_attempt_duration_seconds|2xx|sum"]) == 1.0

    async def test_counts_survive_a_redis_that_refuses_them(self, real_redis: Redis) -> None:
        recorder = MetricsRecorder(MetricsStore(real_redis), Tally())
        recorder.tally.inbound_request("generic", RequestOutcome.STORE_FULL)
        await real_redis.config_set("maxmemory-policy", "noeviction")
        await real_redis.config_set("maxmemory", 1)
        try:
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                await recorder.flush()
        finally:
            await real_redis.config_set("maxmemory", 0)
        recorder.tally.inbound_request("generic", RequestOutcome.STORE_FULL)
        await recorder.close()  # the kept count goes with the next flush
        assert hash_of(await real_redis.hgetall(keys.METRICS)) == {
            "inbound_requests|generic|store_full": "2"
        }

    async def test_an_outage_is_logged_once_and_loses_nothing(
        self, recorder: MetricsRecorder, real_redis: Redis, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="mailhooks.metrics")
        await real_redis.config_set("maxmemory-policy", "noeviction")
        await real_redis.config_set("maxmemory", 1)
        try:
            for _ in range(5):  # counted through several refused flushes
                recorder.tally.inbound_request("generic", RequestOutcome.ACCEPTED)
                await asyncio.sleep(0.06)
        finally:
            await real_redis.config_set("maxmemory", 0)
        await asyncio.sleep(0.2)
        assert [r.levelname for r in caplog.records if r.name == "mailhooks.metrics"] == [
            "WARNING",
            "INFO",
        ]
        assert await real_redis.hgetall(keys.METRICS) == {
            b"inbound_requests|generic|accepted": b"5"
        }


class TestSnapshot:
    async def test_an_empty_redis(self, real_redis: Redis) -> None:
        found = await MetricsStore(real_redis).snapshot(NOW_MS, lease_ms=LEASE_MS)
        assert found.counts == {}
        assert (found.retries_scheduled, found.retries_due, found.dead_letters) == (0, 0, 0)
        assert found.first_unread is None
        assert found.readings.stored == 0

    async def test_reads_the_counts_and_the_gauges(self, real_redis: Redis) -> None:
        await real_redis.hset(keys.METRICS, "deliveries|succeeded", 7)
        await real_redis.zadd(  # scheduled attempts: late, due now, and one being made
            keys.retries(0),
            {"dlv_1-0_1:a2": NOW_MS - 5000, "dlv_2-0_1:a2": NOW_MS, "dlv_3-0_1:m1": NOW_MS + 500},
        )
        await real_redis.zadd(  # leases: under way (from now), waiting for a later attempt
            keys.DELIVERY_LEASES,
            {"dlv_1": NOW_MS + LEASE_MS, "dlv_2": NOW_MS + 60_000 + LEASE_MS, "dlv_3": NOW_MS + 2},
        )
        for n in range(3):
            await real_redis.xadd(keys.DEAD_LETTERS, {"n": n})
        found = await MetricsStore(real_redis).snapshot(NOW_MS, lease_ms=LEASE_MS)
        assert found.counts == {"deliveries|succeeded": "7"}
        assert (found.retries_scheduled, found.retries_due) == (1, 1)
        assert found.dead_letters == 3

    async def test_the_first_unread_entry_follows_the_groups_last_read(
        self, real_redis: Redis
    ) -> None:
        store = MetricsStore(real_redis)
        first = (await real_redis.xadd(keys.EVENTS_STREAM, {"e": "1"})).decode()
        second = (await real_redis.xadd(keys.EVENTS_STREAM, {"e": "2"})).decode()
        assert (
            await store.snapshot(NOW_MS, lease_ms=LEASE_MS)
        ).first_unread == first  # no group: from the start
        await make_group(real_redis)
        await real_redis.xreadgroup(keys.DELIVERY_GROUP, "c", {keys.EVENTS_STREAM: ">"}, count=1)
        found = await store.snapshot(NOW_MS, lease_ms=LEASE_MS)
        assert found.first_unread == second
        assert found.readings.oldest_in_progress == first
        await real_redis.xreadgroup(keys.DELIVERY_GROUP, "c", {keys.EVENTS_STREAM: ">"})
        assert (await store.snapshot(NOW_MS, lease_ms=LEASE_MS)).first_unread is None


class TestPartitioned:
    async def test_the_partitions_leases_and_disabled_counts_are_added_up(
        self, partitioned_redis: Redis
    ) -> None:
        """With 16 partitions each has its lease index, and record.lua counts the webhooks it
        disables in its partition's hash: a scrape shows their sums."""
        redis = partitioned_redis
        await redis.hset(keys.METRICS, mapping={"deliveries|succeeded": 7})
        await redis.hset(keys.partition_metrics(3), "webhooks_disabled|gone", 1)
        await redis.hset(keys.partition_metrics(9), "webhooks_disabled|gone", 2)
        await redis.hset(keys.partition_metrics(9), "webhooks_disabled|failing", 1)
        later = NOW_MS + 60_000 + LEASE_MS  # waiting for a later attempt
        await redis.zadd(keys.delivery_leases(3), {"dlv_1-0_19": later, "dlv_2-0_19": NOW_MS})
        await redis.zadd(keys.delivery_leases(9), {"dlv_1-0_25": later})
        found = await MetricsStore(redis).snapshot(NOW_MS, lease_ms=LEASE_MS)
        assert found.counts == {
            "deliveries|succeeded": "7",
            "webhooks_disabled|gone": "3",
            "webhooks_disabled|failing": "1",
        }
        assert found.retries_scheduled == 2
