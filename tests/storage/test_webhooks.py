"""The webhook store on a real Redis: hash and indexes always agree, under concurrency too."""

from __future__ import annotations

import random

import anyio
import pytest
from redis.asyncio import Redis

from service.core.accounts import DEFAULT_ACCOUNT
from service.storage import keys
from service.storage.autopipeline import AutoPipeline
from service.storage.webhooks import (
    SUBSCRIBER_TYPES,
    WebhookChanges,
    WebhookLimitReached,
    WebhookStore,
)
from tests.partitioned import assert_tagged, in_partition

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ACME, GLOBEX = "acc_acme", "acc_globex"


async def assert_indexes_consistent(redis: Redis, account: str = DEFAULT_ACCOUNT) -> None:
    """Every hash is indexed under exactly its events, and every index entry has a hash."""
    indexed = {int(i) for i in await redis.zrange(keys.account_webhooks(account), 0, -1)}
    # Webhook ids of the account's partition end in its number (0 with one partition).
    in_its_partition = keys.webhook(keys.partitioning().of_account(account))
    names = [k.split(b":")[-1] for k in await redis.keys(in_its_partition[:-1] + "*")]
    hashes = {
        int(name)
        for name in names
        if name.isdigit()  # not the id sequence
        and (await redis.hget(keys.webhook(int(name)), "account") or b"").decode() == account
    }
    assert indexed == hashes
    expected: dict[str, set[int]] = {t: set() for t in SUBSCRIBER_TYPES}
    for webhook_id in hashes:
        events = (await redis.hget(keys.webhook(webhook_id), "events")).decode()
        for event_type in events.split(","):
            expected[event_type].add(webhook_id)
    for event_type in SUBSCRIBER_TYPES:
        members = {int(m) for m in await redis.smembers(keys.subscribers(account, event_type))}
        assert members == expected[event_type], event_type


async def subscribed(
    store: WebhookStore, event_type: str, account: str = DEFAULT_ACCOUNT
) -> set[int]:
    return {webhook.id for webhook in await store.subscribers(account, event_type)}


async def make(
    store: WebhookStore,
    events: tuple[str, ...] = ("open",),
    *,
    account: str = DEFAULT_ACCOUNT,
    limit: int = 1000,
) -> int:
    webhook = await store.create(
        account=account,
        url="https://a.example/",
        events=events,
        secret="secret-secret",
        active=True,
        now="t",
        limit=limit,
    )
    return webhook.id


async def five_of_twenty_concurrent_creates(store: WebhookStore) -> None:
    """20 concurrent creates against a limit of 5: exactly 5 pass."""
    results: list[bool] = []

    async def attempt() -> None:
        try:
            await make(store, account=ACME, limit=5)
            results.append(True)
        except WebhookLimitReached:
            results.append(False)

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(attempt)
    assert results.count(True) == 5
    assert await store.count(ACME) == 5


