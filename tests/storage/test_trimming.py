"""The two-phase trim on a real Redis: a stale plan never removes what a group still needs,
the indexes keep to the stream, and appends trim in the background, one trim at a time."""

from __future__ import annotations

import logging

import anyio
import pytest
from redis.asyncio import Redis

from service.core.ids import entry_id, entry_member
from service.storage import keys
from service.storage.events import EventStore
from service.storage.trimming import EventTrimmer
from tests.storage.test_events import (
    ACME,
    OTHER,
    consume,
    consume_partition,
    event,
    make_group,
    partition_of,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def index_members(redis: Redis) -> set[str]:
    """Every (index key, member) there is, as "key member"."""
    found = set()
    for pattern in (keys.events_by_email("*"), keys.events_by_recipient("*")):
        async for key in redis.scan_iter(match=pattern):
            for member in await redis.zrange(key, 0, -1):
                found.add(f"{key.decode()} {member.decode()}")
    return found


async def expected_members(redis: Redis) -> set[str]:
    """What the indexes should hold: the members of the entries the stream holds."""
    found = set()
    for raw_id, fields in await redis.xrange(keys.EVENTS_STREAM):
        member = entry_member(raw_id.decode())
        email = fields[b"e"].split(b'"email_id":"')[1].split(b'"')[0].decode()
        recipient = fields[b"e"].split(b'"recipient":"')[1].split(b'"')[0].decode()
        found.add(f"{keys.events_by_email(email)} {member}")
        found.add(f"{keys.events_by_recipient(recipient)} {member}")
    return found


async def stored(redis: Redis, count: int) -> list[str]:
    """`count` events appended with no trim (no group yet), delivered and acknowledged."""
    store = EventStore(redis, maxlen=10**6, dedup_ttl_seconds=60)
    ids: list[str] = []
    for start in range(0, count, 500):
        result = await store.append("sendgrid", [event(n) for n in range(start, start + 500)])
        ids += [entry for e in result.stored if (entry := entry_id(e))]
    await make_group(redis)
    await consume(redis)
    return ids


class TestStalePlans:
    async def test_a_group_created_and_reading_after_the_plan_keeps_everything(
        self, real_redis: Redis
    ) -> None:
        await stored(real_redis, 1500)
        trimmer = EventTrimmer(real_redis, maxlen=1000)
        plan = await trimmer.plan()
        assert plan is not None
        assert plan.entries == 500
        # Meanwhile another group appears, from the first entry, and reads a few.
        await real_redis.xgroup_create(keys.EVENTS_STREAM, "audit", id="0")
        await real_redis.xreadgroup("audit", "a", {keys.EVENTS_STREAM: ">"}, count=10)
        assert await trimmer.apply(plan) == 0
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 1500
        assert await index_members(real_redis) == await expected_members(real_redis)

    async def test_entries_read_again_after_the_plan_stay(self, real_redis: Redis) -> None:
        ids = await stored(real_redis, 1500)
        trimmer = EventTrimmer(real_redis, maxlen=1000)
        plan = await trimmer.plan()
        assert plan is not None
        assert plan.entries == 500
        # The group is set back (as an operator replaying would) and reads 201-210 again:
        # read, not acknowledged. Only 0-200 may go now.
        await real_redis.xgroup_setid(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, ids[200])
        await real_redis.xreadgroup(keys.DELIVERY_GROUP, "w", {keys.EVENTS_STREAM: ">"}, count=10)
        assert await trimmer.apply(plan) == 201
        oldest = await real_redis.xrange(keys.EVENTS_STREAM, count=1)
        assert oldest[0][0].decode() == ids[201]
        assert await index_members(real_redis) == await expected_members(real_redis)

    async def test_a_plan_applied_twice_removes_nothing_more(self, real_redis: Redis) -> None:
        await stored(real_redis, 1500)
        trimmer = EventTrimmer(real_redis, maxlen=1000)
        plan = await trimmer.plan()
        assert plan is not None
        assert await trimmer.apply(plan) == 500
        assert await trimmer.apply(plan) == 0  # as when two processes planned the same
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 1000
        assert await index_members(real_redis) == await expected_members(real_redis)

    async def test_nothing_is_planned_below_what_a_group_has_not_read(
        self, real_redis: Redis
    ) -> None:
        ids = await stored(real_redis, 1500)
        await real_redis.xgroup_create(keys.EVENTS_STREAM, "audit", id=ids[99])
        plan = await EventTrimmer(real_redis, maxlen=1000).plan()
        assert plan is not None
        assert plan.entries == 99


class TestBackgroundTrim:
    async def test_appends_trim_in_the_background_and_the_indexes_follow(
        self, real_redis: Redis
    ) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        for start in range(0, 3000, 300):
            await store.append("sendgrid", [event(n) for n in range(start, start + 300)])
            await consume(real_redis)
        await store.drain()
        assert 1000 <= await real_redis.xlen(keys.EVENTS_STREAM) < 1100
        assert await index_members(real_redis) == await expected_members(real_redis)

    async def test_concurrent_appends_start_one_trim(self, real_redis: Redis) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)
        await store.append("sendgrid", [event(n) for n in range(1200)])
        await consume(real_redis)
        await store.drain()
        await real_redis.config_resetstat()

        async def append(n: int) -> None:
            await store.append("sendgrid", [event(n)])

        async with anyio.create_task_group() as group:
            for n in range(1200, 1350):
                group.start_soon(append, n)  # each one finds a trim due
        await store.drain()
        stats = await real_redis.info("commandstats")
        # Each trim reads the groups in its plan and again in its script: a few trims for
        # 150 appends that each found one due, not one per append (how many depends on
        # how the appends interleave with the running trim).
        assert stats["cmdstat_xinfo|groups"]["calls"] <= 10
        assert await real_redis.xlen(keys.EVENTS_STREAM) == 1000

    async def test_a_failing_trim_is_logged_and_the_append_answers(
        self, real_redis: Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
        await make_group(real_redis)

        async def broken(self: EventTrimmer, *, min_excess: int = 1) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(EventTrimmer, "plan", broken)
        with caplog.at_level(logging.ERROR, logger="mailhooks.trim"):
            result = await store.append("sendgrid", [event(n) for n in range(1200)])
            await store.drain()
        assert len(result.stored) == 1200
        assert "trimming the events stream failed" in caplog.text


@pytest.mark.anyio
@pytest.mark.redis
class TestPartitioned:
    async def test_each_partitions_stream_is_trimmed_to_its_share_with_its_indexes(
        self, partitioned_redis: Redis
    ) -> None:
        # 1,600 over 16 partitions: 100 each.
        store = EventStore(partitioned_redis, maxlen=1600, dedup_ttl_seconds=60)
        for n in range(0, 600, 3):
            await store.append(
                "sendgrid",
                [
                    event(n, account_id=ACME),
                    event(n + 1, account_id=OTHER),
                    event(n + 2, account_id=None),
                ],
            )
        await store.drain()  # no group yet: nothing can go
        for account in (ACME, OTHER, None):
            await consume_partition(partitioned_redis, partition_of(account))
        removed = await store.trim()
        assert removed == 3 * 100  # each of the three streams, from 200 to 100
        for account in (ACME, OTHER, None):
            partition = partition_of(account)
            stream = keys.events_stream(partition)
            assert await partitioned_redis.xlen(stream) == 100
            # The index members left are those of entries left, in the partition's indexes.
            left = {entry_member(raw.decode()) for raw, _ in await partitioned_redis.xrange(stream)}
            email_keys = [
                key
                async for key in partitioned_redis.scan_iter(
                    match=keys.events_by_email("*", partition)
                )
            ]
            members = {
                m.decode() for key in email_keys for m in await partitioned_redis.zrange(key, 0, -1)
            }
            assert members == left
        indexed = {
            m.decode() for m in await partitioned_redis.zrange(keys.events_by_account(ACME), 0, -1)
        }
        assert len(indexed) == 100
