"""What GET /api/status (and `mailhooks status`) and /readyz read from Redis, gathered in
one pipeline."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from config import Config
from service.core.clock import Clock
from service.core.ids import entry_order
from service.core.models import ServiceStatus
from service.core.status import Readings, assess, combined
from service.storage import keys
from service.storage.capacity import memory
from service.storage.connection import RedisClient
from service.storage.deliveries import lease_ms

# An entry is normally acknowledged within a lease of being read, or reclaimed after two
# and acknowledged then; first attempts queued behind a slow endpoint may wait ten leases.
STUCK_AFTER_LEASES = 20


class StatusStore:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def beat(self, at: str, *, ttl_seconds: int) -> None:
        """The worker's heartbeat: `at`, gone unless renewed within `ttl_seconds`."""
        await self._redis.set(keys.WORKER_HEARTBEAT, at, ex=ttl_seconds)

    async def report(self, config: Config, clock: Clock) -> ServiceStatus:
        """The readings, assessed as of right after them: the status report."""
        readings = await self.readings()
        return assess(
            readings,
            clock(),
            stuck_after_seconds=STUCK_AFTER_LEASES * lease_ms(config) / 1000,
            ingest_limit=config.ingest_memory_limit,
        )

    async def readings(self) -> Readings:
        """One pipeline: the shared readings, and each partition's stream's (combined)."""
        partitions = keys.partitioning().all()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.WORKER_HEARTBEAT)
            pipe.get(keys.UNREADABLE_EVENTS)
            for partition in partitions:
                stream = keys.events_stream(partition)
                pipe.xlen(stream)
                pipe.xinfo_groups(stream)
                pipe.xpending(stream, keys.DELIVERY_GROUP)
                pipe.xinfo_stream(stream)
                pipe.xlen(keys.dead_letters(partition))
            for partition in partitions:
                pipe.zrange(keys.lanes(partition), 0, -1)
            replies = await pipe.execute(raise_on_error=False)
        lanes = replies[-len(partitions) :]
        replies = replies[: -len(partitions)]
        in_lanes, oldest_in_lane = await self._lanes(lanes)
        # Memory on its own: on a cluster, every master's (the fullest counts).
        used_memory, maxmemory = await memory(self._redis)
        heartbeat, unreadable = replies[:2]
        for reply in (heartbeat, unreadable):
            if isinstance(reply, Exception):
                raise reply
        shared = {
            "heartbeat": heartbeat.decode() if heartbeat else None,
            "used_memory": used_memory,
            "maxmemory": maxmemory,
            "unreadable": int(unreadable or 0),
            "in_lanes": in_lanes,
            "oldest_in_lane": oldest_in_lane,
        }
        per_partition = replies[2:]
        return combined(
            [
                _stream_readings(per_partition[i : i + 5], shared)
                for i in range(0, len(per_partition), 5)
            ]
        )

    async def _lanes(self, listed: list[Any]) -> tuple[int, str | None]:
        """Events waiting in accounts' lanes (service.storage.lanes), and the oldest of them
        (its original entry id): each listed lane's length and first entry."""
        lanes = [keys.lane(_text(a) or "") for found in listed if not isinstance(found, Exception)
                 for a in found]  # fmt: skip
        if not lanes:
            return 0, None
        async with self._redis.pipeline(transaction=False) as pipe:
            for lane in lanes:
                pipe.xlen(lane)
                pipe.xrange(lane, "-", "+", count=1)
            replies = await pipe.execute(raise_on_error=False)
        waiting, heads = 0, []
        for length, head in zip(replies[::2], replies[1::2], strict=True):
            if isinstance(length, int):
                waiting += length
            if isinstance(head, list) and head and b"id" in head[0][1]:
                heads.append(head[0][1][b"id"].decode())
        return waiting, min(heads, key=entry_order, default=None)


def _stream_readings(replies: list[Any], shared: dict[str, Any]) -> Readings:
    stored, groups, pending, stream, dead = replies
    for reply in (stored, dead):
        if isinstance(reply, Exception):
            raise reply
    # No stream yet ("no such key") or no group yet (NOGROUP): nothing read, nothing pending.
    if isinstance(groups, ResponseError):
        groups = []
    if isinstance(pending, ResponseError):
        pending = {"pending": 0, "min": None}
    if isinstance(stream, ResponseError):
        stream = {}
    group = next((g for g in groups if g["name"] == keys.DELIVERY_GROUP.encode()), None)
    oldest = pending["min"]
    return Readings(
        stored=stored,
        group_exists=group is not None,
        lag=None if group is None or group.get("lag") is None else int(group["lag"]),
        last_delivered=_text(group.get("last-delivered-id")) if group else None,
        last_entry=_text(stream.get("last-generated-id")),
        in_progress=int(pending["pending"]),
        oldest_in_progress=_text(oldest),
        dead_letters=int(dead),
        **shared,
    )


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
