"""Inbound events in Redis: one stream per partition, de-duplication keys and lookup indexes.

`append` marks each provider event seen and appends it to the stream in one Lua script, so a
crash can neither lose an event that was answered 200 nor store a retry twice; the recipients
of the hard bounces, complaints and unsubscribes it stores go on their account's suppression
list in the same round trip (service.storage.suppressions). Trimming, with
the index entries of what it removes: service.storage.trimming.

Partitions (docs/design.md#partitions): an event, its seen key, indexes, counters and
suppressions are in its account's partition (unrouted events: partition 0's), so each script
touches one Redis Cluster slot; an append of several partitions' events runs one script per
partition, concurrently. An account's reads read its partition; the every-account view reads
every partition and merges them by time. Entry ids are per stream: with several partitions
an event id names its partition too (`evt_{entry}_{partition}`), so ids stay unique.
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
from service.core.ids import (
    entry_key,
    entry_member,
    event_id,
    event_location,
    member_entry,
)
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


def stored_event_id(entry: str, partition: int) -> str:
    """The public id of the event stored as `entry` of `partition`'s stream: it names the
    partition only when there are several (with one, ids are as before partitions)."""
    return event_id(entry, partition if keys.partitioning().count > 1 else None)


def in_deployment(located: tuple[str, int | None] | None) -> tuple[str, int] | None:
    """(entry, partition) of a parsed id (event or dead letter) if this deployment could have
    issued it: naming a partition exactly when there are several."""
    if located is None:
        return None
    entry, partition = located
    count = keys.partitioning().count
    if count == 1:
        return (entry, 0) if partition is None else None
    if partition is None or partition >= count:
        return None
    return entry, partition


def older_than(cursor: tuple[str, int] | None, partition: int) -> str:
    """The XREVRANGE upper bound of `partition`'s entries that come after `cursor` (entry id,
    partition) in the order of a merged read: newest first by entry id, then by partition
    (two partitions' streams can hold the same entry id). "+" without a cursor."""
    if cursor is None:
        return "+"
    entry, of = cursor
    return entry if partition < of else f"({entry}"


def decode_entry(entry_id_: str, fields: dict[bytes, bytes], partition: int = 0) -> Event:
    """The event a stream entry of `partition` holds (KeyError or msgspec.DecodeError if it
    holds none), with its account: "" when unrouted, none at all when stored before accounts
    existed."""
    event = _DECODER.decode(fields[b"e"])
    event.id = stored_event_id(entry_id_, partition)
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


# A position in the every-account order of events: newest first by entry id, then by
# partition (two partitions' streams can hold the same entry id).
_Position = tuple[tuple[int, int], int]


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
        # One per partition's stream, each to its share of maxlen.
        partitions = keys.partitioning().all()
        self._partition_maxlen = -(-maxlen // len(partitions))
        self._trimmers = [
            EventTrimmer(redis, maxlen=self._partition_maxlen, partition=partition)
            for partition in partitions
        ]
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
        the same round trip). Trims a partition's stream in the background when the append
        leaves it 100 past its maxlen."""
        if not events and not ignored:
            return AppendResult([], [])
        seen_ttl = self._dedup_ttl if dedup_ttl_seconds is None else dedup_ttl_seconds
        partitioning = keys.partitioning()
        if partitioning.count == 1:
            results = await self._append_in(0, provider, events, ignored, seen_ttl)
            return _result([(0, entry) for entry in results])
        # One script per partition, sent together: each touches its partition's slot only.
        # The ignored are counted in partition 0's.
        positions: dict[int, list[int]] = {0: []} if ignored else {}
        for position, event in enumerate(events):
            positions.setdefault(partitioning.of_account(event.account_id), []).append(position)
        if len(positions) == 1:
            # The usual request: one account's events, one partition. Awaited here, without
            # a task per partition (gather makes one for each coroutine, even a lone one).
            ((partition, chosen),) = positions.items()
            only = await self._append_in(
                partition, provider, events, ignored if partition == 0 else (), seen_ttl
            )
            return _result([(partition, entry) for entry in only])
        appended = await asyncio.gather(
            *(
                self._append_in(
                    partition,
                    provider,
                    [events[position] for position in chosen],
                    ignored if partition == 0 else (),
                    seen_ttl,
                )
                for partition, chosen in positions.items()
            )
        )
        merged: list[tuple[int, tuple[int, bytes]]] = [(0, (0, b""))] * len(events)
        for (partition, chosen), results in zip(positions.items(), appended, strict=True):
            for position, result in zip(chosen, results, strict=True):
                merged[position] = (partition, result)
        return _result(merged)

    async def _append_in(
        self,
        partition: int,
        provider: str,
        events: Sequence[Event],
        ignored: Sequence[Ignored],
        seen_ttl: int,
    ) -> list[tuple[int, bytes]]:
        """The append script (and the suppression script behind it) for events of one
        partition: per event, (1, entry id) when stored, (0, the original's) when a
        duplicate."""
        if not events and not ignored:
            return []
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
            seen_key = keys.seen(provider, seen_digest(dedup_id), partition)
            reason = suppression_reason(event)
            if reason is not None and account is not None and event.recipient:
                address = normalize_address(event.recipient)
                suppressing.append(event_suppression(seen_key, account, address, reason))
            event_keys.append(
                (
                    seen_key,
                    keys.events_by_email(event.email_id, partition),
                    keys.events_by_recipient(event.recipient or "", partition),
                    # Written only for an indexed account (account_flag), always of this
                    # partition; named for every event, in this partition's slot.
                    keys.events_by_account(account or DEFAULT_ACCOUNT, partition),
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
            stream=keys.events_stream(partition),
            counts=keys.inbound_counts(partition),
            trim_at=self._partition_maxlen + TRIM_EXCESS,
            seen_ttl=seen_ttl,
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
            if not await self._trim_joined():
                raise
            trim_due, results = await self._store(script_keys, args, suppress)
        if trim_due:
            self._trimmers[partition].soon()
        return [(flag, raw) for flag, raw in results]

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

    async def _trim_joined(self) -> int:
        """Every partition's trim, shared with concurrent callers (EventTrimmer.trim_joined)."""
        return sum(await asyncio.gather(*(t.trim_joined() for t in self._trimmers)))

    async def trim(self, *, max_calls: int = 100) -> int:
        """Trim delivered events past `maxlen` now, each partition's stream to its share, at
        most 10,000 entries per script call (each a fraction of a millisecond of Redis time),
        rather than waiting for appends: they are refused while Redis is nearly full. Returns
        how many entries went."""
        removed = 0
        for trimmer in self._trimmers:
            removed += await trimmer.trim(max_calls=max_calls)
        return removed

    async def drain(self) -> None:
        """Wait for the background trims, if any (before the Redis client closes)."""
        for trimmer in self._trimmers:
            await trimmer.drain()

    async def claim_token(self, provider: str, token: str, owner: str, *, ttl_seconds: int) -> bool:
        """Record that `token` came with `owner`; False if it already came with another."""
        key = keys.token(provider, seen_digest(token))
        if await self._redis.set(key, owner, nx=True, ex=ttl_seconds):
            return True
        return bool(await self._redis.get(key) == owner.encode())

    async def get(self, event_id_: str) -> Event | None:
        """The event with this id (it names its partition when there are several)."""
        located = in_deployment(event_location(event_id_))
        if located is None:
            return None
        entry, partition = located
        rows = await self._redis.xrange(keys.events_stream(partition), entry, entry)
        # None too for an entry no event
        return self._decode(rows[0], partition) if rows else None

    async def recent(
        self, where: EventFilter, *, before: str | None, limit: int
    ) -> tuple[list[Event], str | None]:
        """Newest first, strictly older than the event id `before`; and the next cursor.
        An account's events (and the unrouted, partition 0's) are read in its partition; the
        every-account view reads every partition and merges them, newest first (by entry id,
        then partition: two streams may hold the same entry id)."""
        partitioning = keys.partitioning()
        if where.every_account:
            partitions: Sequence[int] = partitioning.all()
        else:
            partitions = [partitioning.of_account(where.account)]
        located = event_location(before) if before else None
        cursor = None if located is None else (located[0], located[1] or 0)
        budget = max(1, self._scan_budget // len(partitions))
        reads = await asyncio.gather(
            *(self._recent_in(where, p, cursor, limit, budget) for p in partitions)
        )
        if len(partitions) == 1:
            [(found, frontier)] = reads
            return found, None if frontier is None else stored_event_id(frontier, partitions[0])
        return _merged(reads, partitions, limit)

    async def _recent_in(
        self,
        where: EventFilter,
        partition: int,
        cursor: tuple[str, int] | None,
        limit: int,
        budget: int,
    ) -> tuple[list[Event], str | None]:
        """Up to `limit` matching events of one partition older than `cursor` (entry,
        partition), newest first, scanning at most `budget` entries; and the entry the read
        stopped at (None: the partition has no more): everything newer is in the list."""
        upper = older_than(cursor, partition)
        if where.email_id is not None:
            index = keys.events_by_email(where.email_id, partition)
        elif where.recipient is not None:
            index = keys.events_by_recipient(where.recipient, partition)
        elif not where.every_account and indexed_account(where.account):
            index = keys.events_by_account(where.account or "")
        else:
            return await self._recent_scanned(where, partition, upper, limit, budget)
        return await self._recent_indexed(where, partition, index, upper, limit, budget)

    async def _recent_scanned(
        self, where: EventFilter, partition: int, upper: str, limit: int, budget: int
    ) -> tuple[list[Event], str | None]:
        found: list[Event] = []
        stream = keys.events_stream(partition)
        scanned = 0
        while scanned < budget:
            chunk = min(_SCAN_CHUNK, budget - scanned)
            rows = await self._redis.xrevrange(stream, upper, "-", count=chunk)
            if not rows:
                return found, None
            for row in rows:
                scanned += 1
                event = self._decode(row, partition)
                if event is not None and where.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        return found, row[0].decode()
            upper = f"({rows[-1][0].decode()}"
        # Budget spent before the page filled: the cursor resumes where the scan stopped.
        return found, upper[1:]

    async def _recent_indexed(
        self,
        where: EventFilter,
        partition: int,
        index: str,
        upper_entry: str,
        limit: int,
        budget: int,
    ) -> tuple[list[Event], str | None]:
        if upper_entry == "+":
            upper = "+"
        elif upper_entry.startswith("("):
            upper = f"({entry_member(upper_entry[1:])}"
        else:
            upper = f"[{entry_member(upper_entry)}"
        stream = keys.events_stream(partition)
        found: list[Event] = []
        scanned = 0
        while scanned < budget:
            chunk = min(_SCAN_CHUNK, budget - scanned)
            members = await self._redis.zrevrangebylex(index, upper, "-", start=0, num=chunk)
            if not members:
                return found, None
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in members:
                    entry = member_entry(member.decode())
                    pipe.xrange(stream, entry, entry)
                rows = await pipe.execute()
            for member, row in zip(members, rows, strict=True):
                scanned += 1
                if not row:
                    continue  # trimmed from the stream since it was indexed
                event = self._decode(row[0], partition)
                if event is not None and where.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        return found, member_entry(member.decode())
            upper = f"({members[-1].decode()}"
        return found, member_entry(upper[1:])

    @staticmethod
    def _decode(row: tuple[bytes, dict[bytes, bytes]], partition: int) -> Event | None:
        """The entry's event, or None for an entry that is none (written to the stream by
        something else): every read skips it, as the worker does."""
        raw_id, fields = row
        try:
            return decode_entry(raw_id.decode(), fields, partition)
        except (KeyError, msgspec.DecodeError):
            return None


def _result(results: Sequence[tuple[int, tuple[int, bytes]]]) -> AppendResult:
    """The AppendResult of (partition, (flag, entry id)) per event, in the caller's order."""
    stored: list[str] = []
    duplicates: list[str] = []
    new: list[bool] = []
    partitioned = keys.partitioning().count > 1
    for partition, (flag, raw) in results:
        id_ = event_id(raw.decode(), partition if partitioned else None)
        (stored if flag == 1 else duplicates).append(id_)
        new.append(flag == 1)
    return AppendResult(stored, duplicates, new)


def _merged(
    reads: Sequence[tuple[list[Event], str | None]], partitions: Sequence[int], limit: int
) -> tuple[list[Event], str | None]:
    """One page of the every-account view from each partition's read (its events, and the
    entry it stopped at). Only what is newer than the latest stopping point is known in every
    partition: the page holds that, and the next one resumes from there."""
    frontier: _Position | None = None
    ranked: list[tuple[_Position, Event]] = []
    for partition, (found, stopped) in zip(partitions, reads, strict=True):
        if stopped is not None:
            frontier = max(frontier or _LOWEST, (entry_key(stopped), partition))
        for event in found:
            located = event_location(str(event.id))
            assert located is not None  # ids of stored events
            ranked.append(((entry_key(located[0]), partition), event))
    ranked.sort(key=lambda pair: pair[0], reverse=True)
    known = [pair for pair in ranked if frontier is None or pair[0] >= frontier]
    if len(known) >= limit:
        page = [event for _, event in known[:limit]]
        more = len(known) > limit or frontier is not None
        return page, str(page[-1].id) if more else None
    page = [event for _, event in known]
    if frontier is None:
        return page, None
    (ms, seq), partition = frontier
    return page, stored_event_id(f"{ms}-{seq}", partition)


_LOWEST: _Position = ((-1, -1), -1)
