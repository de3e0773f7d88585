"""Dead letters: the events stream entries the worker set aside (service.storage.stream's
`dead_letter` puts them here), read, redriven and deleted by operators.

A dead letter is an entry of a partition's dead-letter stream (`keys.dead_letters`); its
public id is `dl_` + that entry id (+ `_` + the partition when there are several, as event
ids), so its id is also when it was set aside. Redriving appends the original fields (the
event, and its account in field a) to the same partition's events stream as a new entry and
deletes the dead letter, in one script (which also removes the original entry, when no
consumer group needs it any more): the event gets a new id and is delivered again to every
subscriber, as any new event. Listing merges the partitions' dead letters, newest first.
"""

from __future__ import annotations

import asyncio
import builtins
from dataclasses import dataclass

import msgspec

from service.core.ids import dead_letter_id, dead_letter_location, entry_key
from service.core.models import DeadLetter, Event
from service.storage import keys, scripts
from service.storage.connection import RedisClient, register_script
from service.storage.events import (
    INDEX_TTL_SECONDS,
    decode_entry,
    in_deployment,
    older_than,
    stored_event_id,
)
from service.storage.trimming import index_keys

# Redriving everything reads the dead letters this many at a time.
REDRIVE_BATCH = 100
FIELD_PREFIX = b"f:"

_REDRIVE = scripts.load("redrive_dead_letter")


def redrive_call(
    *, dead: str, stream: str, index_keys: builtins.list[str], letter_id: str, index_ttl: int
) -> scripts.ScriptArgs:
    """KEYS and ARGV of redrive_dead_letter.lua."""
    return [dead, stream, *index_keys], [letter_id, index_ttl]


class NothingToRedrive(Exception):
    """The dead letter holds no original fields: its entry was gone when it was set aside."""


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    entry: str  # its own entry id, in the dead-letter stream
    original: str  # the events stream entry it was
    reason: str  # unreadable, failed or reclaimed
    detail: str
    at: str
    deliveries: int
    consumer: str
    fields: dict[bytes, bytes]  # the original entry's, as they were
    partition: int = 0  # of both streams, the events' and the dead letters'
    # Set aside from its account's lane (service.storage.lanes): the lane entry it was.
    lane_entry: str | None = None

    @classmethod
    def from_row(
        cls, raw_id: bytes, row: dict[bytes, bytes], partition: int = 0
    ) -> StoredDeadLetter:
        def text(name: bytes) -> str:
            return row.get(name, b"").decode(errors="backslashreplace")

        deliveries = text(b"deliveries")
        return cls(
            entry=raw_id.decode(),
            original=text(b"entry"),
            reason=text(b"reason"),
            detail=text(b"detail"),
            at=text(b"at"),
            deliveries=int(deliveries) if deliveries.isdigit() else 0,
            consumer=text(b"consumer"),
            fields={
                name.removeprefix(FIELD_PREFIX): value
                for name, value in row.items()
                if name.startswith(FIELD_PREFIX)
            },
            partition=partition,
            lane_entry=text(b"lane_entry") or None,
        )

    @property
    def id(self) -> str:
        return stored_dead_letter_id(self.entry, self.partition)

    @property
    def event_id(self) -> str:
        """The original event's id (evt_…), by which it was stored and maybe delivered."""
        return stored_event_id(self.original, self.partition)

    @property
    def account_id(self) -> str | None:
        """The account its event was routed to; None when unrouted, or it holds no event."""
        event = self.event()
        return None if event is None else event.account_id

    def event(self) -> Event | None:
        """The event it holds, or None if it holds none (an unreadable entry)."""
        try:
            return decode_entry(self.original, self.fields, self.partition)
        except (KeyError, UnicodeDecodeError, msgspec.DecodeError):
            return None

    def public(self, *, with_fields: bool = False) -> DeadLetter:
        """As the API and the CLI show it; the original fields only `with_fields`."""
        event = self.event()
        view = DeadLetter(
            id=self.id,
            event_id=self.event_id,
            reason=self.reason,
            detail=self.detail,
            dead_lettered_at=self.at,
            deliveries=self.deliveries,
            account_id=None if event is None else event.account_id,
            event=event,
        )
        if with_fields:
            view.fields = self.text_fields()
        return view

    def text_fields(self) -> dict[str, str]:
        """The original fields for people: bytes that are not UTF-8 as \\xNN escapes."""
        return {
            name.decode(errors="backslashreplace"): value.decode(errors="backslashreplace")
            for name, value in self.fields.items()
        }


