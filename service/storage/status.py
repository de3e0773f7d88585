"""What GET /api/status and /readyz read from Redis, gathered in one pipeline."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.core.status import Readings
from service.storage import keys


class StatusStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def readings(self) -> Readings:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.EVENTS_STREAM)
            pipe.get(keys.WORKER_HEARTBEAT)
            pipe.info("memory")
            pipe.xinfo_groups(keys.EVENTS_STREAM)
            pipe.xpending(keys.EVENTS_STREAM, keys.DELIVERY_GROUP)
            stored, heartbeat, memory, groups, pending = await pipe.execute(raise_on_error=False)
        for reply in (stored, heartbeat, memory):
            if isinstance(reply, Exception):
                raise reply
        # No stream yet ("no such key") or no group yet (NOGROUP): nothing read, nothing pending.
        if isinstance(groups, ResponseError):
            groups = []
        if isinstance(pending, ResponseError):
            pending = {"pending": 0, "min": None}
        group = next((g for g in groups if g["name"] == keys.DELIVERY_GROUP.encode()), None)
        oldest = pending["min"]
        return Readings(
            stored=stored,
            heartbeat=heartbeat.decode() if heartbeat else None,
            used_memory=int(memory["used_memory"]),
            maxmemory=int(memory["maxmemory"]),
            group_exists=group is not None,
            lag=None if group is None or group.get("lag") is None else int(group["lag"]),
            in_progress=int(pending["pending"]),
            oldest_in_progress=oldest.decode() if isinstance(oldest, bytes) else oldest,
        )
