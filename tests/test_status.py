"""GET /api/status: the pure assessment, then the endpoint on a real Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from service.core.ids import entry_time, format_timestamp
from service.core.models import Event
from service.core.status import Readings, assess
from service.storage import keys
from service.storage.capacity import over_limit
from service.storage.events import EventStore
from tests.conftest import FIXED_NOW, MakeClient

NOW = FIXED_NOW
NOW_MS = int(NOW.timestamp() * 1000)


def readings(**overrides: object) -> Readings:
    values: dict[str, object] = {
        "stored": 10,
        "heartbeat": format_timestamp(NOW),
        "used_memory": 1_000_000,
        "maxmemory": 0,
        "group_exists": True,
        "lag": 0,
        "in_progress": 0,
        "oldest_in_progress": None,
        **overrides,
    }
    return Readings(**values)  # type: ignore[arg-type]


class TestAssess:
    def test_a_live_worker_keeping_up_is_ok(self) -> None:
        report = assess(readings(), NOW, stuck_after_seconds=600, ingest_limit=0.9)
        assert report.status == "ok"
        assert report.problems == []
        assert report.worker.alive is True
        assert report.redis_memory.max_bytes is None
        assert report.redis_memory.used_fraction is None

    def test_no_heartbeat_is_degraded(self) -> None:
        report = assess(readings(heartbeat=None), NOW, stuck_after_seconds=600, ingest_limit=0.9)
        assert report.status == "degraded"
        assert report.worker.alive is False
        assert ["worker" in problem for problem in report.problems] == [True]

    def test_without_the_group_every_stored_event_is_undelivered(self) -> None:
        report = assess(
            readings(group_exists=False, lag=None), NOW, stuck_after_seconds=600, ingest_limit=0.9
        )
        assert report.events.undelivered == 10

    def test_an_entry_in_progress_past_the_limit_is_stuck(self) -> None:
        fine = readings(in_progress=3, oldest_in_progress=f"{NOW_MS - 600_000}-0")
        report = assess(fine, NOW, stuck_after_seconds=600, ingest_limit=0.9)
        assert report.status == "ok"
        assert report.events.oldest_in_progress_age_seconds == 600.0
        assert report.events.oldest_in_progress_at == "2026-03-03T09:50:00Z"
        stuck = readings(in_progress=3, oldest_in_progress=f"{NOW_MS - 600_001}-0")
        report = assess(stuck, NOW, stuck_after_seconds=600, ingest_limit=0.9)
        assert report.status == "degraded"
        assert "in progress for 600 s" in report.problems[0]

    @pytest.mark.parametrize(
        ("used", "problem"),
        [
            (799, None),
            (800, "80% of maxmemory: ingest answers 503 from INGEST_MEMORY_LIMIT (90%)"),
            (900, "90% of maxmemory, past INGEST_MEMORY_LIMIT (90%): ingest answers 503 until"),
            (1000, "100% of maxmemory, past INGEST_MEMORY_LIMIT"),
        ],
    )
    def test_memory_near_maxmemory_is_degraded(self, used: int, problem: str | None) -> None:
        report = assess(
            readings(used_memory=used, maxmemory=1000),
            NOW,
            stuck_after_seconds=600,
            ingest_limit=0.9,
        )
        assert report.redis_memory.used_fraction == used / 1000
        if problem is None:
            assert report.status == "ok"
        else:
            assert report.status == "degraded"
            [found] = report.problems
            assert problem in found

    def test_just_below_the_limit_is_below_it_as_ingest_sees_it(self) -> None:
        used, maxmemory = 8_999_999, 10_000_000  # 0.9 once rounded for the report
        report = assess(
            readings(used_memory=used, maxmemory=maxmemory),
            NOW,
            stuck_after_seconds=600,
            ingest_limit=0.9,
        )
        assert report.redis_memory.used_fraction == 0.9
        assert over_limit(used, maxmemory, 0.9) is False
        [problem] = report.problems
        assert "past INGEST_MEMORY_LIMIT" not in problem

    def test_an_ingest_limit_below_the_warning_warns_from_the_limit(self) -> None:
        report = assess(
            readings(used_memory=700, maxmemory=1000),
            NOW,
            stuck_after_seconds=600,
            ingest_limit=0.7,
        )
        assert "past INGEST_MEMORY_LIMIT (70%)" in report.problems[0]

    def test_entry_time(self) -> None:
        assert entry_time("1772532000000-7") == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


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
