"""The webhook store on a real Redis: hash and indexes always agree, under concurrency too."""

from __future__ import annotations

import random

import anyio
import pytest
from redis.asyncio import Redis

from service.storage import keys
from service.storage.autopipeline import AutoPipeline
from service.storage.webhooks import SUBSCRIBER_TYPES, WebhookChanges, WebhookStore

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def assert_indexes_consistent(redis: Redis) -> None:
    """Every hash is indexed under exactly its events, and every index entry has a hash."""
    indexed = {int(i) for i in await redis.zrange(keys.WEBHOOK_INDEX, 0, -1)}
    names = [k.split(b":")[-1] for k in await redis.keys(keys.webhook(0)[:-1] + "*")]
    hashes = {int(name) for name in names if name.isdigit()}  # not the id sequence
    assert indexed == hashes
    expected: dict[str, set[int]] = {t: set() for t in SUBSCRIBER_TYPES}
    for webhook_id in hashes:
        events = (await redis.hget(keys.webhook(webhook_id), "events")).decode()
        for event_type in events.split(","):
            expected[event_type].add(webhook_id)
    for event_type in SUBSCRIBER_TYPES:
        members = {int(m) for m in await redis.smembers(keys.subscribers(event_type))}
        assert members == expected[event_type], event_type


async def subscribed(store: WebhookStore, event_type: str) -> set[int]:
    return {webhook.id for webhook in await store.subscribers(event_type)}


async def make(store: WebhookStore, events: tuple[str, ...] = ("open",)) -> int:
    webhook = await store.create(
        url="https://a.example/", events=events, secret="secret-secret", active=True, now="t"
    )
    return webhook.id


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
        updated = await store.update(webhook_id, WebhookChanges(events=("bounce",)), now="t2")
        assert updated is not None
        assert updated.events == ("bounce",)
        assert updated.updated_at == "t2"
        assert await subscribed(store, "open") == set()
        assert await subscribed(store, "bounce") == {webhook_id}
        await assert_indexes_consistent(real_redis)

    async def test_update_without_events_keeps_subscriptions(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        webhook_id = await make(store, ("open",))
        await store.update(webhook_id, WebhookChanges(active=False), now="t2")
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
        await store.delete(min(expected))
        expected.remove(min(expected))
        before = pipeline.round_trips
        assert await subscribed(store, "open") == expected
        assert pipeline.round_trips - before == 2  # the ids, then every hash at once

    async def test_delete_removes_everything(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        webhook_id = await make(store, ("open", "bounce"))
        assert await store.delete(webhook_id) is True
        assert await store.delete(webhook_id) is False
        assert await real_redis.exists(keys.webhook(webhook_id)) == 0
        assert await subscribed(store, "open") == set()
        await assert_indexes_consistent(real_redis)

    async def test_update_of_deleted_webhook_does_not_resurrect_it(self, real_redis: Redis) -> None:
        store = WebhookStore(real_redis)
        webhook_id = await make(store)
        await store.delete(webhook_id)
        assert await store.update(webhook_id, WebhookChanges(events=("click",)), now="t") is None
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
                await store.update(webhook_id, changes, now="t")
            if webhook_id % 3 == 0:
                await store.delete(webhook_id)

        async with anyio.create_task_group() as group:
            for webhook_id in ids:
                group.start_soon(churn, webhook_id)
                group.start_soon(churn, webhook_id)  # two writers racing on each webhook
        await assert_indexes_consistent(real_redis)
        remaining, _ = await store.list(after=0, limit=1000)
        assert [w.id for w in remaining] == [i for i in range(1, 101) if i % 3]
