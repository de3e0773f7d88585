"""worker.limiter: the per-endpoint slots, on their own (no Redis, no network)."""

from __future__ import annotations

import asyncio

import pytest

from worker.limiter import EndpointLimiter, rate_burst

pytestmark = pytest.mark.anyio


class TestEndpointLimiter:
    """The per-endpoint slots, on their own (no Redis, no network)."""

    async def test_at_most_limit_hold_a_slot_and_free_hands_it_on(self) -> None:
        limiter = EndpointLimiter(2)
        holders = [limiter.slot(7) for _ in range(3)]
        await holders[0].__aenter__()
        await holders[1].__aenter__()
        waiting = asyncio.ensure_future(holders[2].__aenter__())
        await asyncio.sleep(0)
        assert not waiting.done()  # both slots taken
        holders[0].free()  # its request was answered: the waiter may go
        await asyncio.wait_for(waiting, 1)
        holders[0].free()  # idempotent, and so is leaving the `async with` afterwards
        await holders[0].__aexit__(None, None, None)
        await holders[1].__aexit__(None, None, None)
        await holders[2].__aexit__(None, None, None)
        # Everyone left: the endpoint is forgotten, and a new user starts afresh.
        assert limiter._users == {}
        assert limiter._semaphores == {}

    async def test_an_endpoint_busy_and_queued_for_long_is_saturated(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(EndpointLimiter, "SLOW_AFTER_SECONDS", 0.0)
        limiter = EndpointLimiter(1)
        held = limiter.slot(1)
        await held.__aenter__()
        queued = limiter.slot(1)  # counted from creation: 2 users = 2 x limit
        assert limiter.saturated(1)
        assert not limiter.saturated(2)
        held.free()  # a slot is free again: no longer saturated
        assert not limiter.saturated(1)
        queued.leave()


class TestRateBurst:
    def test_a_tenth_of_the_rate_at_least_one(self) -> None:
        assert [rate_burst(r) for r in (1, 9, 10, 19, 20, 100, 10_000)] == [
            1,
            1,
            1,
            1,
            2,
            10,
            1000,
        ]
