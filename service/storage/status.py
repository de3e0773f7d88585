"""What GET /api/status (and `mailhooks status`) and /readyz read from Redis, gathered in
one pipeline."""

from __future__ import annotations

from redis.exceptions import ResponseError

from config import Config
from service.core.clock import Clock
from service.core.models import ServiceStatus
from service.core.status import Readings, assess
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
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.EVENTS_STREAM)
            pipe.get(keys.WORKER_HEARTBEAT)
            pipe.xinfo_groups(keys.EVENTS_STREAM)
            pipe.xpending(keys.EVENTS_STREAM, keys.DELIVERY_GROUP)
            pipe.xinfo_stream(keys.EVENTS_STREAM)
            pipe.get(keys.UNREADABLE_EVENTS)
            pipe.xlen(keys.DEAD_LETTERS)
            replies = await pipe.execute(raise_on_error=False)
        used_memory, maxmemory = await memory(self._redis)  # on a cluster: every master's
        stored, heartbeat, groups, pending, stream, unreadable, dead = replies
        for reply in (stored, heartbeat, unreadable, dead):
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
            heartbeat=heartbeat.decode() if heartbeat else None,
            used_memory=used_memory,
            maxmemory=maxmemory,
            group_exists=group is not None,
            lag=None if group is None or group.get("lag") is None else int(group["lag"]),
            last_delivered=_text(group.get("last-delivered-id")) if group else None,
            last_entry=_text(stream.get("last-generated-id")),
            in_progress=int(pending["pending"]),
            oldest_in_progress=_text(oldest),
            unreadable=int(unreadable or 0),
            dead_letters=int(dead),
        )


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
