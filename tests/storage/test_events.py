"""The event stream on a real Redis: atomic de-duplication, trimming, indexes, scan budget."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError

from service.core import operational
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.ids import entry_id, entry_member, event_id, member_entry
from service.core.models import Event
from service.core.normalized import Ignored
from service.storage import keys
from service.storage.events import EventFilter, EventStore
from service.storage.stream import EventStream


def event(n: int, **fields: str | None) -> Event:
    values = {
        "type": "email.open",
        "email_id": f"msg_{n}",
        "recipient": f"user{n}@example.com",
        "occurred_at": "2026-03-03T10:00:00Z",
        "provider": "sendgrid",
        "provider_event_id": f"sg-{n}",
        "account_id": DEFAULT_ACCOUNT,
        **fields,
    }
    return Event(**values)


def disabled_event(account: str) -> Event:
    return operational.webhook_disabled(
        account=account,
        webhook_id=7,
        url="https://a.example/hook",
        reason="gone",
        delivery_id="dlv_1-0_7",
        attempt=1,
        status_code=410,
        error="http_status",
        now=datetime(2026, 3, 3, tzinfo=UTC),
    )


async def make_group(redis: Redis, name: str = keys.DELIVERY_GROUP) -> None:
    await redis.xgroup_create(keys.EVENTS_STREAM, name, id="0", mkstream=True)


async def consume(redis: Redis, keep: frozenset[str] | set[str] = frozenset()) -> None:
    """Read everything new as the delivery group and acknowledge it, but for `keep`."""
    while response := await redis.xreadgroup(
        keys.DELIVERY_GROUP, "test", {keys.EVENTS_STREAM: ">"}, count=1000
    ):
        done = [raw.decode() for raw, _ in response[0][1] if raw.decode() not in keep]
        if done:
            await redis.xack(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, *done)


class TestIds:
    def test_event_id_round_trip(self) -> None:
        assert event_id("1700000000000-3") == "evt_1700000000000-3"
        assert entry_id("evt_1700000000000-3") == "1700000000000-3"

    @pytest.mark.parametrize("bad", ["", "evt_", "1-0", "evt_1", "evt_a-0", "evt_1-0 ", "msg_1-0"])
    def test_foreign_ids_are_none(self, bad: str) -> None:
        assert entry_id(bad) is None

    def test_entry_members_sort_in_time_order(self) -> None:
        entries = ["999-0", "1000-0", "1000-2", "1000-10", "1700000000000-0"]
        assert sorted(entries, key=entry_member) == entries
        assert sorted(entry_member(e) for e in entries) == [entry_member(e) for e in entries]
        assert [member_entry(entry_member(e)) for e in entries] == entries


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
        await make_group(real_redis)
        for start in range(0, 5000, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
            await consume(real_redis)  # the worker keeps up: everything is acknowledged
        await store.drain()  # appends trim in the background
        length = await real_redis.xlen(keys.EVENTS_STREAM)
        assert 1000 <= length <= 1200
        newest, _ = await store.recent(EventFilter(), before=None, limit=1)
        assert newest[0].provider_event_id == "sg-4999"
        # An index entry whose event was trimmed is skipped, not an error.
        assert await store.recent(EventFilter(email_id="msg_0"), before=None, limit=10) == (
            [],
            None,
        )

    async def test_unread_events_are_never_trimmed(self, real_redis: Redis) -> None:
        # The worker is down: past maxlen the stream grows rather than lose a delivery.
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        for start in range(0, 3000, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
        await store.drain()
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 3000
        # Back up and through the backlog: trimming resumes at the next append.
        await consume(real_redis)
        await store.append("sendgrid", [event(3000)])
        await store.drain()
        assert 1000 <= await real_redis.xlen(keys.EVENTS_STREAM) <= 1200

    async def test_no_group_yet_means_no_trimming(self, real_redis: Redis) -> None:
        # The delivery group is created from the first entry: everything is still to deliver.
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        for start in range(0, 2000, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
        await store.drain()
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 2000

    async def test_unacknowledged_events_are_never_trimmed(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        first = await store.append("sendgrid", [event(n) for n in range(500)])
        held = entry_id(first.stored[100])
        assert held is not None
        await consume(real_redis, keep={held})  # read, and all but one acknowledged
        for start in range(500, 3000, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
            await consume(real_redis)
        await store.drain()
        assert await real_redis.xrange(keys.EVENTS_STREAM, held, held)
        assert await real_redis.xlen(keys.EVENTS_STREAM) >= 2900
        # Acknowledged at last: the next append trims back to about maxlen.
        await real_redis.xack(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, held)
        await store.append("sendgrid", [event(3000)])
        await store.drain()
        assert 1000 <= await real_redis.xlen(keys.EVENTS_STREAM) <= 1200

    async def test_every_unacknowledged_event_survives(self, real_redis: Redis) -> None:
        # Trimming stops at the oldest pending entry, not at any pending entry.
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        first = await store.append("sendgrid", [event(n) for n in range(500)])
        held = {entry_id(first.stored[100]), entry_id(first.stored[400])}
        await consume(real_redis, keep={e for e in held if e})
        for start in range(500, 3000, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
            await consume(real_redis)
        await store.drain()
        for entry in held:
            assert await real_redis.xrange(keys.EVENTS_STREAM, entry, entry)

    async def test_a_group_that_read_part_of_the_stream_keeps_the_rest(
        self, real_redis: Redis
    ) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        first = await store.append("sendgrid", [event(n) for n in range(1000)])
        # A second group that has read (and acknowledged) the first 600 and no more.
        read_up_to = entry_id(first.stored[599])
        await real_redis.xgroup_create(keys.EVENTS_STREAM, "audit", id=read_up_to)
        for start in range(1000, 3000, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
            await consume(real_redis)
        await store.drain()
        oldest = await real_redis.xrange(keys.EVENTS_STREAM, count=1)
        unread = entry_id(first.stored[600])
        assert unread is not None
        assert await real_redis.xrange(keys.EVENTS_STREAM, unread, unread)
        assert oldest[0][0].decode() != entry_id(first.stored[0])  # the read part went
        assert await real_redis.xlen(keys.EVENTS_STREAM) <= 2600

    async def test_one_script_trims_at_most_ten_thousand(self, real_redis: Redis) -> None:
        # A long backlog, delivered at once: no one script may stall Redis freeing all of
        # it; the background trim after the next append frees it all, script by script.
        backlog = EventStore(real_redis, maxlen=10**6, dedup_ttl_seconds=60)  # no trims
        await make_group(real_redis)
        for start in range(0, 25_000, 1000):
            await backlog.append("sendgrid", [event(n) for n in range(start, start + 1000)])
        await consume(real_redis)
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        assert await store.trim(max_calls=1) == 10_000
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 15_000
        await store.append("sendgrid", [event(25_000)])
        await store.drain()
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 1000

    async def test_a_full_redis_frees_the_delivered_backlog_and_stores(
        self, real_redis: Redis
    ) -> None:
        # The worker was down until Redis filled up; it has since delivered the backlog.
        # The next append must make room, not be refused until someone trims by hand.
        backlog = EventStore(real_redis, maxlen=10**6, dedup_ttl_seconds=60)  # no trims
        await make_group(real_redis)
        for start in range(0, 5000, 500):
            await backlog.append("sendgrid", [event(n) for n in range(start, start + 500)])
        await consume(real_redis)
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        used = int((await real_redis.info("memory"))["used_memory"])
        await real_redis.config_set("maxmemory-policy", "noeviction")
        # Well below what is used: freed client buffers must not bring it back under.
        await real_redis.config_set("maxmemory", used - 256 * 1024)
        try:
            result = await store.append("sendgrid", [event(5000)])
            length = await real_redis.xlen(keys.EVENTS_STREAM)
        finally:
            await real_redis.config_set("maxmemory", 0)
        await store.drain()
        assert len(result.stored) == 1
        assert 1000 <= length <= 1200

    async def test_a_full_redis_with_nothing_delivered_refuses(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        for start in range(0, 3000, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
        # The appends asked for background trims (which find nothing to remove): none may
        # still hold reply buffers when memory is measured, or the limit set from it is
        # slack enough to let the next append through.
        await store.drain()
        used = int((await real_redis.info("memory"))["used_memory"])
        await real_redis.config_set("maxmemory-policy", "noeviction")
        # Well below what is used: freed client buffers must not bring it back under.
        await real_redis.config_set("maxmemory", used - 256 * 1024)
        try:
            with pytest.raises(OutOfMemoryError):
                await store.append("sendgrid", [event(3000)])
        finally:
            await real_redis.config_set("maxmemory", 0)
        await store.drain()
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 3000  # nothing lost, nothing added

    async def test_the_slowest_group_holds_trimming_back(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        await make_group(real_redis, "audit")
        for start in range(0, 2000, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
            await consume(real_redis)  # only the delivery group keeps up
        await store.drain()
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 2000

    async def test_trimmed_events_leave_the_indexes(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        two_per_email = [event(n, email_id=f"msg_{n // 2}") for n in range(1101)]
        await store.append("sendgrid", two_per_email[:500])
        await store.append("sendgrid", two_per_email[500:1000])
        await consume(real_redis)
        # 101 past maxlen: events 0-100 go, and with them their index members.
        await store.append("sendgrid", two_per_email[1000:])
        await store.drain()
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 1000
        assert not await real_redis.exists(keys.events_by_email("msg_0"))
        assert not await real_redis.exists(keys.events_by_recipient("user100@example.com"))
        # msg_50's first event (100) went, its second (101) stays.
        found, _ = await store.recent(EventFilter(email_id="msg_50"), before=None, limit=10)
        assert [e.provider_event_id for e in found] == ["sg-101"]
        assert await real_redis.zcard(keys.events_by_email("msg_50")) == 1
        # Every member points at a stored event and every stored event is indexed.
        for pattern in (keys.events_by_email("*"), keys.events_by_recipient("*")):
            members = 0
            async for key in real_redis.scan_iter(match=pattern):
                members += await real_redis.zcard(key)
            assert members == 1000

    async def test_operational_events_are_indexed_by_account_not_by_email(
        self, real_redis: Redis
    ) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        announced = disabled_event("acc_acme")
        [stored] = (await store.append("mailhooks", [announced])).stored
        assert [key async for key in real_redis.scan_iter(match=keys.events_by_email("*"))] == []
        assert await real_redis.zcard(keys.events_by_account("acc_acme")) == 1
        found = await store.get(stored)
        assert found is not None
        assert (found.exclude_webhook, found.webhook_disabled) == (
            7,
            announced.webhook_disabled,
        )
        # The same announcement again (a repeated outcome) is stored once.
        assert (await store.append("mailhooks", [announced])).duplicates == [stored]

    async def test_recipients_that_lower_beyond_ascii_leave_the_index_too(
        self, real_redis: Redis
    ) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        unusual = "ÅSA.Öberg@Exämple.COM"  # str.lower changes Å and Ö; Lua's would not
        await store.append("sendgrid", [event(0, recipient=unusual)])
        key = keys.events_by_recipient(unusual)
        assert await real_redis.zcard(key) == 1
        for start in range(1, 1201, 400):
            await store.append("sendgrid", [event(n) for n in range(start, start + 400)])
            await consume(real_redis)
        await store.drain()
        assert not await real_redis.exists(key)
        assert not await real_redis.exists(keys.events_by_email("msg_0"))

    async def test_an_unreadable_entry_does_not_stop_trimming(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{not json"})
        for start in range(0, 1500, 500):
            await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
            await consume(real_redis)
        await store.drain()
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 1000

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


# -- with several partitions (16, on a Redis that refuses CROSSSLOT as a cluster does) --------

ACME = "acc_0kx8q2m4n1a7b3c9d2e5"  # partition 4 of 16
OTHER = "acc_0kx8q2m4n1zzzzzzzzzz"  # partition 14 of 16


def partition_of(account: str | None) -> int:
    return keys.partitioning().of_account(account)


async def consume_partition(redis: Redis, partition: int) -> list[str]:
    """Create the partition's group, read everything in it and acknowledge it: the ids read."""
    stream = EventStream(redis, partition=partition)
    await stream.ensure_group()
    read = await stream.read_new("test", count=10_000, block_ms=1)
    ids = [entry for entry, _ in read.events] + read.not_events
    if ids:
        await stream.ack(ids)
    return ids