def stored_dead_letter_id(entry: str, partition: int) -> str:
    """The public id of dead letter `entry` of `partition`: naming the partition only when
    there are several (as event ids)."""
    return dead_letter_id(entry, partition if keys.partitioning().count > 1 else None)


def _located(letter_id: str) -> tuple[str, int] | None:
    return in_deployment(dead_letter_location(letter_id))


class DeadLetterStore:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._redrive = register_script(redis, _REDRIVE.source)

    async def count(self) -> int:
        """Every partition's dead letters."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition in keys.partitioning().all():
                pipe.xlen(keys.dead_letters(partition))
            return sum(int(n) for n in await pipe.execute())

    async def page(
        self, *, before: str | None, limit: int
    ) -> tuple[builtins.list[StoredDeadLetter], str | None]:
        """Newest first (by entry id, then partition), strictly older than the dead letter id
        `before`; and the next page's `before`."""
        cursor: tuple[str, int] | None = None
        if before is not None:
            located = dead_letter_location(before)
            if located is None:
                return [], None
            cursor = (located[0], located[1] or 0)
        partitions = keys.partitioning().all()
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition in partitions:
                upper = older_than(cursor, partition)
                pipe.xrevrange(keys.dead_letters(partition), upper, "-", count=limit + 1)
            replies = await pipe.execute()
        ranked = sorted(
            (
                ((entry_key(raw_id.decode()), partition), raw_id, row)
                for partition, rows in zip(partitions, replies, strict=True)
                for raw_id, row in rows
            ),
            key=lambda ranked: ranked[0],
            reverse=True,
        )
        found = [
            StoredDeadLetter.from_row(raw_id, row, position[1])
            for position, raw_id, row in ranked[:limit]
        ]
        return found, found[-1].id if len(ranked) > limit else None

    async def get(self, letter_id: str) -> StoredDeadLetter | None:
        located = _located(letter_id)
        if located is None:
            return None
        entry, partition = located
        rows = await self._redis.xrange(keys.dead_letters(partition), entry, entry)
        if not rows:
            return None
        raw_id, row = rows[0]
        return StoredDeadLetter.from_row(raw_id, row, partition)

    async def redrive(self, letter_id: str) -> str | None:
        """Append the dead letter's event to its partition's events stream again, as a new
        entry, and delete the dead letter (one script). The new event's id, or None if there
        is no such dead letter. NothingToRedrive if it holds no original fields."""
        letter = await self.get(letter_id)
        if letter is None:
            return None
        partition = letter.partition
        script_keys, args = redrive_call(
            dead=keys.dead_letters(partition),
            stream=keys.events_stream(partition),
            index_keys=index_keys(letter.fields, partition),
            letter_id=letter.entry,
            index_ttl=INDEX_TTL_SECONDS,
        )
        new_entry = await self._redrive(keys=script_keys, args=args)
        if new_entry == 0:
            raise NothingToRedrive(f"dead letter {letter_id} holds no event to redrive")
        return stored_event_id(new_entry.decode(), partition) if new_entry else None

    async def redrive_all(self, *, since_ms: int | None = None) -> int:
        """Redrive every dead letter set aside since `since_ms` (all without it) that was
        there when this began (those set aside again meanwhile stay). How many went."""
        counts = await asyncio.gather(
            *(self._redrive_all_in(p, since_ms) for p in keys.partitioning().all())
        )
        return sum(counts)

    async def _redrive_all_in(self, partition: int, since_ms: int | None) -> int:
        dead = keys.dead_letters(partition)
        newest = await self._redis.xrevrange(dead, "+", "-", count=1)
        if not newest:
            return 0
        last = newest[0][0].decode()
        lower = "-" if since_ms is None else f"{since_ms}-0"
        redriven = 0
        while True:
            rows = await self._redis.xrange(dead, lower, last, count=REDRIVE_BATCH)
            for raw_id, _ in rows:
                letter_id = stored_dead_letter_id(raw_id.decode(), partition)
                try:
                    redriven += await self.redrive(letter_id) is not None
                except NothingToRedrive:
                    continue  # kept, for people to read and delete
            if len(rows) < REDRIVE_BATCH:
                return redriven
            lower = f"({rows[-1][0].decode()}"

    async def delete(self, letter_id: str) -> bool:
        located = _located(letter_id)
        if located is None:
            return False
        entry, partition = located
        return bool(await self._redis.xdel(keys.dead_letters(partition), entry))
