"""Inbound events in Redis: one stream, de-duplication keys and lookup indexes.

`append` marks each provider event seen and appends it to the stream in one Lua script, so a
crash can neither lose an event that was answered 200 nor store a retry twice; the recipients
of the hard bounces, complaints and unsubscribes it stores go on their account's suppression
list in the same round trip (service.storage.suppressions). Trimming, with
the index entries of what it removes: service.storage.trimming.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.exceptions import OutOfMemoryError

from service.core.accounts import DEFAULT_ACCOUNT, indexed_account
from service.core.ids import entry_id, entry_member, event_id, member_entry
from service.core.models import Event
from service.core.normalized import Ignored
from service.core.suppressions import normalize_address, suppression_reason
from service.storage import keys, scripts
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import RedisClient, autopipeline_for, register_script
from service.storage.suppressions import (
    SUPPRESS_EVENTS,
    EventSuppression,
    event_suppression,
    suppress_events_call,
)
from service.storage.trimming import TRIM_EXCESS, EventTrimmer

# Filters scan at most this many stream entries per request; the Link header continues.
SCAN_BUDGET = 5_000
_SCAN_CHUNK = 500
# Index keys expire this long after their last event: a backstop, trimming unindexes events.
INDEX_TTL_SECONDS = 30 * 86400

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Event)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

_APPEND = scripts.load("append")


def append_call(
    *,
    stream: str,
    counts: str,
    trim_at: int,
    seen_ttl: int,
    index_ttl: int,
    provider: str,
    event_keys: Sequence[tuple[str, str, str, str]],
    event_args: Sequence[tuple[str, str, str, str, str]],
    ignored_types: Sequence[str],
) -> scripts.ScriptArgs:
    """KEYS and ARGV of append.lua: per event (seen key, email index, recipient index,
    account index) and (payload, recipient flag, account, account flag, email flag)."""
    script_keys = [stream, counts]
    for event_key_group in event_keys:
        script_keys += event_key_group
    args: list[str | int | bytes] = [trim_at, seen_ttl, index_ttl, provider, len(event_args)]
    for pair in event_args:
        args += pair
    args += ignored_types
    return script_keys, args


def _recipient_flag(recipient: str | None) -> str:
    """0: no recipient index; 1: an index whose key follows from lowering the recipient's
    ASCII letters; 2: str.lower changes more than those, and the entry names its index key
    in field r (as when the trim ran in Lua; the trim still reads it)."""
    if not recipient:
        return "0"
    return "1" if recipient.lower() == recipient.translate(_ASCII_LOWER) else "2"


def decode_entry(entry_id_: str, fields: dict[bytes, bytes]) -> Event:
    """The event a stream entry holds (KeyError or msgspec.DecodeError if it holds none),
    with its account: "" when unrouted, none at all when stored before accounts existed."""
    event = _DECODER.decode(fields[b"e"])
    event.id = event_id(entry_id_)
    account = fields.get(b"a")
    event.account_id = DEFAULT_ACCOUNT if account is None else (account.decode() or None)
    return event


def seen_digest(provider_event_id: str) -> str:
    digest = hashlib.sha256(provider_event_id.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class AppendResult:
    stored: list[str]  # event ids newly stored
    duplicates: list[str]  # event ids of the originals of retried events
    # Per event appended, in order: True if stored now, False if a duplicate.
    new: list[bool] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a read returns: one account's (None: the unrouted), or with
    `every_account` all of them (an operator's view)."""

    account: str | None = DEFAULT_ACCOUNT
    every_account: bool = False
    type: str | None = None
    email_id: str | None = None
    recipient: str | None = None

    def matches(self, event: Event) -> bool:
        return (
            (self.every_account or event.account_id == self.account)
            and (self.type is None or event.type == self.type)
            and (self.email_id is None or event.email_id == self.email_id)
            and (
                self.recipient is None or (event.recipient or "").lower() == self.recipient.lower()
            )
        )


