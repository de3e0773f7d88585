"""Webhook subscriptions in Redis: one hash each, and per account an id index and a set per
event type.

Every change to a webhook and its indexes is one Lua script, so no crash or race can leave
the hash and the indexes disagreeing, and each checks the webhook's account in the same step.
Key names live in `service.storage.keys`.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from msgspec import UNSET, UnsetType

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.event_types import SUBSCRIBABLE_TYPES, WILDCARD, format_event_types
from service.core.headers import CustomHeaders, decode_headers, encode_headers
from service.core.rotation import (
    PreviousSecrets,
    decode_previous,
    encode_previous,
    rotated_previous,
)
from service.storage import keys, scripts
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import RedisClient, autopipeline_for, register_script

# Every subscriber set of an account, in a fixed order: scripts get them all as KEYS (so they
# declare every key they touch) and are told by position which ones a webhook belongs in.
SUBSCRIBER_TYPES: tuple[str, ...] = (*SUBSCRIBABLE_TYPES, WILDCARD)

_CREATE = scripts.load("create_webhook")
_UPDATE = scripts.load("update_webhook")
_DELETE = scripts.load("delete_webhook")
_ROTATE = scripts.load("rotate_secret")
# A rotation that keeps finding the secrets changed under it (concurrent rotations) gives up.
ROTATE_TRIES = 10

# Decoded once per distinct value, not once per subscriber lookup: few webhooks, many reads.
_headers = functools.lru_cache(maxsize=4096)(decode_headers)
_previous = functools.lru_cache(maxsize=4096)(decode_previous)


def subscriber_keys(account: str) -> list[str]:
    return [keys.subscribers(account, t) for t in SUBSCRIBER_TYPES]


def create_call(
    *,
    webhook: str,
    account_index: str,
    subscriber_sets: Sequence[str],
    webhook_id: int,
    limit: int,
    fields: Sequence[tuple[str, str]],
) -> scripts.ScriptArgs:
    """KEYS and ARGV of create_webhook.lua: `subscriber_sets` those the webhook joins."""
    args: list[str | int | bytes] = [webhook_id, limit]
    for field, value in fields:
        args += [field, value]
    return [webhook, account_index, *subscriber_sets], args


def update_call(
    *,
    webhook: str,
    subscriber_sets: Sequence[str],
    webhook_id: int,
    account: str,
    fields: Sequence[tuple[str, str]],
    positions: Sequence[int],
) -> scripts.ScriptArgs:
    """KEYS and ARGV of update_webhook.lua: `fields` as (field, value) pairs, `positions`
    1-based among `subscriber_sets`."""
    args: list[str | int | bytes] = [webhook_id, account, len(fields)]
    for field, value in fields:
        args += [field, value]
    args += positions
    return [webhook, *subscriber_sets], args


def rotate_call(
    *,
    webhook: str,
    account: str,
    expected_secret: str,
    expected_previous: str,
    secret: str,
    previous: str,
    updated_at: str,
) -> scripts.ScriptArgs:
    """KEYS and ARGV of rotate_secret.lua."""
    return [webhook], [account, expected_secret, expected_previous, secret, previous, updated_at]


def delete_call(
    *,
    webhook: str,
    account_index: str,
    subscriber_sets: Sequence[str],
    webhook_id: int,
    account: str,
) -> scripts.ScriptArgs:
    """KEYS and ARGV of delete_webhook.lua."""
    return [webhook, account_index, *subscriber_sets], [webhook_id, account]


class WebhookLimitReached(Exception):
    """The account has MAX_WEBHOOKS_PER_ACCOUNT webhooks already."""


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
    account: str = DEFAULT_ACCOUNT
    rate_limit: int | None = None  # deliveries per second; None: unlimited
    # Secrets a rotation replaced, with their expiry (ms), newest first; some may be expired.
    previous_secrets: PreviousSecrets = ()
    # The endpoint's custom headers, as sent with every delivery.
    headers: CustomHeaders = ()

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
            account=text.get("account", DEFAULT_ACCOUNT),
            rate_limit=int(text["rate_limit"]) if text.get("rate_limit") else None,
            previous_secrets=_previous(text.get("previous_secrets", "")),
            headers=_headers(text.get("headers", "")),
        )


@dataclass(frozen=True, slots=True)
class WebhookChanges:
    url: str | None = None
    events: tuple[str, ...] | None = None
    # Replaces the secret at once: the previous secrets of a rotation go with it.
    secret: str | None = None
    active: bool | None = None
    rate_limit: int | UnsetType | None = UNSET  # None: unlimited again
    headers: CustomHeaders | None = None  # () removes them all


class SecretsChanged(Exception):
    """A rotation kept losing races with other rotations of the same webhook."""


def rate_limit_field(rate_limit: int | None) -> str:
    """The hash's rate_limit: "" for unlimited (an update clears it by setting it so)."""
    return "" if rate_limit is None else str(rate_limit)


