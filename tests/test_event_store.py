"""The event stream on a real Redis: atomic de-duplication, trimming, indexes, scan budget."""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from service import keys
from service.event_store import (
    EventFilter,
    EventStore,
    entry_id,
    event_id,
    index_member,
    member_entry_id,
)
from service.models import Event
from service.providers import Ignored


def event(n: int, **fields: str) -> Event:
    values = {
        "type": "email.open",
        "email_id": f"msg_{n}",
        "recipient": f"user{n}@example.com",
        "occurred_at": "2026-03-03T10:00:00Z",
        "provider": "sendgrid",
        "provider_event_id": f"sg-{n}",
        **fields,
    }
    return Event(**values)


class TestIds:
    def test_event_id_round_trip(self) -> None:
        assert event_id("1700000000000-3") == "evt_1700000000000-3"
        assert entry_id("evt_1700000000000-3") == "1700000000000-3"

    @pytest.mark.parametrize("bad", ["", "evt_", "1-0", "evt_1", "evt_a-0", "evt_1-0 ", "msg_1-0"])
    def test_foreign_ids_are_none(self, bad: str) -> None:
        assert entry_id(bad) is None

    def test_index_members_sort_in_time_order(self) -> None:
        entries = ["999-0", "1000-0", "1000-2", "1000-10", "1700000000000-0"]
        assert sorted(entries, key=index_member) == entries
        assert sorted(index_member(e) for e in entries) == [index_member(e) for e in entries]
        assert [member_entry_id(index_member(e)) for e in entries] == entries


@pytest.mark.anyio
@pytest.mark.redis
class TestOnRealRedis:
    async def test_concurrent_retries_store_once(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)
        results = []

        async def post() -> None:
            results.append(await store.append("sendgrid", [event(1), event(2)]))

        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(post)
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 2
        assert sum(len(r.stored) for r in results) == 2
        originals = {tuple(r.stored or r.duplicates) for r in results}
        assert len(originals) == 1  # every retry learns the same two event ids

    async def test_dedup_keys_expire(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=3600)
        await store.append("sendgrid", [event(1)])
        [seen_key] = await real_redis.keys("mh:seen:*")
        assert 3500 < await real_redis.ttl(seen_key) <= 3600

    async def test_same_event_id_from_another_provider_is_another_event(
        self, real_redis: Redis
    ) -> None:
        store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)
        await store.append("sendgrid", [event(1)])
        await store.append("resend", [event(1, provider="resend")])
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 2

    async def test_stream_is_trimmed_approximately(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        for start in range(0, 5000, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
        length = await real_redis.xlen(keys.EVENTS_STREAM)
        assert 1000 <= length <= 1200
        newest, _ = await store.recent(EventFilter(), before=None, limit=1)
        assert newest[0].provider_event_id == "sg-4999"
        # An index entry whose event was trimmed is skipped, not an error.
        assert await store.recent(EventFilter(email_id="msg_0"), before=None, limit=10) == (
            [],
            None,
        )

    async def test_ignored_events_are_counted(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        ignored = [Ignored("sendgrid", "processed"), Ignored("sendgrid", "processed")]
        await store.append("sendgrid", [], ignored)
        assert await real_redis.hget(keys.INBOUND_COUNTS, "sendgrid:ignored:processed") == b"2"
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 0

    async def test_scan_budget_returns_a_cursor_that_resumes(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60, scan_budget=50)
        await store.append("sendgrid", [event(0, type="email.bounce")])
        await store.append("sendgrid", [event(n) for n in range(1, 120)])
        where = EventFilter(type="email.bounce")
        found, cursor = await store.recent(where, before=None, limit=10)
        pages = 1
        while not found and cursor is not None:
            found, cursor = await store.recent(where, before=cursor, limit=10)
            pages += 1
        assert [e.provider_event_id for e in found] == ["sg-0"]
        assert pages == 3
