"""An events stream as the delivery group reads it: new entries, entries a dead consumer
left pending, acknowledgements, and the group's upkeep. One EventStream per partition's
stream (`partition`; one partition: the one stream as before partitions), its dead letters
in the partition's dead-letter stream, so each script touches one slot.

Reads hand back decoded events with their entry ids, and apart the ids of entries that are
not events (written by hand, or by a bug): the consumer sets those aside as dead letters
(`dead_letter`: copied to the dead-letter stream and acknowledged in one script), as it does
entries whose processing keeps failing. Reading and redriving them: service.storage.dead_letters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.exceptions

from service.core.models import Event
from service.storage import keys, scripts
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import RedisClient, autopipeline_for, register_script
from service.storage.events import decode_entry

_FORGET_DEAD_CONSUMERS = scripts.load("forget_dead_consumers")
_DEAD_LETTER = scripts.load("dead_letter")


def forget_dead_consumers_call(
    *, stream: str, group: str, idle_limit_ms: int
) -> scripts.ScriptArgs:
    """KEYS and ARGV of forget_dead_consumers.lua."""
    return [stream], [group, idle_limit_ms]


def dead_letter_call(
    *,
    stream: str,
    dead: str,
    group: str,
    entry_id: str,
    consumer: str,
    reason: str,
    detail: str,
    at: str,
    min_deliveries: int,
) -> scripts.ScriptArgs:
    """KEYS and ARGV of dead_letter.lua."""
    return [stream, dead], [group, entry_id, consumer, reason, detail, at, min_deliveries]


@dataclass(slots=True)
class StreamRead:
    events: list[tuple[str, Event]] = field(default_factory=list)  # (entry id, event)
    not_events: list[str] = field(default_factory=list)  # entry ids: set them aside
    why_not: dict[str, str] = field(default_factory=dict)  # of each of not_events
    # Reclaims only: entries pending in the group that have gone from the stream.
    deleted: list[str] = field(default_factory=list)
    # Reclaims only: how many times the group has handed out each entry, this time included.
    deliveries: dict[str, int] = field(default_factory=dict)


class EventStream:
    def __init__(
        self,
        redis: RedisClient,
        pipeline: AutoPipeline | None = None,
        *,
        group: str = keys.DELIVERY_GROUP,
        partition: int = 0,
    ) -> None:
        self._redis = redis
        self.partition = partition
        self._stream = keys.events_stream(partition)
        self._dead = keys.dead_letters(partition)
        self.key = self._stream
        # Acknowledgements travel with whatever else is sent at the time (the worker's).
        self._pipeline = pipeline or autopipeline_for(redis)
        self._group = group
        self._forget = register_script(redis, _FORGET_DEAD_CONSUMERS.source)
        self._dead_letter = register_script(redis, _DEAD_LETTER.source)

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing, reading from the very first entry."""
        try:
            await self._redis.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, consumer: str, *, count: int, block_ms: int) -> StreamRead:
        """Entries no consumer of the group has read yet, waiting up to `block_ms` for some.
        Blocking: on the client's own connection, never through the AutoPipeline."""
        response = await self._redis.xreadgroup(
            self._group, consumer, {self._stream: ">"}, count=count, block=block_ms
        )
        return _decoded(response[0][1] if response else [], self.partition)

    async def reclaim(self, consumer: str, *, min_idle_ms: int, count: int) -> StreamRead:
        """Take over entries left pending (read, unacknowledged) longer than `min_idle_ms`,
        with the number of times each has been handed out (XPENDING's delivery count)."""
        _, entries, deleted = await self._redis.xautoclaim(
            self._stream,
            self._group,
            consumer,
            min_idle_time=min_idle_ms,
            start_id="0-0",
            count=count,
        )
        claimed = [(raw_id, fields) for raw_id, fields in entries if fields]
        read = _decoded(claimed, self.partition)
        read.deleted = [raw.decode() if isinstance(raw, bytes) else raw for raw in deleted]
        if claimed:
            async with self._redis.pipeline(transaction=False) as pipe:
                for raw_id, _ in claimed:
                    pipe.xpending_range(self._stream, self._group, raw_id, raw_id, 1)
                replies = await pipe.execute()
            for rows in replies:
                for row in rows:  # none when acknowledged meanwhile
                    read.deliveries[_text(row["message_id"])] = int(row["times_delivered"])
        return read

    async def dead_letter(
        self,
        entry_id: str,
        *,
        consumer: str,
        reason: str,
        detail: str,
        at: str,
        min_deliveries: int = 0,
    ) -> str | None:
        """Set the entry aside as a dead letter and acknowledge it, in one script (see
        dead_letter.lua): only while `consumer` holds it and it has been handed out at least
        `min_deliveries` times. The dead letter's entry id, or None when left as it is."""
        script_keys, args = dead_letter_call(
            stream=self._stream,
            dead=self._dead,
            group=self._group,
            entry_id=entry_id,
            consumer=consumer,
            reason=reason,
            detail=detail,
            at=at,
            min_deliveries=min_deliveries,
        )
        letter = await self._dead_letter(keys=script_keys, args=args)
        return _text(letter) if letter else None

    def count_unreadable(self, count: int) -> asyncio.Future[Any]:
        """Note `count` entries that were no event, for /api/status (with the next batch).
        Need not be awaited: a failure is only a count missed."""
        future = self._pipeline.execute("INCRBY", keys.UNREADABLE_EVENTS, count)
        future.add_done_callback(_retrieve)
        return future

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries `consumer` holds (XCLAIM JUSTID: no delivery is
        counted), so that no reclaim takes them while it is still at work on them."""
        await self._redis.xclaim(
            self._stream, self._group, consumer, 0, list(entry_ids), justid=True
        )

    def ack(self, entry_ids: Sequence[str]) -> asyncio.Future[Any]:
        """XACK these entries, with the next AutoPipeline batch: await it for the reply."""
        return self._pipeline.execute("XACK", self._stream, self._group, *entry_ids)

    async def forget_dead_consumers(self, idle_limit_ms: int) -> list[str]:
        """Delete the group's consumers idle longer than `idle_limit_ms` with nothing pending
        (checked and deleted in one script: see forget_dead_consumers.lua). Their names."""
        script_keys, args = forget_dead_consumers_call(
            stream=self._stream, group=self._group, idle_limit_ms=idle_limit_ms
        )
        deleted = await self._forget(keys=script_keys, args=args)
        return [name.decode() for name in deleted]


def _decoded(entries: Sequence[tuple[bytes, dict[bytes, bytes]]], partition: int) -> StreamRead:
    read = StreamRead()
    for raw_id, fields in entries:
        entry_id = raw_id.decode()
        try:
            read.events.append((entry_id, decode_entry(entry_id, fields, partition)))
        except KeyError:
            read.not_events.append(entry_id)
            read.why_not[entry_id] = "no event field (e)"
        except msgspec.DecodeError as exc:
            read.not_events.append(entry_id)
            read.why_not[entry_id] = f"the event field (e) does not decode: {exc}"
    return read


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # seen, so never reported as an exception nobody retrieved