def mixed_batch(start: int) -> list[Event]:
    """A SendGrid-style batch: events of two accounts, the default one and an unrouted one."""
    return [
        event(start, account_id=ACME),
        event(start + 1, account_id=OTHER),
        event(start + 2, account_id=ACME),
        event(start + 3),  # the default account
        event(start + 4, account_id=None),  # unrouted
    ]


@pytest.mark.anyio
@pytest.mark.redis
class TestPartitioned:
    async def test_a_mixed_batch_goes_to_each_accounts_partition_in_order(
        self, partitioned_redis: Redis
    ) -> None:
        store = EventStore(partitioned_redis, maxlen=10_000, dedup_ttl_seconds=60)
        batch = mixed_batch(1)
        result = await store.append("sendgrid", batch, [Ignored("sendgrid", "processed")])
        assert result.new == [True] * 5
        # The ids, in the caller's order, name the partition of each event's stream.
        expected = [partition_of(e.account_id) for e in batch]
        assert [int(id_.rsplit("_", 1)[1]) for id_ in result.stored] == expected
        assert len(set(expected)) == 4
        assert partition_of(None) == 0
        for id_, sent in zip(result.stored, batch, strict=True):
            found = await store.get(id_)
            assert found is not None
            assert found.email_id == sent.email_id
            assert found.account_id == sent.account_id
        # Each partition's stream is named with its tag, and holds that partition's events.
        acme = keys.events_stream(partition_of(ACME))
        assert acme.startswith("mh:{p4.")
        assert acme.endswith("}:events")
        assert await partitioned_redis.xlen(acme) == 2
        assert await partitioned_redis.xlen(keys.events_stream(partition_of(OTHER))) == 1
        assert await partitioned_redis.xlen(keys.events_stream(0)) == 1  # the unrouted
        assert not await partitioned_redis.exists(keys.EVENTS_STREAM)  # no untagged stream
        # Seen keys and indexes are in the partition of their event's account.
        for name in [k.decode() async for k in partitioned_redis.scan_iter(match="mh:*")]:
            if ":seen:" in name or ":events:email:" in name or ":events:account:" in name:
                assert name.startswith("mh:{p"), name
        assert await partitioned_redis.zcard(keys.events_by_account(ACME)) == 2
        assert await partitioned_redis.zcard(keys.events_by_email("msg_1", 4)) == 1
        # Counters: per partition, the ignored and the unrouted in partition 0's.
        zero = await partitioned_redis.hgetall(keys.inbound_counts(0))
        assert zero == {b"sendgrid:stored": b"1", b"sendgrid:unrouted": b"1",
                        b"sendgrid:ignored:processed": b"1"}  # fmt: skip
        four = await partitioned_redis.hgetall(keys.inbound_counts(partition_of(ACME)))
        assert four == {b"sendgrid:stored": b"2"}

    async def test_a_one_account_batch_touches_its_partition_only(
        self, partitioned_redis: Redis
    ) -> None:
        store = EventStore(partitioned_redis, maxlen=10_000, dedup_ttl_seconds=60)
        batch = [event(1, account_id=ACME), event(2, account_id=ACME)]
        result = await store.append("sendgrid", batch)
        partition = partition_of(ACME)
        assert [int(id_.rsplit("_", 1)[1]) for id_ in result.stored] == [partition] * 2
        assert await partitioned_redis.xlen(keys.events_stream(partition)) == 2
        assert not await partitioned_redis.exists(keys.events_stream(0))
        assert not await partitioned_redis.exists(keys.inbound_counts(0))
        # With something ignored too, that is counted in partition 0's, as in a mixed batch.
        again = await store.append(
            "sendgrid", [event(3, account_id=ACME)], [Ignored("sendgrid", "processed")]
        )
        assert int(again.stored[0].rsplit("_", 1)[1]) == partition
        zero = await partitioned_redis.hgetall(keys.inbound_counts(0))
        assert zero == {b"sendgrid:ignored:processed": b"1"}
        only_ignored = await store.append("sendgrid", [], [Ignored("sendgrid", "processed")])
        assert only_ignored.stored == []
        zero = await partitioned_redis.hgetall(keys.inbound_counts(0))
        assert zero == {b"sendgrid:ignored:processed": b"2"}

    async def test_a_retried_batch_is_recognised_in_each_partition(
        self, partitioned_redis: Redis
    ) -> None:
        store = EventStore(partitioned_redis, maxlen=10_000, dedup_ttl_seconds=60)
        first = await store.append("sendgrid", mixed_batch(1))
        again = await store.append("sendgrid", mixed_batch(1))
        assert again.stored == []
        assert again.new == [False] * 5
        assert again.duplicates == first.stored  # the originals' ids, partitions and all
        counts = await partitioned_redis.hgetall(keys.inbound_counts(partition_of(ACME)))
        assert counts[b"sendgrid:duplicate"] == b"2"

    async def test_an_accounts_reads_read_its_partition(self, partitioned_redis: Redis) -> None:
        store = EventStore(partitioned_redis, maxlen=10_000, dedup_ttl_seconds=60)
        result = await store.append("sendgrid", mixed_batch(1))
        # The same email id and recipient sent by another account: its own index.
        await store.append("sendgrid", [event(1, account_id=OTHER, provider_event_id="x")])
        acme, _ = await store.recent(EventFilter(account=ACME), before=None, limit=10)
        assert [e.id for e in acme] == [result.stored[2], result.stored[0]]
        by_email, _ = await store.recent(
            EventFilter(account=ACME, email_id="msg_1"), before=None, limit=10
        )
        assert [e.id for e in by_email] == [result.stored[0]]
        by_recipient, _ = await store.recent(
            EventFilter(account=OTHER, recipient="USER1@example.com"), before=None, limit=10
        )
        assert [e.account_id for e in by_recipient] == [OTHER]
        default, _ = await store.recent(EventFilter(), before=None, limit=10)
        assert [e.id for e in default] == [result.stored[3]]
        unrouted, _ = await store.recent(EventFilter(account=None), before=None, limit=10)
        assert [e.id for e in unrouted] == [result.stored[4]]
        # An id naming another partition, or none, is no event here.
        entry, _, partition = result.stored[0].removeprefix("evt_").partition("_")
        assert await store.get(f"evt_{entry}_{int(partition) + 1}") is None
        assert await store.get(f"evt_{entry}") is None
        assert await store.get(f"evt_{entry}_16") is None

    async def test_the_every_account_view_merges_the_partitions_newest_first(
        self, partitioned_redis: Redis
    ) -> None:
        store = EventStore(partitioned_redis, maxlen=10_000, dedup_ttl_seconds=60)
        stored: list[str] = []
        for n in range(0, 30, 5):
            stored += (await store.append("sendgrid", mixed_batch(n))).stored
        seen, before = [], None
        while True:
            page, before = await store.recent(
                EventFilter(every_account=True), before=before, limit=4
            )
            seen += [str(e.id) for e in page]
            if before is None:
                break
        assert sorted(seen) == sorted(stored)
        assert len(set(seen)) == 30
        times = [entry_id(id_) for id_ in seen]
        assert times == sorted(times, key=lambda e: tuple(map(int, str(e).split("-"))))[::-1]

    async def test_the_same_entry_id_in_two_partitions_is_listed_once_each(
        self, partitioned_redis: Redis
    ) -> None:
        """Entry ids are per stream: two partitions' events added in the same millisecond
        can share one. Their ids differ by partition, and paging sees both."""
        for account in (ACME, OTHER):
            payload = msgspec.json.encode(event(1, account_id=None))
            stream = keys.events_stream(partition_of(account))
            await partitioned_redis.xadd(stream, {"e": payload, "a": account}, id="999-0")
            await partitioned_redis.xadd(stream, {"e": payload, "a": account}, id="1000-0")
        store = EventStore(partitioned_redis, maxlen=10_000, dedup_ttl_seconds=60)
        seen, before = [], None
        while True:
            page, before = await store.recent(
                EventFilter(every_account=True), before=before, limit=1
            )
            seen += [str(e.id) for e in page]
            if before is None:
                break
        assert seen == ["evt_1000-0_14", "evt_1000-0_4", "evt_999-0_14", "evt_999-0_4"]
        found = await store.get("evt_1000-0_4")
        assert found is not None
        assert found.account_id == ACME

    async def test_a_filtered_every_account_view_within_a_small_scan_budget_misses_nothing(
        self, partitioned_redis: Redis
    ) -> None:
        store = EventStore(partitioned_redis, maxlen=10_000, dedup_ttl_seconds=60, scan_budget=20)
        clicks = []
        for n in range(0, 60, 5):
            batch = mixed_batch(n)
            batch[n % 5].type = "email.click"
            result = await store.append("sendgrid", batch)
            clicks.append(result.stored[n % 5])
        seen, before, pages = [], None, 0
        while True:
            page, before = await store.recent(
                EventFilter(every_account=True, type="email.click"), before=before, limit=5
            )
            seen += [str(e.id) for e in page]
            pages += 1
            if before is None:
                break
        assert sorted(seen) == sorted(clicks)
        assert len(seen) == len(set(seen))
        assert pages > 3  # the budget cut pages short, and the cursor resumed each
