"""Each account's suppression list in Redis: a hash of address → entry, and a sorted set of the
addresses of each reason, for listing. Key names live in `service.storage.keys`.

Events add to it at ingest: `EventStore.append` queues `suppress_events.lua` right behind its
own script in the same pipeline (one round trip), for the hard bounces, complaints and
unsubscribes it stores (`service.core.suppressions`). People add and lift entries here.
An account's lists are in its partition, with its events (a stored entry is of that
partition's stream).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import cast

import msgspec

from service.core.ids import entry_time, event_id, format_timestamp
from service.core.models import Suppression, SuppressionReason
from service.core.suppressions import REASONS
from service.storage import keys, scripts
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import RedisClient, autopipeline_for, register_script

SUPPRESS_EVENTS = scripts.load("suppress_events")
_SUPPRESS = scripts.load("suppress")
_UNSUPPRESS = scripts.load("unsuppress")


class StoredEntry(msgspec.Struct, omit_defaults=True):
    """A hash value: the reason, and the event's stream entry or the time it was added."""

    reason: str
    entry: str | None = None
    at: str | None = None


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(StoredEntry)


EventSuppression = tuple[str, str, str, str, str]


def suppress_events_call(*, addresses: Sequence[EventSuppression]) -> scripts.ScriptArgs:
    """KEYS and ARGV of suppress_events.lua: per address (seen key, suppression hash, set of
    the reason) and (address, reason)."""
    script_keys: list[str] = []
    args: list[str | int | bytes] = []
    for seen_key, suppressions, suppressed, address, reason in addresses:
        script_keys += [seen_key, suppressions, suppressed]
        args += [address, reason]
    return script_keys, args


def event_suppression(seen_key: str, account: str, address: str, reason: str) -> EventSuppression:
    """One address of suppress_events_call: an event's recipient on its account's list."""
    return (
        seen_key,
        keys.suppressions(account),
        keys.suppressed(account, reason),
        address,
        reason,
    )


def suppress_call(
    *, suppressions: str, suppressed: str, address: str, record: str
) -> scripts.ScriptArgs:
    """KEYS and ARGV of suppress.lua."""
    return [suppressions, suppressed], [address, record]


def unsuppress_call(
    *, suppressions: str, reason_sets: Sequence[str], address: str
) -> scripts.ScriptArgs:
    """KEYS and ARGV of unsuppress.lua."""
    return [suppressions, *reason_sets], [address]


def reason_sets(account: str) -> list[str]:
    return [keys.suppressed(account, reason) for reason in REASONS]


def account_keys(account: str) -> list[str]:
    """Every key of an account's suppression list (deleting the account deletes them)."""
    return [keys.suppressions(account), *reason_sets(account)]


def to_model(address: str, raw: bytes, account: str) -> Suppression:
    stored = _DECODER.decode(raw)
    reason = cast(SuppressionReason, stored.reason)  # written from REASONS only
    if stored.entry is not None:
        created_at = format_timestamp(entry_time(stored.entry))
        # The entry is of the account's partition's stream (the id names it when several).
        partitioning = keys.partitioning()
        partition = partitioning.of_account(account) if partitioning.count > 1 else None
        return Suppression(
            email=address,
            reason=reason,
            created_at=created_at,
            event_id=event_id(stored.entry, partition),
        )
    return Suppression(email=address, reason=reason, created_at=stored.at or "", event_id=None)


class SuppressionStore:
    def __init__(self, redis: RedisClient, pipeline: AutoPipeline | None = None) -> None:
        self._redis = redis
        # The sending path's check travels with whatever else the process is sending.
        self._pipeline = pipeline or autopipeline_for(redis)
        self._suppress = register_script(redis, _SUPPRESS.source)
        self._unsuppress = register_script(redis, _UNSUPPRESS.source)

    async def get(self, account: str, address: str) -> Suppression | None:
        """`address` (normalised) on the account's list, or None: one HGET."""
        raw = await self._pipeline.execute("HGET", keys.suppressions(account), address)
        return to_model(address, raw, account) if raw is not None else None

    async def add(
        self, account: str, address: str, reason: str, *, now: str
    ) -> tuple[Suppression, bool]:
        """Add `address` by hand; (its entry, True) — or the entry it already had, False."""
        record = _ENCODER.encode(StoredEntry(reason=reason, at=now)).decode()
        script_keys, args = suppress_call(
            suppressions=keys.suppressions(account),
            suppressed=keys.suppressed(account, reason),
            address=address,
            record=record,
        )
        added, stored = await self._suppress(keys=script_keys, args=args)
        return to_model(address, stored, account), bool(added)

    async def remove(self, account: str, address: str) -> bool:
        script_keys, args = unsuppress_call(
            suppressions=keys.suppressions(account),
            reason_sets=reason_sets(account),
            address=address,
        )
        return bool(await self._unsuppress(keys=script_keys, args=args))

    async def list(
        self, account: str, *, reason: str | None, after: str | None, limit: int
    ) -> tuple[builtins.list[Suppression], str | None]:
        """Addresses in order after `after` (of one reason, or of all: the reasons' sets
        merged), and the next page's `after`. Two round trips: the page of addresses, then
        their entries."""
        lower = f"({after}" if after else "-"
        indexes = [keys.suppressed(account, reason)] if reason else reason_sets(account)
        async with self._redis.pipeline(transaction=False) as pipe:
            for index in indexes:
                pipe.zrangebylex(index, lower, "+", start=0, num=limit + 1)
            pages = await pipe.execute()
        members = sorted({member.decode() for page in pages for member in page})[: limit + 1]
        page = members[:limit]
        found: builtins.list[Suppression] = []
        if page:
            rows = await self._redis.hmget(keys.suppressions(account), page)  # type: ignore[misc]
            # An address lifted between the two reads is simply not listed.
            found = [to_model(a, raw, account) for a, raw in zip(page, rows, strict=True) if raw]
        return found, page[-1] if len(members) > limit else None