class TestStore:
    async def test_create_writes_hash_and_indexes(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        webhook_id = await make(store, ("open", "click"))
        stored = await real_redis.hgetall(keys.webhook(webhook_id))
        assert stored[b"url"] == b"https://a.example/"
        assert stored[b"events"] == b"open,click"
        assert stored[b"secret"] == b"secret-secret"
        assert stored[b"active"] == b"1"
        assert await subscribed(store, "open") == {webhook_id}
        assert await subscribed(store, "click") == {webhook_id}
        assert await subscribed(store, "bounce") == set()
        await assert_indexes_consistent(real_redis)

    async def test_update_moves_subscriptions(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        webhook_id = await make(store, ("open", "click"))
        updated = await store.update(
            webhook_id, DEFAULT_ACCOUNT, WebhookChanges(events=("bounce",)), now="t2"
        )
        assert updated is not None
        assert updated.events == ("bounce",)
        assert updated.updated_at == "t2"
        assert await subscribed(store, "open") == set()
        assert await subscribed(store, "bounce") == {webhook_id}
        await assert_indexes_consistent(real_redis)

    async def test_update_without_events_keeps_subscriptions(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        webhook_id = await make(store, ("open",))
        await store.update(webhook_id, DEFAULT_ACCOUNT, WebhookChanges(active=False), now="t2")
        assert await subscribed(store, "open") == {webhook_id}
        assert (await store.get(webhook_id)).active is False  # type: ignore[union-attr]

    async def test_wildcard_subscribers_match_every_type(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        everything = await make(store, ("*",))
        opens = await make(store, ("open",))
        assert await subscribed(store, "open") == {everything, opens}
        assert await subscribed(store, "complaint") == {everything}

    async def test_a_lookup_is_two_round_trips_whatever_the_subscribers(
        self, real_redis: Redis
    ) -> None:
        pipeline = AutoPipeline(real_redis)
        store = WebhookStore(real_redis, pipeline)
        expected = {await make(store, ("open",)) for _ in range(20)}
        await store.delete(min(expected), DEFAULT_ACCOUNT)
        expected.remove(min(expected))
        before = pipeline.round_trips
        assert await subscribed(store, "open") == expected
        assert pipeline.round_trips - before == 2  # the ids, then every hash at once

    async def test_delete_removes_everything(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        webhook_id = await make(store, ("open", "bounce"))
        assert await store.delete(webhook_id, DEFAULT_ACCOUNT) is True
        assert await store.delete(webhook_id, DEFAULT_ACCOUNT) is False
        assert await real_redis.exists(keys.webhook(webhook_id)) == 0
        assert await subscribed(store, "open") == set()
        await assert_indexes_consistent(real_redis)

    async def test_update_of_deleted_webhook_does_not_resurrect_it(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        webhook_id = await make(store)
        await store.delete(webhook_id, DEFAULT_ACCOUNT)
        assert (
            await store.update(
                webhook_id, DEFAULT_ACCOUNT, WebhookChanges(events=("click",)), now="t"
            )
            is None
        )
        assert await real_redis.exists(keys.webhook(webhook_id)) == 0
        assert await subscribed(store, "click") == set()

    async def test_concurrent_creates_updates_deletes_stay_consistent(
        self, real_redis: Redis
    ) -> None:
        store = WebhookStore(real_redis)
        rng = random.Random(7)
        choices = [("open",), ("click", "bounce"), ("*",), ("delivered", "complaint", "open")]
        ids: list[int] = []

        async def created() -> None:
            ids.append(await make(store, rng.choice(choices)))

        async with anyio.create_task_group() as group:
            for _ in range(100):
                group.start_soon(created)
        assert sorted(ids) == list(range(1, 101))

        async def churn(webhook_id: int) -> None:
            for _ in range(3):
                changes = WebhookChanges(events=rng.choice(choices))
                await store.update(webhook_id, DEFAULT_ACCOUNT, changes, now="t")
            if webhook_id % 3 == 0:
                await store.delete(webhook_id, DEFAULT_ACCOUNT)

        async with anyio.create_task_group() as group:
            for webhook_id in ids:
                group.start_soon(churn, webhook_id)
                group.start_soon(churn, webhook_id)  # two writers racing on each webhook
        await assert_indexes_consistent(real_redis)
        remaining, _ = await store.list(DEFAULT_ACCOUNT, after=0, limit=1000)
        assert [w.id for w in remaining] == [i for i in range(1, 101) if i % 3]


class TestAccounts:
    async def test_an_account_sees_and_subscribes_only_its_own(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        acme = await make(store, ("open",), account=ACME)
        globex = await make(store, ("*",), account=GLOBEX)
        assert await subscribed(store, "open", ACME) == {acme}
        assert await subscribed(store, "open", GLOBEX) == {globex}
        assert await subscribed(store, "open") == set()  # the default account has none
        assert await store.get(acme, GLOBEX) is None
        assert (await store.get(acme, ACME)).id == acme  # type: ignore[union-attr]
        listed, _ = await store.list(ACME, after=0, limit=100)
        assert [w.id for w in listed] == [acme]
        await assert_indexes_consistent(real_redis, ACME)

    async def test_another_account_cannot_change_or_delete_it(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        acme = await make(store, ("open",), account=ACME)
        assert await store.update(acme, GLOBEX, WebhookChanges(events=("click",)), now="t") is None
        assert await store.delete(acme, GLOBEX) is False
        assert (await store.get(acme)).events == ("open",)  # type: ignore[union-attr]
        assert await subscribed(store, "click", GLOBEX) == set()
        assert await store.delete(acme, ACME) is True

    async def test_a_webhook_from_before_accounts_is_the_default_accounts(
        self, real_redis: Redis
    ) -> None:
        # As the single-account releases wrote it: no account field.
        await real_redis.hset(
            keys.webhook(7),
            mapping={
                "id": 7, "url": "https://a.example/", "events": "open", "secret": "s" * 8,
                "active": "1", "created_at": "t",
            },
        )  # fmt: skip
        await real_redis.zadd(keys.WEBHOOK_INDEX, {"7": 7})
        await real_redis.sadd("mh:subscribers:open", 7)
        store = WebhookStore(real_redis)
        assert [w.id for w in await store.subscribers(DEFAULT_ACCOUNT, "open")] == [7]
        assert await store.get(7, ACME) is None
        assert await store.delete(7, ACME) is False
        assert await store.delete(7, DEFAULT_ACCOUNT) is True

    async def test_the_limit_holds_under_concurrent_creates(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        await five_of_twenty_concurrent_creates(store)
        await make(store, account=GLOBEX, limit=5)  # another account's count is its own


class TestPartitioned:
    """With 16 partitions, named as on a cluster, on a Redis that refuses any script over
    two slots (CROSSSLOT): each account's webhooks live in its partition."""

    async def test_create_update_rotate_delete_in_two_partitions(
        self, partitioned_redis: Redis
    ) -> None:
        partitions = keys.partitioning()
        acme, globex = partitions.of_account(ACME), partitions.of_account(GLOBEX)
        assert acme != globex
        store = WebhookStore(partitioned_redis)
        first = await make(store, ("open", "click"), account=ACME)
        second = await make(store, ("open",), account=ACME)
        other = await make(store, ("*",), account=GLOBEX)
        # Issued from each partition's own sequence; the id names the partition.
        assert (first, second) == (1 * 16 + acme, 2 * 16 + acme)
        assert other == 1 * 16 + globex
        assert {partitions.of_webhook(i) for i in (first, second)} == {acme}
        assert await partitioned_redis.get(keys.webhook_sequence(acme)) == b"2"

        names = await assert_tagged(partitioned_redis)
        assert keys.webhook(first) in in_partition(names, acme)
        assert keys.account_webhooks(ACME) in in_partition(names, acme)
        assert keys.subscribers(ACME, "click") in in_partition(names, acme)
        assert keys.webhook(other) in in_partition(names, globex)
        assert keys.subscribers(GLOBEX, "*") in in_partition(names, globex)
        await assert_indexes_consistent(partitioned_redis, ACME)
        await assert_indexes_consistent(partitioned_redis, GLOBEX)

        assert await subscribed(store, "open", ACME) == {first, second}
        assert await subscribed(store, "open", GLOBEX) == {other}
        listed, _ = await store.list(ACME, after=0, limit=10)
        assert [w.id for w in listed] == [first, second]

        changes = WebhookChanges(events=("bounce",), url="https://b.example/")
        updated = await store.update(first, ACME, changes, now="t2")
        assert updated is not None
        assert updated.events == ("bounce",)
        assert await subscribed(store, "click", ACME) == set()
        assert await subscribed(store, "bounce", ACME) == {first}
        # Another partition's id is another account's: answered as missing, no CROSSSLOT.
        assert await store.update(other, ACME, changes, now="t2") is None
        assert await store.delete(other, ACME) is False
        assert (
            await store.rotate_secret(
                other, ACME, secret="x" * 16, grace_seconds=60, now_ms=0, now="t3"
            )
            is None
        )

        rotated = await store.rotate_secret(
            first, ACME, secret="new-secret-secret", grace_seconds=60, now_ms=0, now="t3"
        )
        assert rotated is not None
        assert rotated.secret == "new-secret-secret"
        assert [s for s, _ in rotated.previous_secrets] == ["secret-secret"]

        assert await store.delete(first, GLOBEX) is False
        assert await store.delete(first, ACME) is True
        assert await store.get(first) is None
        await assert_indexes_consistent(partitioned_redis, ACME)
        assert await store.ids(ACME) == [second]

    async def test_the_default_account_is_partitioned_like_any_other(
        self, partitioned_redis: Redis
    ) -> None:
        store = WebhookStore(partitioned_redis)
        webhook_id = await make(store, ("open",))
        partition = keys.partitioning().of_account(DEFAULT_ACCOUNT)
        assert keys.partitioning().of_webhook(webhook_id) == partition
        names = await assert_tagged(partitioned_redis)
        assert keys.WEBHOOK_INDEX not in names
        assert keys.account_webhooks(DEFAULT_ACCOUNT) in in_partition(names, partition)
        assert await subscribed(store, "open") == {webhook_id}

    async def test_the_limit_holds_under_concurrent_creates(self, partitioned_redis: Redis) -> None:
        store = WebhookStore(partitioned_redis)
        await five_of_twenty_concurrent_creates(store)