def _may_be_of(webhook_id: int, account: str) -> bool:
    """Whether the webhook may be the account's: every webhook lives in its account's
    partition (WebhookStore.create). An id of another partition is answered as a missing
    one without running a script, which would name keys of two slots (refused on a cluster)."""
    partitioning = keys.partitioning()
    return partitioning.of_webhook(webhook_id) == partitioning.of_account(account)


class WebhookStore:
    def __init__(self, redis: RedisClient, pipeline: AutoPipeline | None = None) -> None:
        self._redis = redis
        # Subscriber lookups travel with whatever else is sent at the time (the worker's).
        self._pipeline = pipeline or autopipeline_for(redis)
        self._create = register_script(redis, _CREATE.source)
        self._update = register_script(redis, _UPDATE.source)
        self._delete = register_script(redis, _DELETE.source)
        self._rotate = register_script(redis, _ROTATE.source)

    async def create(
        self,
        *,
        account: str,
        url: str,
        events: tuple[str, ...],
        secret: str,
        active: bool,
        now: str,
        limit: int,
        rate_limit: int | None = None,
        headers: CustomHeaders = (),
    ) -> StoredWebhook:
        """The new webhook, or WebhookLimitReached when `account` has `limit` already."""
        # An id burnt by a crash or by the limit is harmless: ids need only be unique. The
        # webhook lives in its account's partition, with the account's index and subscriber
        # sets (one slot for the script), and its id names that partition.
        partitioning = keys.partitioning()
        partition = partitioning.of_account(account)
        sequence = int(await self._redis.incr(keys.webhook_sequence(partition)))
        webhook_id = partitioning.webhook_id(sequence, partition)
        webhook = StoredWebhook(
            id=webhook_id,
            url=url,
            events=events,
            secret=secret,
            active=active,
            created_at=now,
            updated_at=now,
            account=account,
            rate_limit=rate_limit,
            headers=headers,
        )
        fields = [
            ("id", str(webhook_id)),
            ("account", account),
            ("url", url),
            ("events", format_event_types(events)),
            ("secret", secret),
            ("active", "1" if active else "0"),
            ("created_at", now),
            ("updated_at", now),
        ]
        if rate_limit is not None:
            fields.append(("rate_limit", rate_limit_field(rate_limit)))
        if headers:
            fields.append(("headers", encode_headers(headers)))
        script_keys, args = create_call(
            webhook=keys.webhook(webhook_id),
            account_index=keys.account_webhooks(account),
            subscriber_sets=[keys.subscribers(account, t) for t in events],
            webhook_id=webhook_id,
            limit=limit,
            fields=fields,
        )
        if not await self._create(keys=script_keys, args=args):
            raise WebhookLimitReached(f"account {account} has {limit} webhooks already")
        return webhook

    async def get(self, webhook_id: int, account: str | None = None) -> StoredWebhook | None:
        """The webhook; None if it does not exist or, given `account`, is another's."""
        # redis-py types asyncio commands as "Awaitable | value" (redis-py#2399).
        fields = await self._redis.hgetall(keys.webhook(webhook_id))  # type: ignore[misc]
        if not fields:
            return None
        webhook = StoredWebhook.from_hash(fields)
        return webhook if account is None or webhook.account == account else None

    async def renamed(self, account: str, webhook_id: int) -> int | None:
        """The id `mailhooks migrate` gave the account's webhook `webhook_id` on this
        deployment, if it gave it another (keys.WEBHOOK_ALIASES): read only when an id is
        not found, never on the ingest or delivery path."""
        raw = await self._redis.hget(keys.webhook_aliases(account), str(webhook_id))  # type: ignore[misc]
        return None if raw is None else int(raw)

    async def count(self, account: str) -> int:
        return int(await self._redis.zcard(keys.account_webhooks(account)))

    async def list(
        self, account: str, *, after: int, limit: int
    ) -> tuple[builtins.list[StoredWebhook], int | None]:
        """The account's webhooks with id > `after`, oldest first, and the `after` of the next
        page if any."""
        raw_ids = await self._redis.zrangebyscore(
            keys.account_webhooks(account), f"({after}", "+inf", start=0, num=limit + 1
        )
        ids = [int(raw) for raw in raw_ids[:limit]]
        async with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(keys.webhook(webhook_id))
            rows = await pipe.execute()
        next_after = ids[-1] if len(raw_ids) > limit else None
        # A webhook deleted between the two reads is simply not listed.
        found = [StoredWebhook.from_hash(row) for row in rows if row]
        return [w for w in found if w.account == account], next_after

    async def update(
        self, webhook_id: int, account: str, changes: WebhookChanges, *, now: str
    ) -> StoredWebhook | None:
        if not _may_be_of(webhook_id, account):
            return None
        fields: dict[str, str] = {"updated_at": now}
        if changes.url is not None:
            fields["url"] = changes.url
        if changes.events is not None:
            fields["events"] = format_event_types(changes.events)
        if changes.secret is not None:
            fields["secret"] = changes.secret
            fields["previous_secrets"] = ""
        if changes.active is not None:
            fields["active"] = "1" if changes.active else "0"
        if changes.rate_limit is not UNSET:
            fields["rate_limit"] = rate_limit_field(changes.rate_limit)
        if changes.headers is not None:
            fields["headers"] = encode_headers(changes.headers)
        script_keys, args = update_call(
            webhook=keys.webhook(webhook_id),
            subscriber_sets=subscriber_keys(account),
            webhook_id=webhook_id,
            account=account,
            fields=list(fields.items()),
            positions=[SUBSCRIBER_TYPES.index(t) + 1 for t in changes.events or ()],
        )
        updated = await self._update(keys=script_keys, args=args)
        return await self.get(webhook_id, account) if updated else None

    async def rotate_secret(
        self,
        webhook_id: int,
        account: str,
        *,
        secret: str,
        grace_seconds: int,
        now_ms: int,
        now: str,
    ) -> StoredWebhook | None:
        """Make `secret` the webhook's secret; the one it replaces, and earlier ones still
        live, keep signing for `grace_seconds` (service.core.rotation). None if the webhook
        does not exist (or is another account's); SecretsChanged if concurrent rotations kept
        changing its secrets under this one."""
        for _ in range(ROTATE_TRIES):
            webhook = await self.get(webhook_id, account)
            if webhook is None:
                return None
            previous = rotated_previous(
                webhook.secret, webhook.previous_secrets, now_ms=now_ms, grace_seconds=grace_seconds
            )
            script_keys, args = rotate_call(
                webhook=keys.webhook(webhook_id),
                account=account,
                expected_secret=webhook.secret,
                expected_previous=encode_previous(webhook.previous_secrets),
                secret=secret,
                previous=encode_previous(previous),
                updated_at=now,
            )
            rotated = await self._rotate(keys=script_keys, args=args)
            if rotated == 1:
                return replace(webhook, secret=secret, previous_secrets=previous, updated_at=now)
            if rotated == 0:
                return None
        raise SecretsChanged(f"webhook {webhook_id}'s secrets kept changing during rotation")

    async def delete(self, webhook_id: int, account: str) -> bool:
        if not _may_be_of(webhook_id, account):
            return False
        script_keys, args = delete_call(
            webhook=keys.webhook(webhook_id),
            account_index=keys.account_webhooks(account),
            subscriber_sets=subscriber_keys(account),
            webhook_id=webhook_id,
            account=account,
        )
        deleted = await self._delete(keys=script_keys, args=args)
        return bool(deleted)

    async def ids(self, account: str) -> builtins.list[int]:
        """Every webhook id of `account` (deleting the account)."""
        raw = await self._redis.zrange(keys.account_webhooks(account), 0, -1)
        return [int(id_) for id_ in raw]

    async def subscribers(self, account: str, event_type: str) -> builtins.list[StoredWebhook]:
        """The webhooks of `account` subscribed to `event_type` (short form), wildcard
        included, by id: two of the account's own sets, whatever the number of accounts."""
        # Two round trips: the ids, then every hash in one batch. A script could read both in
        # one, but only by building the hashes' key names itself, which Redis Cluster forbids.
        # Lookups are made once per account and event type per stream read, not per event.
        ids = await self._pipeline.execute(
            "SUNION", keys.subscribers(account, event_type), keys.subscribers(account, WILDCARD)
        )
        rows = await asyncio.gather(
            *(self._pipeline.execute("HGETALL", keys.webhook(int(id_))) for id_ in ids)
        )
        # A webhook deleted between the two reads is not subscribed any more; one of another
        # account is never delivered to, whatever a set says.
        found = [StoredWebhook.from_hash(row) for row in rows if row]
        return sorted((w for w in found if w.account == account), key=lambda w: w.id)
