"""Accounts' lanes: the events of an account that the workers will not hold in memory (its
backlog beyond ACCOUNT_QUEUE events), moved out of the partition's events stream so that the
stream goes on for every other account (service.core.fairness, docs/delivery.md).

A lane is a stream read through the same consumer group as the events stream: several
workers share it, and entries a dead worker held are reclaimed (XAUTOCLAIM) as on the events
stream. Its entries are deleted once delivered; an empty lane is deleted.
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

_SPILL = scripts.load("spill")
_LANE_ACK = scripts.load("lane_ack")
_DEAD_LETTER = scripts.load("lane_dead_letter")


def spill_call(
    *,
    stream: str,
    lanes: str,
    lane_keys: Sequence[str],
    group: str,
    now_ms: int,
    entries: Sequence[tuple[str, str]],
) -> scripts.ScriptArgs:
    """KEYS and ARGV of spill.lua: per entry its account's lane, and (entry id, account)."""
    args: list[str | int | bytes] = [group, now_ms]
    for entry_id, account in entries:
        args += (entry_id, account)
    return [stream, lanes, *lane_keys], args


def lane_dead_letter_call(
    *,
    lane: str,
    dead: str,
    lanes: str,
    group: str,
    lane_entry_id: str,
    consumer: str,
    reason: str,
    detail: str,
    at: str,
    min_deliveries: int,
    account: str,
) -> scripts.ScriptArgs:
    """KEYS and ARGV of lane_dead_letter.lua."""
    return [lane, dead, lanes], [
        group, lane_entry_id, consumer, reason, detail, at, min_deliveries, account,
    ]  # fmt: skip


def lane_ack_call(
    *, lane: str, lanes: str, group: str, account: str, lane_entry_ids: Sequence[str]
) -> scripts.ScriptArgs:
    """KEYS and ARGV of lane_ack.lua."""
    return [lane, lanes], [group, account, *lane_entry_ids]


@dataclass(slots=True)
class LaneRead:
    # (lane entry id, original entry id, event)
    events: list[tuple[str, str, Event]] = field(default_factory=list)
    not_events: list[str] = field(default_factory=list)  # lane entry ids
    # Reclaims only: how many times the group has handed out each lane entry.
    deliveries: dict[str, int] = field(default_factory=dict)
    gone: bool = False  # the lane does not exist (drained and deleted, by any worker)


