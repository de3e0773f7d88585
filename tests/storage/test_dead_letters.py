"""Dead letters on a real Redis: setting an entry aside (copied and acknowledged in one
script, only under its conditions), reading, redriving and deleting them."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.core.ids import dead_letter_id, entry_id, entry_member
from service.storage import keys
from service.storage.dead_letters import DeadLetterStore, NothingToRedrive
from service.storage.events import EventFilter, EventStore
from service.storage.stream import EventStream
from service.storage.trimming import EventTrimmer
from tests.storage.test_events import ACME, OTHER, event, partition_of

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

AT = "2026-03-03T10:00:00Z"


async def read_all(redis: Redis, consumer: str = "c1") -> list[str]:
    """Every new entry, read by `consumer` (so pending under it): their entry ids."""
    response = await redis.xreadgroup(
        keys.DELIVERY_GROUP, consumer, {keys.EVENTS_STREAM: ">"}, count=1000
    )
    return [raw.decode() for raw, _ in response[0][1]] if response else []


async def pending_ids(redis: Redis) -> list[str]:
    rows = await redis.xpending_range(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, "-", "+", 100)
    return [row["message_id"].decode() for row in rows]


@pytest.fixture
async def stream(real_redis: Redis) -> EventStream:
    stream = EventStream(real_redis)
    await stream.ensure_group()
    return stream


@pytest.fixture
def events(real_redis: Redis) -> EventStore:
    return EventStore(real_redis, maxlen=10_000, dedup_ttl_seconds=60)


class TestSettingAside:
    async def test_copies_the_entry_with_why_and_acknowledges_it(
        self, real_redis: Redis, stream: EventStream, events: EventStore
    ) -> None:
        [stored] = (await events.append("sendgrid", [event(1, account_id="acc_x")])).stored
        [entry] = await read_all(real_redis)
        letter = await stream.dead_letter(
            entry, consumer="c1", reason="failed", detail="ValueError: boom", at=AT
        )
        assert letter is not None
        assert await pending_ids(real_redis) == []
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 1  # trimming removes it, later
        [(raw_id, fields)] = await real_redis.xrange(keys.DEAD_LETTERS)
        assert raw_id.decode() == letter
        original = (await real_redis.xrange(keys.EVENTS_STREAM))[0][1]
        assert fields == {
            b"entry": entry.encode(),
            b"reason": b"failed",
            b"detail": b"ValueError: boom",
            b"at": AT.encode(),
            b"deliveries": b"1",
            b"consumer": b"c1",
            **{b"f:" + name: value for name, value in original.items()},
        }
        assert entry_id(stored) == entry

    async def test_not_before_min_deliveries_nor_for_another_consumer_nor_twice(
        self, real_redis: Redis, stream: EventStream, events: EventStore
    ) -> None:
        await events.append("sendgrid", [event(1)])
        [entry] = await read_all(real_redis)

        async def bury(consumer: str = "c1", min_deliveries: int = 0) -> str | None:
            return await stream.dead_letter(
                entry,
                consumer=consumer,
                reason="failed",
                detail="x",
                at=AT,
                min_deliveries=min_deliveries,
            )

        assert await bury(min_deliveries=2) is None  # handed out once so far
        assert await bury(consumer="c2") is None  # taken over by another: theirs now
        await real_redis.xclaim(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, "c1", 0, [entry])
        assert await bury(min_deliveries=2) is not None  # handed out twice now
        assert await bury() is None  # acknowledged: nothing to set aside any more
        assert await real_redis.xlen(keys.DEAD_LETTERS) == 1

    async def test_an_entry_gone_from_the_stream_is_still_acknowledged(
        self, real_redis: Redis, stream: EventStream, events: EventStore
    ) -> None:
        await events.append("sendgrid", [event(1)])
        [entry] = await read_all(real_redis)
        await real_redis.xdel(keys.EVENTS_STREAM, entry)
        letter = await stream.dead_letter(
            entry, consumer="c1", reason="reclaimed", detail="x", at=AT
        )
        assert letter is not None
        assert await pending_ids(real_redis) == []
        store = DeadLetterStore(real_redis)
        with pytest.raises(NothingToRedrive):
            await store.redrive(dead_letter_id(letter))
        assert await store.count() == 1  # kept, to be read and deleted

    async def test_reclaim_says_how_often_each_entry_was_handed_out(
        self, real_redis: Redis, stream: EventStream, events: EventStore
    ) -> None:
        await events.append("sendgrid", [event(n) for n in range(2)])
        first, second = await read_all(real_redis, "dead")
        await real_redis.xclaim(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, "dead", 0, [second])
        read = await stream.reclaim("alive", min_idle_ms=0, count=10)
        assert read.deliveries == {first: 2, second: 3}

    async def test_trimming_goes_past_an_entry_set_aside(
        self, real_redis: Redis, stream: EventStream, events: EventStore
    ) -> None:
        await events.append("sendgrid", [event(n) for n in range(5)])
        entries = await read_all(real_redis)
        await stream.ack(entries[1:])
        trimmer = EventTrimmer(real_redis, maxlen=1)
        assert await trimmer.trim() == 0  # the first entry, pending, holds everything back
        await stream.dead_letter(entries[0], consumer="c1", reason="failed", detail="x", at=AT)
        assert await trimmer.trim() == 4
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 1


class TestReading:
    async def test_pages_newest_first_and_decodes_what_it_can(
        self, real_redis: Redis, stream: EventStream, events: EventStore
    ) -> None:
        await events.append("sendgrid", [event(1, account_id="acc_x"), event(2)])
        await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"\xff{not json"})
        entries = await read_all(real_redis)
        for entry in entries:
            await stream.dead_letter(entry, consumer="c1", reason="failed", detail="x", at=AT)
        store = DeadLetterStore(real_redis)
        assert await store.count() == 3
        page, before = await store.page(before=None, limit=2)
        assert [letter.original for letter in page] == [entries[2], entries[1]]
        assert before == page[-1].id
        rest, after_rest = await store.page(before=before, limit=2)
        assert [letter.original for letter in rest] == [entries[0]]
        assert after_rest is None

        garbage, default, tagged = page[0], page[1], rest[0]
        assert garbage.event() is None
        assert garbage.account_id is None  # no event to tell
        assert garbage.text_fields() == {"e": "\\xff{not json"}
        assert default.account_id == "acc_default"
        tagged_event = tagged.event()
        assert tagged_event is not None
        assert (tagged_event.email_id, tagged_event.account_id) == ("msg_1", "acc_x")
        assert tagged.account_id == "acc_x"
        assert tagged.event_id == f"evt_{entries[0]}"
        assert (await store.get(tagged.id)) == tagged
        for missing in ("dl_1-0", "evt_1-0", "nonsense"):
            assert await store.get(missing) is None


class TestRedrive:
    async def test_a_new_entry_with_the_same_fields_indexed_as_appended(
        self, real_redis: Redis, stream: EventStream, events: EventStore
    ) -> None:
        await events.append("sendgrid", [event(1, account_id="acc_x")])
        [entry] = await read_all(real_redis)
        letter = await stream.dead_letter(entry, consumer="c1", reason="failed", detail="x", at=AT)
        assert letter is not None
        [(_, original)] = await real_redis.xrange(keys.DEAD_LETTERS)
        store = DeadLetterStore(real_redis)
        new_id = await store.redrive(dead_letter_id(letter))
        assert new_id is not None
        new_entry = entry_id(new_id)
        assert new_entry is not None
        # The original goes (no group needs it), its copy is a new entry with its fields.
        [(raw_id, fields)] = await real_redis.xrange(keys.EVENTS_STREAM)
        assert raw_id.decode() == new_entry
        copied = {n.removeprefix(b"f:"): v for n, v in original.items() if n.startswith(b"f:")}
        assert fields == copied
        assert fields[b"a"] == b"acc_x"
        assert await store.count() == 0
        assert await store.redrive(dead_letter_id(letter)) is None
        # The new entry is in the email, recipient and account indexes, like an append's.
        member = entry_member(new_entry).encode()
        for index in (
            keys.events_by_email("msg_1"),
            keys.events_by_recipient("user1@example.com"),
            keys.events_by_account("acc_x"),
        ):
            assert await real_redis.zrange(index, 0, -1) == [member]
        [found], _ = await events.recent(EventFilter(account="acc_x"), before=None, limit=10)
        assert found.id == new_id
        # ...and the group reads it as a new entry.
        assert await read_all(real_redis) == [new_entry]

    async def test_the_original_stays_while_another_group_needs_it(
        self, real_redis: Redis, stream: EventStream, events: EventStore
    ) -> None:
        await events.append("sendgrid", [event(1)])
        await real_redis.xgroup_create(keys.EVENTS_STREAM, "mine", id="0")  # reads nothing
        [entry] = await read_all(real_redis)
        letter = await stream.dead_letter(entry, consumer="c1", reason="failed", detail="x", at=AT)
        assert letter is not None
        new_id = await DeadLetterStore(real_redis).redrive(dead_letter_id(letter))
        rows = await real_redis.xrange(keys.EVENTS_STREAM)
        assert [raw.decode() for raw, _ in rows] == [entry, entry_id(new_id or "")]

    async def test_redrive_all_or_since_a_time(
        self, real_redis: Redis, stream: EventStream, events: EventStore
    ) -> None:
        await events.append("sendgrid", [event(n) for n in range(3)])
        letters = []
        for entry in await read_all(real_redis):
            letter = await stream.dead_letter(
                entry, consumer="c1", reason="failed", detail="x", at=AT
            )
            assert letter is not None
            letters.append(letter)
        store = DeadLetterStore(real_redis)
        times = [int(letter.split("-")[0]) for letter in letters]
        assert await store.redrive_all(since_ms=times[2] + 1) == 0
        since_second = sum(t >= times[1] for t in times)
        assert await store.redrive_all(since_ms=times[1]) == since_second
        assert await store.redrive_all() == 3 - since_second
        assert await store.count() == 0
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 3  # the copies, not the originals
        assert await store.redrive_all() == 0

    async def test_delete(self, real_redis: Redis, stream: EventStream, events: EventStore) -> None:
        await events.append("sendgrid", [event(1)])
        [entry] = await read_all(real_redis)
        letter = await stream.dead_letter(entry, consumer="c1", reason="failed", detail="x", at=AT)
        assert letter is not None
        store = DeadLetterStore(real_redis)
        assert await store.delete(dead_letter_id(letter))
        assert not await store.delete(dead_letter_id(letter))
        assert not await store.delete("nonsense")
        assert await store.count() == 0


class TestPartitioned:
    async def test_set_aside_listed_and_redriven_in_their_partitions(
        self, partitioned_redis: Redis
    ) -> None:
        events = EventStore(partitioned_redis, maxlen=10_000, dedup_ttl_seconds=60)
        stored = (
            await events.append("sendgrid", [event(1, account_id=ACME), event(2, account_id=OTHER)])
        ).stored
        letters = []
        for account in (ACME, OTHER):
            stream = EventStream(partitioned_redis, partition=partition_of(account))
            await stream.ensure_group()
            [(entry, _)] = (await stream.read_new("c1", count=10, block_ms=1)).events
            letter = await stream.dead_letter(
                entry, consumer="c1", reason="failed", detail="boom", at=AT
            )
            assert letter is not None
            letters.append(letter)
        acme_dead = keys.dead_letters(partition_of(ACME))
        assert acme_dead.startswith("mh:{p4.")
        assert await partitioned_redis.xlen(acme_dead) == 1
        store = DeadLetterStore(partitioned_redis)
        assert await store.count() == 2
        # Listed newest first over the partitions, a page at a time; ids name the partition.
        first, before = await store.page(before=None, limit=1)
        second, last = await store.page(before=before, limit=1)
        listed = first + second
        assert last is None
        assert {letter.event_id for letter in listed} == set(stored)
        assert {letter.account_id for letter in listed} == {ACME, OTHER}
        acme = next(letter for letter in listed if letter.account_id == ACME)
        assert acme.id.endswith(f"_{partition_of(ACME)}")
        shown = await store.get(acme.id)
        assert shown is not None
        assert shown.public().event_id == stored[0]
        # Redriven into its own partition's stream, indexed there.
        new_id = await store.redrive(acme.id)
        assert new_id is not None
        assert new_id.endswith(f"_{partition_of(ACME)}")
        again = await events.get(new_id)
        assert again is not None
        assert again.account_id == ACME
        found, _ = await events.recent(EventFilter(account=ACME), before=None, limit=10)
        assert [e.id for e in found] == [new_id]
        assert await store.redrive_all() == 1
        assert await store.count() == 0
        assert await store.get(acme.id) is None
        assert not await store.delete(acme.id)
