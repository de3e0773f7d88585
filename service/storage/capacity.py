"""Whether Redis has room for more inbound events.

Ingest stops at `INGEST_MEMORY_LIMIT` of Redis's `maxmemory`, short of full: a full Redis
refuses the worker's writes too, so it could not deliver, acknowledge and trim the events
that filled it. The rest is the worker's headroom (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import RedisError, ResponseError

from service.core.clock import Clock, system_clock
from service.storage.connection import RedisClient

logger = logging.getLogger("mailhooks")

# INFO memory is read at most this often per process: a request pays for it once a second.
REFRESH_SECONDS = 1.0
# Requests wait behind the one reading INFO: a Redis that does not answer must not hold them
# all for longer than this (their own commands then fail or succeed on their own).
READ_TIMEOUT_SECONDS = 2.0
# Errors that mean INFO is not available at all, not that this attempt failed.
_INFO_UNAVAILABLE = ("unknown command", "noperm")


async def memory(redis: RedisClient) -> tuple[int, int]:
    """(used_memory, maxmemory) from INFO memory; on a cluster, the fullest master's: ingest
    stops when any shard is full, since an account's events all go to one shard (a master
    without maxmemory counts as empty)."""
    if isinstance(redis, RedisCluster):
        by_node = await redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
        readings = [_reading(info) for info in by_node.values()]
        return max(readings, key=lambda r: r[0] / r[1] if r[1] else 0.0)
    return _reading(await redis.info("memory"))


def _reading(info: dict[str, Any]) -> tuple[int, int]:
    return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))


def over_limit(used_memory: int, maxmemory: int, limit: float) -> bool:
    """maxmemory 0 means unlimited: never over."""
    return maxmemory > 0 and used_memory >= limit * maxmemory


class Capacity:
    def __init__(
        self,
        redis: RedisClient,
        *,
        limit: float,
        refresh_seconds: float = REFRESH_SECONDS,
        read_timeout_seconds: float = READ_TIMEOUT_SECONDS,
        clock: Clock = system_clock,
    ) -> None:
        self._redis = redis
        self._limit = limit
        self._refresh_seconds = refresh_seconds
        self._read_timeout = read_timeout_seconds
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
            used, maxmemory = await asyncio.wait_for(memory(self._redis), self._read_timeout)
        except ResponseError as exc:
            if not str(exc).lower().startswith(_INFO_UNAVAILABLE):
                self._retry_later(exc)
                return
            # Some managed Redis services rename or disable INFO. Ingest then goes on until
            # Redis itself refuses writes (503 too, but the worker then stalls as well).
            logger.warning("cannot read redis memory (%s): ingest is not held back", exc)
            self._next_read = float("inf")
            return
        except (RedisError, TimeoutError) as exc:
            self._retry_later(exc)
            return
        self._full = over_limit(used, maxmemory, self._limit)
        self._next_read = self._now() + self._refresh_seconds

    def _retry_later(self, exc: Exception) -> None:
        # The last reading stands until the next try; the request's own commands meet the
        # same Redis and answer 503 store_unavailable if it is really gone.
        logger.warning("cannot read redis memory (%s): trying again", type(exc).__name__)
        self._next_read = self._now() + self._refresh_seconds