class Lanes:
    def __init__(
        self,
        redis: RedisClient,
        pipeline: AutoPipeline | None = None,
        *,
        group: str = keys.DELIVERY_GROUP,
    ) -> None:
        self._redis = redis
        self._pipeline = pipeline or autopipeline_for(redis)
        self._group = group
        self._spill = register_script(redis, _SPILL.source)
        self._ack = register_script(redis, _LANE_ACK.source)
        self._dead_letter = register_script(redis, _DEAD_LETTER.source)

    async def spill(
        self, stream: str, partition: int, entries: Sequence[tuple[str, str]], now_ms: int
    ) -> int:
        """Move `entries` ((entry id, account), all of `partition`) from `stream`, where
        they are pending in the group, to their accounts' lanes: how many were copied."""
        script_keys, args = spill_call(
            stream=stream,
            lanes=keys.lanes(partition),
            lane_keys=[keys.lane(account) for _, account in entries],
            group=self._group,
            now_ms=now_ms,
            entries=entries,
        )
        copied: int = await self._pipeline.script(self._spill, script_keys, args)
        return copied

    async def read(self, account: str, consumer: str, count: int) -> LaneRead:
        """Up to `count` entries of the account's lane that no worker has read yet."""
        try:
            # Not through the AutoPipeline: XREADGROUP's key is not its first argument, which
            # the cluster's pipeline routes by; a read of 100 or more pays its round trip.
            response = await self._redis.xreadgroup(
                self._group, consumer, {keys.lane(account): ">"}, count=count
            )
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc):
                return LaneRead(gone=True)
            raise
        if not response:
            return LaneRead()
        return _decoded(_entries(response))

    async def reclaim(
        self, account: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> LaneRead:
        """Take over lane entries left pending longer than `min_idle_ms` (their worker died),
        with how many times each has been handed out."""
        lane = keys.lane(account)
        try:
            _, entries, _ = await self._redis.xautoclaim(
                lane,
                self._group,
                consumer,
                min_idle_time=min_idle_ms,
                start_id="0-0",
                count=count,
            )
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc):
                return LaneRead(gone=True)
            raise
        claimed = [(raw_id, fields) for raw_id, fields in entries if fields]
        read = _decoded(claimed)
        if claimed:
            # One XPENDING per entry taken: a range could miss those behind the older
            # entries this consumer holds already.
            async with self._redis.pipeline(transaction=False) as pipe:
                for raw_id, _ in claimed:
                    pipe.xpending_range(lane, self._group, raw_id, raw_id, 1)
                replies = await pipe.execute()
            for rows in replies:
                for row in rows:
                    read.deliveries[_text(row["message_id"])] = int(row["times_delivered"])
        return read

    async def touch(self, account: str, consumer: str, lane_entry_ids: Sequence[str]) -> None:
        """Reset the idle time of lane entries `consumer` holds (as EventStream.touch)."""
        await self._redis.xclaim(
            keys.lane(account), self._group, consumer, 0, list(lane_entry_ids), justid=True
        )

    def ack(self, account: str, lane_entry_ids: Sequence[str]) -> asyncio.Future[Any]:
        """Delete delivered lane entries (with the next AutoPipeline batch); the reply is 1
        when the lane is left empty and has been deleted."""
        script_keys, args = lane_ack_call(
            lane=keys.lane(account),
            lanes=keys.lanes(keys.partitioning().of_account(account)),
            group=self._group,
            account=account,
            lane_entry_ids=lane_entry_ids,
        )
        return self._pipeline.script(self._ack, script_keys, args)

    async def dead_letter(
        self,
        account: str,
        lane_id: str,
        *,
        consumer: str,
        reason: str,
        detail: str,
        at: str,
        min_deliveries: int,
    ) -> str | None:
        """Set a lane entry aside as a dead letter of its partition and delete it from the
        lane, in one script (lane_dead_letter.lua): only while `consumer` holds it and the
        group has handed it out `min_deliveries` times. The letter names the event's own
        entry id, so it lists and redrives as any dead letter. The letter's id, or None."""
        partition = keys.partitioning().of_account(account)
        script_keys, args = lane_dead_letter_call(
            lane=keys.lane(account),
            dead=keys.dead_letters(partition),
            lanes=keys.lanes(partition),
            group=self._group,
            lane_entry_id=lane_id,
            consumer=consumer,
            reason=reason,
            detail=detail,
            at=at,
            min_deliveries=min_deliveries,
            account=account,
        )
        letter = await self._pipeline.script(self._dead_letter, script_keys, args)
        return _text(letter) if letter else None

    async def accounts(self, partition: int) -> list[str]:
        """The accounts with a lane in `partition`."""
        members = await self._redis.zrange(keys.lanes(partition), 0, -1)
        return [_text(member) for member in members]


def _entries(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    # XREADGROUP through the AutoPipeline: RESP2's [[stream, [[id, [k, v, …]], …]]], or
    # already parsed by redis-py's callback into [[stream, [(id, {k: v})]]].
    rows = response[0][1] if isinstance(response, list) else next(iter(response.values()))[0]
    entries = []
    for raw_id, fields in rows:
        if isinstance(fields, list):
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        entries.append((raw_id, fields or {}))
    return entries


def _decoded(entries: Sequence[tuple[bytes | str, dict[bytes, bytes]]]) -> LaneRead:
    read = LaneRead()
    for raw_id, fields in entries:
        lane_id = _text(raw_id)
        try:
            original = fields[b"id"].decode()
            # The event's id names its partition (with several): its account's.
            account = fields.get(b"a", b"").decode() or None
            partition = keys.partitioning().of_account(account)
            read.events.append((lane_id, original, decode_entry(original, fields, partition)))
        except (KeyError, UnicodeDecodeError, msgspec.DecodeError):
            read.not_events.append(lane_id)
    return read


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