class EventStore:
    def __init__(
        self,
        redis: RedisClient,
        *,
        maxlen: int,
        dedup_ttl_seconds: int,
        scan_budget: int = SCAN_BUDGET,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        self._redis = redis
        self._scan_budget = scan_budget
        self._maxlen = maxlen
        self._dedup_ttl = dedup_ttl_seconds
        self._append = register_script(redis, _APPEND.source)
        self._suppress = register_script(redis, SUPPRESS_EVENTS.source)
        self._trimmer = EventTrimmer(redis, maxlen=maxlen)
        # Concurrent requests' appends, sent together.
        self._pipeline = pipeline or autopipeline_for(redis)

    async def append(
        self,
        provider: str,
        events: Sequence[Event],
        ignored: Sequence[Ignored] = (),
        *,
        dedup_ttl_seconds: int | None = None,
    ) -> AppendResult:
        """Store each event not seen before (by provider and provider_event_id, for
        `dedup_ttl_seconds`, by default DEDUP_TTL_SECONDS), in order, under the account it was
        routed to (`account_id`; None: unrouted, delivered to nobody), and put the recipients
        of its hard bounces, complaints and unsubscribes on the account's suppression list (in
        the same round trip). Trims the stream in the background when the append leaves it
        100 past maxlen."""
        if not events and not ignored:
            return AppendResult([], [])
        event_keys: list[tuple[str, str, str, str]] = []
        event_args: list[tuple[str, str, str, str, str]] = []
        suppressing: list[EventSuppression] = []
        for event in events:
            account = event.account_id
            # The account travels in its own entry field, beside the event.
            payload = _ENCODER.encode(
                event if account is None else msgspec.structs.replace(event, account_id=None)
            ).decode()
            dedup_id = event.provider_event_id or payload
            seen_key = keys.seen(provider, seen_digest(dedup_id))
            reason = suppression_reason(event)
            if reason is not None and account is not None and event.recipient:
                address = normalize_address(event.recipient)
                suppressing.append(event_suppression(seen_key, account, address, reason))
            event_keys.append(
                (
                    seen_key,
                    keys.events_by_email(event.email_id),
                    keys.events_by_recipient(event.recipient or ""),
                    keys.events_by_account(account or DEFAULT_ACCOUNT),
                )
            )
            event_args.append(
                (
                    payload,
                    _recipient_flag(event.recipient),
                    account or "",
                    "1" if indexed_account(account) else "0",
                    "1" if event.email_id else "0",  # operational events are about none
                )
            )
        script_keys, args = append_call(
            stream=keys.EVENTS_STREAM,
            counts=keys.INBOUND_COUNTS,
            trim_at=self._maxlen + TRIM_EXCESS,
            seen_ttl=self._dedup_ttl if dedup_ttl_seconds is None else dedup_ttl_seconds,
            index_ttl=INDEX_TTL_SECONDS,
            provider=provider,
            event_keys=event_keys,
            event_args=event_args,
            ignored_types=[item.provider_type for item in ignored],
        )
        suppress = suppress_events_call(addresses=suppressing) if suppressing else None
        try:
            trim_due, results = await self._store(script_keys, args, suppress)
        except OutOfMemoryError:
            # Redis is full and refused the XADD, having written nothing. A backlog the
            # worker has since delivered would keep it full: trim it (Redis allows that when
            # full) and try once more. Concurrent refused appends share that one trim.
            if not await self._trimmer.trim_joined():
                raise
            trim_due, results = await self._store(script_keys, args, suppress)
        if trim_due:
            self._trimmer.soon()
        stored = [event_id(raw.decode()) for flag, raw in results if flag == 1]
        duplicates = [event_id(raw.decode()) for flag, raw in results if flag == 0]
        return AppendResult(stored, duplicates, [flag == 1 for flag, _ in results])

    async def _store(
        self,
        script_keys: list[str],
        args: list[str | int | bytes],
        suppress: scripts.ScriptArgs | None,
    ) -> Any:
        """The append script, and behind it in the same pipeline (so in the same round trip,
        and run after it) the suppression script, which finds each event's entry by its seen
        key. Either failing fails the append: the provider's retry does both again (the
        append as a duplicate, the suppression as if new)."""
        appended = self._pipeline.script(self._append, keys=script_keys, args=args)
        if suppress is None:
            return await appended
        suppressed = self._pipeline.script(self._suppress, keys=suppress[0], args=suppress[1])
        replies = await asyncio.gather(appended, suppressed, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies[0]

    async def trim(self, *, max_calls: int = 100) -> int:
        """Trim delivered events past `maxlen` now, at most 10,000 entries per script call
        (each a fraction of a millisecond of Redis time), rather than waiting for appends:
        they are refused while Redis is nearly full. Returns how many entries went."""
        return await self._trimmer.trim(max_calls=max_calls)

    async def drain(self) -> None:
        """Wait for the background trim, if any (before the Redis client closes)."""
        await self._trimmer.drain()

    async def claim_token(self, provider: str, token: str, owner: str, *, ttl_seconds: int) -> bool:
        """Record that `token` came with `owner`; False if it already came with another."""
        key = keys.token(provider, seen_digest(token))
        if await self._redis.set(key, owner, nx=True, ex=ttl_seconds):
            return True
        return bool(await self._redis.get(key) == owner.encode())

    async def get(self, event_id_: str) -> Event | None:
        entry = entry_id(event_id_)
        if entry is None:
            return None
        rows = await self._redis.xrange(keys.EVENTS_STREAM, entry, entry)
        return self._decode(rows[0]) if rows else None  # None too for an entry no event

    async def recent(
        self, where: EventFilter, *, before: str | None, limit: int
    ) -> tuple[list[Event], str | None]:
        """Newest first, strictly older than the event id `before`; and the next cursor."""
        before_entry = entry_id(before) if before else None
        if where.email_id is not None:
            index = keys.events_by_email(where.email_id)
        elif where.recipient is not None:
            index = keys.events_by_recipient(where.recipient)
        elif not where.every_account and indexed_account(where.account):
            index = keys.events_by_account(where.account or "")
        else:
            return await self._recent_scanned(where, before_entry, limit)
        return await self._recent_indexed(where, index, before_entry, limit)

    async def _recent_scanned(
        self, where: EventFilter, before: str | None, limit: int
    ) -> tuple[list[Event], str | None]:
        found: list[Event] = []
        upper = f"({before}" if before else "+"
        scanned = 0
        while scanned < self._scan_budget:
            chunk = min(_SCAN_CHUNK, self._scan_budget - scanned)
            rows = await self._redis.xrevrange(keys.EVENTS_STREAM, upper, "-", count=chunk)
            if not rows:
                return found, None
            for row in rows:
                scanned += 1
                event = self._decode(row)
                if event is not None and where.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        return found, event.id if isinstance(event.id, str) else None
            upper = f"({rows[-1][0].decode()}"
        # Budget spent before the page filled: the cursor resumes where the scan stopped.
        return found, event_id(upper[1:])

    async def _recent_indexed(
        self, where: EventFilter, index: str, before: str | None, limit: int
    ) -> tuple[list[Event], str | None]:
        upper = f"({entry_member(before)}" if before else "+"
        found: list[Event] = []
        scanned = 0
        while scanned < self._scan_budget:
            chunk = min(_SCAN_CHUNK, self._scan_budget - scanned)
            members = await self._redis.zrevrangebylex(index, upper, "-", start=0, num=chunk)
            if not members:
                return found, None
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in members:
                    entry = member_entry(member.decode())
                    pipe.xrange(keys.EVENTS_STREAM, entry, entry)
                rows = await pipe.execute()
            for row in rows:
                scanned += 1
                if not row:
                    continue  # trimmed from the stream since it was indexed
                event = self._decode(row[0])
                if event is not None and where.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        return found, event.id if isinstance(event.id, str) else None
            upper = f"({members[-1].decode()}"
        return found, event_id(member_entry(upper[1:]))

    @staticmethod
    def _decode(row: tuple[bytes, dict[bytes, bytes]]) -> Event | None:
        """The entry's event, or None for an entry that is none (written to the stream by
        something else): every read skips it, as the worker does."""
        raw_id, fields = row
        try:
            return decode_entry(raw_id.decode(), fields)
        except (KeyError, msgspec.DecodeError):
            return None
