"""Webhook subscriptions in Redis: one hash each, an id index, and a set per event type.

Every change to a webhook and its indexes is one MULTI/EXEC or one Lua script, so no crash
or race can leave the hash and the indexes disagreeing. Key names live in `service.storage.keys`.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from service.core.event_types import EVENT_TYPES, WILDCARD, format_event_types
from service.storage import keys, scripts
from service.storage.autopipeline import AutoPipeline

# Every subscriber set, in a fixed order: scripts get them all as KEYS (so they declare every
# key they touch) and are told by position which ones a webhook belongs in.
SUBSCRIBER_TYPES: tuple[str, ...] = (*EVENT_TYPES, WILDCARD)
SUBSCRIBER_KEYS: tuple[str, ...] = tuple(keys.subscribers(t) for t in SUBSCRIBER_TYPES)

_UPDATE = scripts.load("update_webhook")
_DELETE = scripts.load("delete_webhook")


def update_call(
    *,
    webhook: str,
    subscriber_sets: Sequence[str],
    webhook_id: int,
    fields: Sequence[tuple[str, str]],
    positions: Sequence[int],
) -> scripts.ScriptArgs:
    """KEYS and ARGV of update_webhook.lua: `fields` as (field, value) pairs, `positions`
    1-based among `subscriber_sets`."""
    args: list[str | int | bytes] = [webhook_id, len(fields)]
    for field, value in fields:
        args += [field, value]
    args += positions
    return [webhook, *subscriber_sets], args


def delete_call(
    *, webhook: str, webhook_index: str, subscriber_sets: Sequence[str], webhook_id: int
) -> scripts.ScriptArgs:
    """KEYS and ARGV of delete_webhook.lua."""
    return [webhook, webhook_index, *subscriber_sets], [webhook_id]


@dataclass(frozen=True, slots=True)
class StoredWebhook:
    id: int
    url: str
    events: tuple[str, ...]
    secret: str
    active: bool
    created_at: str
    updated_at: str
    disabled_reason: str | None = None

    @classmethod
    def from_hash(cls, fields: dict[bytes, bytes]) -> StoredWebhook:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(
            id=int(text["id"]),
            url=text["url"],
            events=tuple(text["events"].split(",")),
            secret=text["secret"],
            active=text["active"] == "1",
            created_at=text["created_at"],
            updated_at=text.get("updated_at", text["created_at"]),
            disabled_reason=text.get("disabled_reason"),
        )


@dataclass(frozen=True, slots=True)
class WebhookChanges:
    url: str | None = None
    events: tuple[str, ...] | None = None
    secret: str | None = None
    active: bool | None = None


class WebhookStore:
    def __init__(self, redis: Redis, pipeline: AutoPipeline | None = None) -> None:
        self._redis = redis
        # Subscriber lookups travel with whatever else is sent at the time (the worker's).
        self._pipeline = pipeline or AutoPipeline(redis)
        self._update = redis.register_script(_UPDATE.source)
        self._delete = redis.register_script(_DELETE.source)

    async def create(
        self, *, url: str, events: tuple[str, ...], secret: str, active: bool, now: str
    ) -> StoredWebhook:
        # An id burnt by a crash before EXEC is harmless; what EXEC writes is all or nothing.
        webhook_id = int(await self._redis.incr(keys.WEBHOOK_ID_SEQUENCE))
        webhook = StoredWebhook(
            id=webhook_id,
            url=url,
            events=events,
            secret=secret,
            active=active,
            created_at=now,
            updated_at=now,
        )
        async with self._redis.pipeline(transaction=True) as tx:
            tx.hset(
                keys.webhook(webhook_id),
                mapping={
                    "id": webhook_id,
                    "url": url,
                    "events": format_event_types(events),
                    "secret": secret,
                    "active": "1" if active else "0",
                    "created_at": now,
                    "updated_at": now,
                },
            )
            tx.zadd(keys.WEBHOOK_INDEX, {str(webhook_id): webhook_id})
            for event_type in events:
                tx.sadd(keys.subscribers(event_type), webhook_id)
            await tx.execute()
        return webhook

    async def get(self, webhook_id: int) -> StoredWebhook | None:
        # redis-py types asyncio commands as "Awaitable | value" (redis-py#2399).
        fields = await self._redis.hgetall(keys.webhook(webhook_id))  # type: ignore[misc]
        return StoredWebhook.from_hash(fields) if fields else None

    async def list(self, *, after: int, limit: int) -> tuple[list[StoredWebhook], int | None]:
        """Webhooks with id > `after`, oldest first, and the `after` of the next page if any."""
        raw_ids = await self._redis.zrangebyscore(
            keys.WEBHOOK_INDEX, f"({after}", "+inf", start=0, num=limit + 1
        )
        ids = [int(raw) for raw in raw_ids[:limit]]
        async with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(keys.webhook(webhook_id))
            rows = await pipe.execute()
        next_after = ids[-1] if len(raw_ids) > limit else None
        # A webhook deleted between the two reads is simply not listed.
        return [StoredWebhook.from_hash(row) for row in rows if row], next_after

    async def update(
        self, webhook_id: int, changes: WebhookChanges, *, now: str
    ) -> StoredWebhook | None:
        fields: dict[str, str] = {"updated_at": now}
        if changes.url is not None:
            fields["url"] = changes.url
        if changes.events is not None:
            fields["events"] = format_event_types(changes.events)
        if changes.secret is not None:
            fields["secret"] = changes.secret
        if changes.active is not None:
            fields["active"] = "1" if changes.active else "0"
        script_keys, args = update_call(
            webhook=keys.webhook(webhook_id),
            subscriber_sets=SUBSCRIBER_KEYS,
            webhook_id=webhook_id,
            fields=list(fields.items()),
            positions=[SUBSCRIBER_TYPES.index(t) + 1 for t in changes.events or ()],
        )
        updated = await self._update(keys=script_keys, args=args)
        return await self.get(webhook_id) if updated else None

    async def delete(self, webhook_id: int) -> bool:
        script_keys, args = delete_call(
            webhook=keys.webhook(webhook_id),
            webhook_index=keys.WEBHOOK_INDEX,
            subscriber_sets=SUBSCRIBER_KEYS,
            webhook_id=webhook_id,
        )
        deleted = await self._delete(keys=script_keys, args=args)
        return bool(deleted)

    async def subscribers(self, event_type: str) -> builtins.list[StoredWebhook]:
        """The webhooks subscribed to `event_type` (short form), wildcard included, by id."""
        # Two round trips: the ids, then every hash in one batch. A script could read both in
        # one, but only by building the hashes' key names itself, which Redis Cluster forbids.
        # Lookups are made once per event type per stream read, not per event.
        ids = await self._pipeline.execute(
            "SUNION", keys.subscribers(event_type), keys.subscribers(WILDCARD)
        )
        rows = await asyncio.gather(
            *(self._pipeline.execute("HGETALL", keys.webhook(int(id_))) for id_ in ids)
        )
        # A webhook deleted between the two reads is not subscribed any more.
        found = [StoredWebhook.from_hash(row) for row in rows if row]
        return sorted(found, key=lambda webhook: webhook.id)
