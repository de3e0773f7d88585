"""GET /api/status on a real Redis (the assessment itself: tests/core/test_status.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from devtools.redis_server import PrivateRedis
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.ids import entry_time
from service.core.models import Event
from service.storage import keys
from service.storage.events import EventStore
from tests.conftest import FIXED_NOW, MakeClient
from tests.storage.test_events import consume, make_group

NOW = FIXED_NOW
NOW_MS = int(NOW.timestamp() * 1000)


def event(n: int) -> Event:
    return Event(
        type="email.open",
        email_id=f"msg_{n}",
        occurred_at="2026-03-03T10:00:00Z",
        provider="generic",
        provider_event_id=f"p-{n}",
        account_id=DEFAULT_ACCOUNT,
    )


@pytest.mark.anyio
@pytest.mark.redis
class TestEndpoint:
    async def test_needs_the_api_key(self, make_client: MakeClient, real_redis: Redis) -> None:
        response = await (await make_client(redis=real_redis, auth=False)).get("/api/status")
        assert response.status_code == 401

    async def test_an_empty_redis_without_a_worker(
        self, make_client: MakeClient, real_redis: Redis
    ) -> None:
        response = await (await make_client(redis=real_redis)).get("/api/status")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "degraded"
        assert body["worker"] == {"alive": False, "last_heartbeat": None}
        assert body["events"] == {
            "stored": 0,
            "undelivered": 0,
            "in_progress": 0,
            "oldest_in_progress_at": None,
            "oldest_in_progress_age_seconds": None,
            "unreadable": 0,
            "dead_letters": 0,
            "in_lanes": 0,
        }
        assert body["redis_memory"]["used_bytes"] > 0

    async def test_backlog_in_progress_and_memory(
        self, make_client: MakeClient, real_redis: Redis
    ) -> None:
        store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        stored = await store.append("generic", [event(n) for n in range(10)])
        # A worker read three and has not acknowledged them; seven are still to read.
        await real_redis.xreadgroup(keys.DELIVERY_GROUP, "w1", {keys.EVENTS_STREAM: ">"}, count=3)
        await real_redis.set(keys.WORKER_HEARTBEAT, "2026-11-28T10:00:00Z", ex=60)
        used = int((await real_redis.info("memory"))["used_memory"])
        await real_redis.config_set("maxmemory", used * 100)
        an_hour_on = entry_time(stored.stored[0].removeprefix("evt_")) + timedelta(hours=1)
        try:
            client = await make_client(redis=real_redis, clock=lambda: an_hour_on)
            body = (await client.get("/api/status")).json()
        finally:
            await real_redis.config_set("maxmemory", 0)
        assert body["worker"] == {"alive": True, "last_heartbeat": "2026-11-28T10:00:00Z"}
        events = body["events"]
        assert (events["stored"], events["undelivered"], events["in_progress"]) == (10, 7, 3)
        assert events["oldest_in_progress_age_seconds"] == 3600.0
        # An hour in progress is past twenty leases (31 s each by default): stuck.
        assert body["status"] == "degraded"
        assert len(body["problems"]) == 1
        assert "in progress for 3600 s" in body["problems"][0]
        assert body["redis_memory"]["max_bytes"] == used * 100
        assert 0 < body["redis_memory"]["used_fraction"] < 0.8

    async def test_nothing_left_to_read_is_zero_undelivered_after_trims_and_a_restart(
        self, make_client: MakeClient, durable_redis: PrivateRedis
    ) -> None:
        # Reads that cross trimmed entries throw Redis's entries-read (and so its lag) off:
        # it said 1,150 here with nothing left to read, and other figures after a restart.
        redis = Redis.from_url(durable_redis.url)
        await make_group(redis)
        for _ in range(30):
            for _ in range(100):
                await redis.xadd(keys.EVENTS_STREAM, {"e": b"{}"})
            await read_and_ack(redis, 60)
            await redis.xtrim(keys.EVENTS_STREAM, maxlen=50)
        await consume(redis)
        [group] = await redis.xinfo_groups(keys.EVENTS_STREAM)
        assert group["lag"] != 0  # what Redis itself says
        await redis.aclose()
        for restarted in (False, True):
            if restarted:
                durable_redis.restart()
            redis = Redis.from_url(durable_redis.url)
            client = await make_client(redis=redis)
            report = (await client.get("/api/status")).json()
            assert report["events"]["undelivered"] == 0
            assert report["events"]["in_progress"] == 0
            await redis.aclose()

    async def test_unread_entries_behind_trimmed_reads_are_counted_at_most_once(
        self, make_client: MakeClient, real_redis: Redis
    ) -> None:
        await make_group(real_redis)
        for _ in range(10):
            for _ in range(100):
                await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{}"})
            await read_and_ack(real_redis, 60)
            await real_redis.xtrim(keys.EVENTS_STREAM, maxlen=50)
        for _ in range(7):
            await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{}"})
        report = (await (await make_client(redis=real_redis)).get("/api/status")).json()
        stored = report["events"]["stored"]
        assert 1 <= report["events"]["undelivered"] <= stored

    async def test_entries_that_are_no_event_are_counted(
        self, make_client: MakeClient, real_redis: Redis
    ) -> None:
        client = await make_client(redis=real_redis)
        assert (await client.get("/api/status")).json()["events"]["unreadable"] == 0
        await real_redis.incrby(keys.UNREADABLE_EVENTS, 2)  # as the worker counts them
        assert (await client.get("/api/status")).json()["events"]["unreadable"] == 2

    async def test_dead_letters_are_counted_and_named_as_a_problem(
        self, make_client: MakeClient, real_redis: Redis
    ) -> None:
        client = await make_client(redis=real_redis)
        await real_redis.xadd(keys.DEAD_LETTERS, {"entry": "1-0", "reason": "failed"})
        report = (await client.get("/api/status")).json()
        assert report["events"]["dead_letters"] == 1
        assert any("1 dead letters" in problem for problem in report["problems"])


async def read_and_ack(redis: Redis, count: int) -> None:
    read = await redis.xreadgroup(keys.DELIVERY_GROUP, "w", {keys.EVENTS_STREAM: ">"}, count=count)
    if read:
        ids = [entry_id for entry_id, _ in read[0][1]]
        await redis.xack(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, *ids)
