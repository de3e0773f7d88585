"""Whether Redis has room for more inbound events.

Ingest stops at `INGEST_MEMORY_LIMIT` of Redis's `maxmemory`, short of full: a full Redis
refuses the worker's writes too, so it could not deliver, acknowledge and trim the events
that filled it. The rest is the worker's headroom (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.clock import Clock, system_clock

logger = logging.getLogger("mailhooks")

# INFO memory is read at most this often per process: a request pays for it once a second.
REFRESH_SECONDS = 1.0


def over_limit(used_memory: int, maxmemory: int, limit: float) -> bool:
    """maxmemory 0 means unlimited: never over."""
    return maxmemory > 0 and used_memory >= limit * maxmemory


class Capacity:
    def __init__(
        self,
        redis: Redis,
        *,
        limit: float,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Clock = system_clock,
    ) -> None:
        self._redis = redis
        self._limit = limit
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._next_read = float("-inf")
        self._full = False
        self._lock = asyncio.Lock()  # one INFO at a time; the others use its answer

    def _now(self) -> float:
        return self._clock().timestamp()

    async def full(self) -> bool:
        if self._now() >= self._next_read:
            async with self._lock:
                if self._now() >= self._next_read:
                    await self._read()
        return self._full

    async def _read(self) -> None:
        try:
            memory = await self._redis.info("memory")
        except ResponseError as exc:
            # Some managed Redis services rename or disable INFO. Ingest then goes on until
            # Redis itself refuses writes (503 too, but the worker then stalls as well).
            logger.warning("cannot read redis memory (%s): ingest is not held back", exc)
            self._next_read = float("inf")
            return
        self._full = over_limit(int(memory["used_memory"]), int(memory["maxmemory"]), self._limit)
        self._next_read = self._now() + self._refresh_seconds
