"""Deliveries in Redis: each one's record and attempt log, per-webhook indexes, and the lease
that lets exactly one worker attempt a delivery at a time.

A delivery's id is deterministic (event entry + webhook), so a stream entry read twice finds
the same record: `claim` creates it or takes its lease, and `record` applies an attempt's
outcome; both are Lua scripts, so status, indexes and webhook health change together.

Retention: a finished delivery expires after the retention age, and each webhook keeps the
newest `retention count` of each finished status. `record` says when a webhook holds more
than that; the store then prunes it in the background (service.storage.retention), at most
once a second per webhook.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from config import Config
from service.core.ids import delivery_member, member_delivery, ms_member_bound
from service.core.metrics import WEBHOOKS_DISABLED, field_name
from service.core.outcome import Verdict
from service.storage import keys, scripts
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import RedisClient, autopipeline_for, register_script
from service.storage.retention import PRUNE_INTERVAL_SECONDS, DeliveryPruner

ATTEMPT_LOG_LENGTH = 50
# The record script counts the webhooks it disables under this field + the reason.
WEBHOOKS_DISABLED_FIELD = field_name(WEBHOOKS_DISABLED.key, "")
# A delivery's fields but its payload (listings show many at once).
_SUMMARY_FIELDS = (
    "id", "webhook_id", "event_id", "type", "status", "attempts", "created_at", "updated_at",
    "next_attempt_at", "last_status_code", "last_error",
)  # fmt: skip
_SUMMARY_KEYS = tuple(field.encode() for field in _SUMMARY_FIELDS)

_CLAIM = scripts.load("claim")
_RECORD = scripts.load("record")
_REQUEUE = scripts.load("requeue")


def claim_call(
    *,
    delivery: str,
    all_index: str,
    pending_index: str,
    leases: str,
    webhook: str,
    delivery_id: str,
    webhook_id: int,
    event_id: str,
    event_type: str,
    now_ms: int,
    lease_ms: int,
    owner: str,
    payload: bytes,
    member: str,
) -> scripts.ScriptArgs:
    """KEYS and ARGV of claim.lua."""
    return (
        [delivery, all_index, pending_index, leases, webhook],
        [delivery_id, webhook_id, event_id, event_type, now_ms, lease_ms, owner, payload, member],
    )


def record_call(
    *,
    delivery: str,
    attempts: str,
    pending_index: str,
    succeeded_index: str,
    failed_index: str,
    webhook: str,
    all_index: str,
    leases: str,
    metrics: str,
    owner: str,
    now_ms: int,
    verdict: str,
    attempt_json: bytes,
    next_attempt_ms: int,
    next_owner: str,
    lease_ms: int,
    payload: bytes,
    status_code: int | str,
    last_error: str,
    disable_after_ms: int,
    member: str,
    log_length: int,
    retention_count: int,
    retention_seconds: int,
    attempt_number: int,
    disabled_field: str,
) -> scripts.ScriptArgs:
    """KEYS and ARGV of record.lua."""
    return (
        [delivery, attempts, pending_index, succeeded_index, failed_index, webhook, all_index,
         leases, metrics],
        [owner, now_ms, verdict, attempt_json, next_attempt_ms, next_owner, lease_ms, payload,
         status_code, last_error, disable_after_ms, member, log_length, retention_count,
         retention_seconds, attempt_number, disabled_field],
    )  # fmt: skip


def requeue_call(
    *,
    delivery: str,
    pending_index: str,
    failed_index: str,
    succeeded_index: str,
    leases: str,
    attempts: str,
    owner: str,
    now_ms: int,
    lease_ms: int,
    member: str,
) -> scripts.ScriptArgs:
    """KEYS and ARGV of requeue.lua."""
    return (
        [delivery, pending_index, failed_index, succeeded_index, leases, attempts],
        [owner, now_ms, lease_ms, member],
    )


class Claim(Enum):
    NEW = "new"  # created now; this owner attempts it
    GO = "go"  # existed, and this owner may attempt it now
    SKIP = "skip"  # finished, or another owner holds it


@dataclass(frozen=True, slots=True)
class ClaimResult:
    claim: Claim
    attempts_made: int = 0
    status: str = ""
    created_at_ms: int = 0
    webhook_active: bool | None = True  # as the claim found it; None: the webhook is gone


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    id: str
    webhook_id: int
    event_id: str
    type: str
    status: str
    attempts: int
    created_at_ms: int
    updated_at_ms: int
    next_attempt_at_ms: int | None
    last_status_code: int | None
    last_error: str | None
    payload: bytes | None

    @classmethod
    def new(
        cls,
        id_: str,
        webhook_id: int,
        event_id: str,
        event_type: str,
        created_at_ms: int,
        attempts: int,
    ) -> StoredDelivery:
        """What a claim tells of a pending delivery, without reading it back."""
        return cls(
            id=id_,
            webhook_id=webhook_id,
            event_id=event_id,
            type=event_type,
            status="pending",
            attempts=attempts,
            created_at_ms=created_at_ms,
            updated_at_ms=created_at_ms,
            next_attempt_at_ms=None,
            last_status_code=None,
            last_error=None,
            payload=None,
        )

    @classmethod
    def from_hash(cls, fields: dict[bytes, bytes]) -> StoredDelivery:
        def text(name: str) -> str | None:
            raw = fields.get(name.encode())
            return raw.decode() if raw not in (None, b"") else None

        def number(name: str) -> int | None:
            raw = text(name)
            return int(raw) if raw is not None else None

        return cls(
            id=text("id") or "",
            webhook_id=number("webhook_id") or 0,
            event_id=text("event_id") or "",
            type=text("type") or "",
            status=text("status") or "",
            attempts=number("attempts") or 0,
            created_at_ms=number("created_at") or 0,
            updated_at_ms=number("updated_at") or 0,
            next_attempt_at_ms=number("next_attempt_at"),
            last_status_code=number("last_status_code"),
            last_error=text("last_error"),
            payload=fields.get(b"payload"),
        )


def lease_ms(config: Config) -> int:
    """How long an attempt may hold a delivery: the request's timeout, and as long again plus
    a second to record its outcome. Stream entries are reclaimed after twice this."""
    return int((2 * config.delivery_timeout + 1) * 1000)


class DeliveryStore:
    def __init__(
        self,
        redis: RedisClient,
        pipeline: AutoPipeline | None = None,
        *,
        prune_interval_seconds: float = PRUNE_INTERVAL_SECONDS,
    ) -> None:
        self._redis = redis
        # Claims and outcomes of concurrent attempts travel together (shared with whatever
        # else the worker sends at the same time, when given).
        self._pipeline = pipeline or autopipeline_for(redis)
        self._claim = register_script(redis, _CLAIM.source)
        self._record = register_script(redis, _RECORD.source)
        self._requeue = register_script(redis, _REQUEUE.source)
        # Retention, off the delivery path (service.storage.retention).
        self._pruner = DeliveryPruner(redis, interval_seconds=prune_interval_seconds)

    async def claim(
        self,
        *,
        delivery_id: str,
        webhook_id: int,
        event_id: str,
        event_type: str,
        owner: str,
        now_ms: int,
        lease_ms: int,
        payload: bytes = b"",
    ) -> ClaimResult:
        """Create the delivery, or take its lease if it is pending and free (or ours)."""
        script_keys, args = claim_call(
            delivery=keys.delivery(delivery_id),
            all_index=keys.deliveries(webhook_id),
            pending_index=keys.deliveries(webhook_id, "pending"),
            leases=keys.delivery_leases(keys.delivery_partition(delivery_id)),
            webhook=keys.webhook(webhook_id),
            delivery_id=delivery_id,
            webhook_id=webhook_id,
            event_id=event_id,
            event_type=event_type,
            now_ms=now_ms,
            lease_ms=lease_ms,
            owner=owner,
            payload=payload,
            member=delivery_member(now_ms, delivery_id),
        )
        raw_claim, detail, created, raw_active = await self._pipeline.script(
            self._claim, keys=script_keys, args=args
        )
        claim = Claim(raw_claim.decode())
        active = None if raw_active == b"" else raw_active == b"1"
        if claim is Claim.SKIP:
            return ClaimResult(claim, status=detail.decode(), webhook_active=active)
        return ClaimResult(
            claim, attempts_made=int(detail), created_at_ms=int(created), webhook_active=active
        )

    async def record(
        self,
        delivery: StoredDelivery,
        *,
        owner: str,
        now_ms: int,
        verdict: Verdict,
        attempt_json: bytes = b"",
        attempt_number: int = 0,
        next_attempt_ms: int = 0,
        next_owner: str = "",
        lease_ms: int = 0,
        payload: bytes = b"",
        status_code: int | None = None,
        error: str | None = None,
        disable_after_ms: int,
        retention_count: int,
        retention_seconds: int,
    ) -> str:
        """Apply one attempt's outcome; returns the status after it (see the script).
        Safe to repeat: attempt `attempt_number` (by default the one after `delivery`'s) is
        logged once, and a repeat answers as the first run did (a command re-sent after a
        dropped connection)."""
        webhook_id = delivery.webhook_id
        partition = keys.delivery_partition(delivery.id)
        script_keys, args = record_call(
            delivery=keys.delivery(delivery.id),
            attempts=keys.delivery_attempts(delivery.id),
            pending_index=keys.deliveries(webhook_id, "pending"),
            succeeded_index=keys.deliveries(webhook_id, "succeeded"),
            failed_index=keys.deliveries(webhook_id, "failed"),
            webhook=keys.webhook(webhook_id),
            all_index=keys.deliveries(webhook_id),
            leases=keys.delivery_leases(partition),
            metrics=keys.partition_metrics(partition),
            owner=owner,
            now_ms=now_ms,
            verdict=verdict,
            attempt_json=attempt_json,
            next_attempt_ms=next_attempt_ms,
            next_owner=next_owner,
            lease_ms=lease_ms,
            payload=payload,
            status_code="" if status_code is None else status_code,
            last_error=error or "",
            disable_after_ms=disable_after_ms,
            member=delivery_member(delivery.created_at_ms, delivery.id),
            log_length=ATTEMPT_LOG_LENGTH,
            retention_count=retention_count,
            retention_seconds=retention_seconds,
            attempt_number=attempt_number or delivery.attempts + 1,
            disabled_field=WEBHOOKS_DISABLED_FIELD,
        )
        status, prune_due = await self._pipeline.script(self._record, keys=script_keys, args=args)
        if prune_due:
            self._pruner.request(
                webhook_id,
                now_ms=now_ms,
                retention_count=retention_count,
                retention_seconds=retention_seconds,
            )
        return str(status.decode())

    async def drain(self) -> None:
        """Wait for the background prunes (see DeliveryPruner.drain)."""
        await self._pruner.drain()

    async def requeue(
        self, delivery: StoredDelivery, *, owner: str, now_ms: int, lease_ms: int
    ) -> bool:
        """Back to pending for a manual retry; False if it is pending and leased already."""
        webhook_id = delivery.webhook_id
        script_keys, args = requeue_call(
            delivery=keys.delivery(delivery.id),
            pending_index=keys.deliveries(webhook_id, "pending"),
            failed_index=keys.deliveries(webhook_id, "failed"),
            succeeded_index=keys.deliveries(webhook_id, "succeeded"),
            leases=keys.delivery_leases(keys.delivery_partition(delivery.id)),
            attempts=keys.delivery_attempts(delivery.id),
            owner=owner,
            now_ms=now_ms,
            lease_ms=lease_ms,
            member=delivery_member(delivery.created_at_ms, delivery.id),
        )
        done = await self._requeue(keys=script_keys, args=args)
        return bool(done)

    async def get(self, delivery_id_: str) -> StoredDelivery | None:
        fields = await self._redis.hgetall(keys.delivery(delivery_id_))  # type: ignore[misc]
        return StoredDelivery.from_hash(fields) if fields else None

    async def attempts(self, delivery_id_: str) -> list[bytes]:
        rows: list[bytes] = await self._redis.lrange(  # type: ignore[misc]
            keys.delivery_attempts(delivery_id_), 0, -1
        )
        return rows

    async def page(
        self, webhook_id: int, *, status: str | None, before: str | None, limit: int
    ) -> tuple[list[StoredDelivery], str | None]:
        """Newest first; `before` is the cursor the previous page returned."""
        index = keys.deliveries(webhook_id, status)
        upper = "+"
        if before is not None:
            upper = "(" + before  # the index member of the previous page's last delivery
        members = await self._redis.zrevrangebylex(index, upper, "-", start=0, num=limit + 1)
        page = [member.decode() for member in members[:limit]]
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in page:
                pipe.hgetall(keys.delivery(member_delivery(member)))
            rows = await pipe.execute()
        found = [StoredDelivery.from_hash(row) for row in rows if row]
        # The cursor is the index member itself, valid even once that delivery has expired.
        return found, (page[-1] if len(members) > limit else None)

    async def get_many(self, delivery_ids: Sequence[str]) -> list[StoredDelivery | None]:
        """Each delivery (None where there is none), without its payload: one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for id_ in delivery_ids:
                pipe.hmget(keys.delivery(id_), list(_SUMMARY_FIELDS))
            rows = await pipe.execute()
        return [
            StoredDelivery.from_hash(
                {k: v for k, v in zip(_SUMMARY_KEYS, row, strict=True) if v is not None}
            )
            if row[0]
            else None
            for row in rows
        ]

    async def finished_counts(
        self, webhook_ids: Sequence[int], edges_ms: Sequence[int]
    ) -> dict[int, dict[str, list[int]]]:
        """Per webhook, its succeeded and failed deliveries created in each interval between
        consecutive `edges_ms` (`[edge, next edge)`), counted on the status indexes: one
        ZLEXCOUNT per webhook, status and interval (O(log n) each), in one round trip."""
        statuses = ("succeeded", "failed")
        bounds = [ms_member_bound(edge) for edge in edges_ms]
        async with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in webhook_ids:
                for status in statuses:
                    index = keys.deliveries(webhook_id, status)
                    for low, high in itertools.pairwise(bounds):
                        pipe.zlexcount(index, "[" + low, "(" + high)  # type: ignore[no-untyped-call]
            counts = iter(await pipe.execute())
        intervals = len(bounds) - 1
        return {
            webhook_id: {
                status: [int(next(counts)) for _ in range(intervals)] for status in statuses
            }
            for webhook_id in webhook_ids
        }

    async def failed_since(self, webhook_id: int, since_ms: int) -> list[StoredDelivery]:
        members = await self._redis.zrangebylex(
            keys.deliveries(webhook_id, "failed"), "[" + ms_member_bound(since_ms), "+"
        )
        found = []
        for member in members:
            delivery = await self.get(member_delivery(member.decode()))
            if delivery is not None:
                found.append(delivery)
        return found

    async def expired_leases(
        self, before_ms: int, limit: int = 1000, *, partition: int = 0
    ) -> list[str]:
        """Pending deliveries of `partition` whose lease ran out before `before_ms` (nobody
        is on them). Each partition has its own lease index: sweep them all
        (keys.partitioning().all())."""
        raw = await self._redis.zrangebyscore(
            keys.delivery_leases(partition), "-inf", before_ms, start=0, num=limit
        )
        return [member.decode() for member in raw]

    async def extend_lease_index(self, delivery_id_: str, until_ms: int) -> None:
        leases = keys.delivery_leases(keys.delivery_partition(delivery_id_))
        await self._redis.zadd(leases, {delivery_id_: until_ms})

    async def forget_lease(self, delivery_id_: str) -> None:
        leases = keys.delivery_leases(keys.delivery_partition(delivery_id_))
        await self._redis.zrem(leases, delivery_id_)

    async def forget_webhook(self, webhook_id: int, *, batch: int = 500) -> int:
        """Delete every delivery of a webhook with its attempt log, lease and indexes (its
        account is being deleted). A retry job left for one finds nothing and ends."""
        index = keys.deliveries(webhook_id)
        removed = 0
        while True:
            members = await self._redis.zrange(index, 0, batch - 1)
            if not members:
                break
            ids = [member_delivery(member.decode()) for member in members]
            async with self._redis.pipeline(transaction=False) as pipe:
                for id_ in ids:
                    pipe.delete(keys.delivery(id_), keys.delivery_attempts(id_))
                # A webhook's deliveries are in its partition, so in its lease index.
                pipe.zrem(keys.delivery_leases(keys.partitioning().of_webhook(webhook_id)), *ids)
                pipe.zrem(index, *members)
                await pipe.execute()
            removed += len(ids)
        statuses = ("pending", "succeeded", "failed")
        await self._redis.delete(*(keys.deliveries(webhook_id, s) for s in statuses))
        return removed
