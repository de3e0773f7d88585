"""The per-webhook rate limiter (rate_slot.lua) on a real Redis: slots 1/rate apart after a
burst, each taken once, shared by every client, one key per webhook that expires."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from devtools.redis_server import PrivateRedis
from service.storage import keys
from service.storage.rate_limits import RateLimits
from tests.worker.test_deliverer import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SLACK = 0.03  # seconds: the calls themselves take time


async def waits(limits: RateLimits, count: int, webhook_id: int = 1, **rate: int) -> list[float]:
    return list(
        await asyncio.gather(
            *(limits.take_slot(webhook_id, **rate) for _ in range(count))  # type: ignore[arg-type]
        )
    )


class TestRateSlot:
    async def test_slots_are_one_interval_apart_each_taken_once(self, real_redis: Redis) -> None:
        found = await waits(RateLimits(real_redis), 5, per_second=10, burst=1)
        assert found[0] == 0.0
        for n, wait in enumerate(found):
            assert n * 0.1 - SLACK <= wait <= n * 0.1 + 1e-6, found

    async def test_a_burst_goes_at_once_then_the_rate(self, real_redis: Redis) -> None:
        found = await waits(RateLimits(real_redis), 6, per_second=10, burst=3)
        assert found[:3] == [0.0, 0.0, 0.0]
        for n, wait in enumerate(found[3:], start=1):
            assert n * 0.1 - SLACK <= wait <= n * 0.1 + 1e-6, found

    async def test_a_quiet_moment_frees_slots_again(self, real_redis: Redis) -> None:
        limits = RateLimits(real_redis)
        await waits(limits, 3, per_second=20, burst=1)  # slots up to 0.1 s ahead
        await asyncio.sleep(0.2)
        assert await limits.take_slot(1, per_second=20, burst=1) == 0.0

    async def test_webhooks_do_not_share_slots(self, real_redis: Redis) -> None:
        limits = RateLimits(real_redis)
        await waits(limits, 10, webhook_id=1, per_second=1, burst=1)
        assert await limits.take_slot(2, per_second=1, burst=1) == 0.0

    async def test_every_client_takes_from_the_same_slots(
        self, real_redis: Redis, redis_server: PrivateRedis
    ) -> None:
        """Two worker processes: two clients, one limiter."""
        other = Redis.from_url(redis_server.url)
        try:
            a, b = RateLimits(real_redis), RateLimits(other)
            found = [
                await (a if n % 2 else b).take_slot(7, per_second=5, burst=1) for n in range(6)
            ]
            # Each took the next slot, 0.2 s after the one before.
            assert found[0] == 0.0
            for n, wait in enumerate(found[1:], start=1):
                assert n * 0.2 - SLACK <= wait <= n * 0.2 + 1e-6, found
        finally:
            await other.aclose()

    async def test_the_key_expires_once_its_slots_have_passed(self, real_redis: Redis) -> None:
        limits = RateLimits(real_redis)
        await waits(limits, 3, per_second=10, burst=1)
        ttl_ms = await real_redis.pttl(keys.webhook_rate(1))
        assert 0 < ttl_ms <= 300

        async def expired() -> bool:
            return not await real_redis.exists(keys.webhook_rate(1))

        await eventually(expired, timeout=1.0)

    async def test_a_lower_rate_spaces_the_next_slots_wider(self, real_redis: Redis) -> None:
        limits = RateLimits(real_redis)
        assert await limits.take_slot(1, per_second=100, burst=1) == 0.0
        first = await limits.take_slot(1, per_second=2, burst=1)  # the slot 10 ms on
        second = await limits.take_slot(1, per_second=2, burst=1)  # then 0.5 s apart
        assert first <= 0.01 + 1e-6
        assert 0.5 - SLACK <= second - first <= 0.5 + 1e-6

    async def test_the_state_keeps_microseconds(self, real_redis: Redis) -> None:
        """About 1.8e15 µs since the epoch: Lua's default number format would round it to
        the 100 µs, and 10,000 slots a second are 100 µs apart."""
        limits = RateLimits(real_redis)
        await limits.take_slot(1, per_second=3, burst=1)
        first = int(await real_redis.get(keys.webhook_rate(1)))
        await waits(limits, 9, per_second=3, burst=1)
        last = int(await real_redis.get(keys.webhook_rate(1)))
        assert abs((last - first) - 9 * 1_000_000 / 3) <= 9  # rounded to the µs at each step


class TestPartitioned:
    async def test_a_webhooks_state_is_in_its_partition(self, partitioned_redis: Redis) -> None:
        limits = RateLimits(partitioned_redis)
        assert await waits(limits, 2, webhook_id=35, per_second=10, burst=1) == [
            0.0,
            pytest.approx(0.1, abs=SLACK),
        ]
        state = keys.webhook_rate(35)
        assert state.startswith(keys.in_partition(keys.partitioning().of_webhook(35)))
        assert [name async for name in partitioned_redis.scan_iter()] == [state.encode()]
