"""service.storage.status: the worker's heartbeat and what /api/status reads, on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.storage import keys
from service.storage.status import StatusStore

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_a_heartbeat_is_read_back_until_it_expires(real_redis: Redis) -> None:
    status = StatusStore(real_redis)
    assert (await status.readings()).heartbeat is None
    await status.beat("2026-03-03T10:00:00Z", ttl_seconds=60)
    assert (await status.readings()).heartbeat == "2026-03-03T10:00:00Z"
    assert 0 < await real_redis.ttl(keys.WORKER_HEARTBEAT) <= 60


async def test_an_empty_redis_reads_as_nothing_stored(real_redis: Redis) -> None:
    readings = await StatusStore(real_redis).readings()
    assert (readings.stored, readings.group_exists, readings.in_progress) == (0, False, 0)
    assert (readings.last_entry, readings.last_delivered, readings.unreadable) == (None, None, 0)
    assert await StatusStore(real_redis).ping()
