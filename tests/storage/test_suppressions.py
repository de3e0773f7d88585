"""Suppression lists on a real Redis: filled by the events append stores, kept by hand."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.core.ids import entry_id, entry_time, format_timestamp
from service.core.models import Bounce, Event
from service.storage import keys
from service.storage.accounts import AccountStore
from service.storage.autopipeline import AutoPipeline
from service.storage.events import EventStore
from service.storage.suppressions import SuppressionStore
from tests.storage.test_events import event

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ACME = "acc_0kx8q2m4n1a7b3c9d2e5"
OTHER = "acc_0kx8q2m4n1zzzzzzzzzz"


def stores(redis: Redis) -> tuple[EventStore, SuppressionStore]:
    pipeline = AutoPipeline(redis)
    events = EventStore(redis, maxlen=10_000, dedup_ttl_seconds=60, pipeline=pipeline)
    return events, SuppressionStore(redis, pipeline)


def bounce(n: int, kind: str = "hard", **fields: str | None) -> Event:
    made = event(n, type="email.bounce", account_id=ACME, **fields)
    made.bounce = Bounce(kind=kind)  # type: ignore[arg-type]
    return made


class TestAtIngest:
    async def test_a_hard_bounce_suppresses_with_its_event(self, real_redis: Redis) -> None:
        events, suppressions = stores(real_redis)
        result = await events.append("sendgrid", [bounce(1, recipient="User1@Example.COM")])
        found = await suppressions.get(ACME, "user1@example.com")
        assert found is not None
        assert found.reason == "hard_bounce"
        assert found.event_id == result.stored[0]
        assert found.email == "user1@example.com"
        # When it was stored: the entry id's time.
        assert found.created_at == format_timestamp(entry_time(entry_id(result.stored[0]) or ""))

    @pytest.mark.parametrize(
        ("type_", "reason"),
        [("email.complaint", "complaint"), ("email.unsubscribe", "unsubscribe")],
    )
    async def test_complaints_and_unsubscribes(
        self, real_redis: Redis, type_: str, reason: str
    ) -> None:
        events, suppressions = stores(real_redis)
        await events.append("generic", [event(1, type=type_, account_id=ACME)])
        found = await suppressions.get(ACME, "user1@example.com")
        assert found is not None
        assert found.reason == reason

    async def test_what_does_not_suppress(self, real_redis: Redis) -> None:
        events, _suppressions = stores(real_redis)
        await events.append(
            "sendgrid",
            [
                bounce(1, "soft"),
                bounce(2, "undetermined"),
                event(3, type="email.open", account_id=ACME),
                event(4, type="email.complaint", account_id=None),  # unrouted
                event(5, type="email.complaint", account_id=ACME, recipient=None),
            ],
        )
        assert await real_redis.exists(keys.suppressions(ACME)) == 0

    async def test_one_round_trip_with_the_append(self, real_redis: Redis) -> None:
        pipeline = AutoPipeline(real_redis)
        events = EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60, pipeline=pipeline)
        await events.append("sendgrid", [bounce(1), bounce(2), event(3, account_id=ACME)])
        assert pipeline.round_trips == 1
        assert await real_redis.hlen(keys.suppressions(ACME)) == 2

    async def test_a_retry_keeps_the_first_event(self, real_redis: Redis) -> None:
        events, suppressions = stores(real_redis)
        first = await events.append("sendgrid", [bounce(1)])
        again = await events.append("sendgrid", [bounce(1)])
        assert again.duplicates == first.stored
        found = await suppressions.get(ACME, "user1@example.com")
        assert found is not None
        assert found.event_id == first.stored[0]

    async def test_a_retry_suppresses_what_the_first_attempt_did_not(
        self, real_redis: Redis
    ) -> None:
        events, suppressions = stores(real_redis)
        first = await events.append("sendgrid", [bounce(1)])
        await suppressions.remove(ACME, "user1@example.com")  # as if the first one's was lost
        await events.append("sendgrid", [bounce(1)])
        found = await suppressions.get(ACME, "user1@example.com")
        assert found is not None
        assert found.event_id == first.stored[0]

    async def test_the_first_reason_stays(self, real_redis: Redis) -> None:
        events, suppressions = stores(real_redis)
        await events.append("sendgrid", [bounce(1)])
        await events.append(
            "generic",
            [event(9, type="email.complaint", account_id=ACME, recipient="user1@example.com")],
        )
        found = await suppressions.get(ACME, "user1@example.com")
        assert found is not None
        assert found.reason == "hard_bounce"
        assert await real_redis.zcard(keys.suppressed(ACME, "complaint")) == 0
        assert await real_redis.zcard(keys.suppressed(ACME, "hard_bounce")) == 1

    async def test_each_account_its_own_list(self, real_redis: Redis) -> None:
        events, suppressions = stores(real_redis)
        await events.append("sendgrid", [bounce(1)])
        assert await suppressions.get(OTHER, "user1@example.com") is None
        assert await suppressions.list(OTHER, reason=None, after=None, limit=10) == ([], None)

    async def test_a_shorter_dedup_window(self, real_redis: Redis) -> None:
        events, _ = stores(real_redis)
        await events.append("mailhooks", [event(1)], dedup_ttl_seconds=10)
        [seen] = [k async for k in real_redis.scan_iter(match="mh:seen:mailhooks:*")]
        assert 0 < await real_redis.ttl(seen) <= 10


class TestByHand:
    async def test_add_get_remove(self, real_redis: Redis) -> None:
        _, suppressions = stores(real_redis)
        entry, added = await suppressions.add(
            ACME, "a@example.com", "manual", now="2026-03-03T10:00:00Z"
        )
        assert added
        assert entry.reason == "manual"
        assert entry.event_id is None
        assert entry.created_at == "2026-03-03T10:00:00Z"
        again, added = await suppressions.add(ACME, "a@example.com", "complaint", now="later")
        assert not added
        assert again == entry
        assert await suppressions.get(ACME, "a@example.com") == entry
        assert await suppressions.remove(ACME, "a@example.com")
        assert not await suppressions.remove(ACME, "a@example.com")
        assert await suppressions.get(ACME, "a@example.com") is None
        assert [k async for k in real_redis.scan_iter(match="*")] == []

    async def test_listing_pages_and_filters(self, real_redis: Redis) -> None:
        _, suppressions = stores(real_redis)
        for n in range(5):
            reason = "manual" if n % 2 else "unsubscribe"
            await suppressions.add(ACME, f"u{n}@example.com", reason, now="t")
        page, after = await suppressions.list(ACME, reason=None, after=None, limit=2)
        assert [s.email for s in page] == ["u0@example.com", "u1@example.com"]
        assert after == "u1@example.com"
        page, after = await suppressions.list(ACME, reason=None, after=after, limit=3)
        assert [s.email for s in page] == ["u2@example.com", "u3@example.com", "u4@example.com"]
        assert after is None
        page, after = await suppressions.list(ACME, reason="unsubscribe", after=None, limit=10)
        assert [s.email for s in page] == ["u0@example.com", "u2@example.com", "u4@example.com"]
        assert {s.reason for s in page} == {"unsubscribe"}

    async def test_deleting_the_account_deletes_its_list(self, real_redis: Redis) -> None:
        events, suppressions = stores(real_redis)
        accounts = AccountStore(real_redis)
        await accounts.create(ACME, "Acme", now="t")
        await suppressions.add(ACME, "a@example.com", "manual", now="t")
        await events.append("sendgrid", [bounce(1)])
        await real_redis.delete(keys.EVENTS_STREAM, keys.INBOUND_COUNTS)
        await real_redis.delete(*[k async for k in real_redis.scan_iter(match="mh:seen:*")])
        await real_redis.delete(*[k async for k in real_redis.scan_iter(match="mh:events:*")])
        assert await accounts.start_delete(ACME)
        await accounts.finish_delete(ACME)
        assert [k async for k in real_redis.scan_iter(match="*")] == []


class TestPartitioned:
    async def test_a_hard_bounce_suppresses_in_its_accounts_partition(
        self, partitioned_redis: Redis
    ) -> None:
        events, suppressions = stores(partitioned_redis)
        complaint = event(2, type="email.complaint", account_id=OTHER)
        result = await events.append("sendgrid", [bounce(1), complaint, event(3)])
        found = await suppressions.get(ACME, "user1@example.com")
        assert found is not None
        assert found.reason == "hard_bounce"
        assert found.event_id == result.stored[0]  # naming the partition of ACME's stream
        other = await suppressions.get(OTHER, "user2@example.com")
        assert other is not None
        assert other.event_id == result.stored[1]
        assert keys.suppressions(ACME).startswith("mh:{p4.")
        assert await partitioned_redis.hlen(keys.suppressions(ACME)) == 1
        listed, _ = await suppressions.list(ACME, reason=None, after=None, limit=10)
        assert [s.email for s in listed] == ["user1@example.com"]
        assert await suppressions.remove(ACME, "user1@example.com")
        added, new = await suppressions.add(OTHER, "x@example.com", "manual", now="2026-03-03")
        assert new
        assert added.reason == "manual"
