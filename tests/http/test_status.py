"""GET /api/status on a real Redis (the assessment itself: tests/core/test_status.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from service.core.ids import entry_time
from service.core.models import Event
from service.storage import keys
from service.storage.events import EventStore
from tests.conftest import FIXED_NOW, MakeClient

NOW = FIXED_NOW
NOW_MS = int(NOW.timestamp() * 1000)


def event(n: int) -> Event:
    return Event(
        type="email.open",
        email_id=f"msg_{n}",
        occurred_at="2026-03-03T10:00:00Z",
        provider="generic",
        provider_event_id=f"p-{n}",
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
        }
        assert body["redis_memory"]["used_bytes"] > 0

    async def test_backlog_in_progress_and_memory(
        self, make_client: MakeClient, real_redis: Redis
    ) -> None:
        store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)
        await real_redis.xgroup_create(
            keys.EVENTS_STREAM, keys.DELIVERY_GROUP, id="0", mkstream=True
        )
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
