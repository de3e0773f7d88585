"""Per-endpoint rate limits end to end: real Redis, two workers in process (as two worker
dynos: each its own consumer and retry runner, one limiter in Redis between them), real local
receivers; webhooks and events through the HTTP API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

import pytest

from tests.receiver import Receiver, Reply
from tests.worker.test_deliverer import (  # noqa: F401 (fixtures)
    Env,
    StartEnv,
    eventually,
    receivers,
    start_env,
)
from worker.limiter import rate_burst

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

Receivers = Callable[..., Awaitable[Receiver]]


def rate(receiver: Receiver, per_second: int) -> float:
    """Deliveries per second from the first arrival to the last, not counting the burst
    allowed at once after a quiet moment (arriving together with the first), nor one more:
    the limiter spaces the slots, and an arrival comes its delivery's time after its slot,
    which a loaded machine stretches for the first one by up to a slot (a make test run at
    load 2.7 measured 11.4/s over 20 arrivals against a limit of 10/s, 10.8/s so)."""
    times = sorted(r.at for r in receiver.received)
    return (len(times) - rate_burst(per_second) - 1) / (times[-1] - times[0])


def busiest_second(receiver: Receiver) -> int:
    times = sorted(r.at for r in receiver.received)
    return max(sum(1 for t in times if start <= t < start + 1) for start in times)


async def ingest(env: Env, count: int, offset: int = 0) -> None:
    await asyncio.gather(*(env.ingest(email_id=f"msg_{offset + n}") for n in range(count)))


async def all_succeeded_once(env: Env, webhook_id: int, count: int) -> None:
    deliveries = await env.deliveries(webhook_id, limit="1000")
    assert len(deliveries) == count
    assert {(d["status"], d["attempts"]) for d in deliveries} == {("succeeded", 1)}


class TestRateLimit:
    async def test_two_workers_together_keep_the_rate_and_others_go_full_speed(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        per_second, events = 20, 60
        # DISABLE_AFTER 0: any failed attempt would disable the webhook at once.
        env = await start_env(workers=2, disable_after_seconds=0)
        limited, free = await receivers(), await receivers()
        limited_id = await env.webhook(limited.url, rate_limit=per_second)
        free_id = await env.webhook(free.url)
        started = asyncio.get_running_loop().time()
        await ingest(env, events)
        await free.wait_for(events, timeout=10)
        free_took = asyncio.get_running_loop().time() - started
        await limited.wait_for(events, timeout=events / per_second * 4 + 10)
        limited_took = asyncio.get_running_loop().time() - started

        # At most its rate (±10 %), across both workers: neither took slots of its own.
        assert rate(limited, per_second) <= per_second * 1.1
        # The busiest second of arrivals: more than the limiter allows may show, as an
        # attempt taken from the retry set up to a poll late (50 ms, more on a busy machine)
        # lands in the next second with the next slot's: a CI run saw 25 against 24, a make
        # test at load 2.9 saw 27. A quarter second's worth is allowed; no limit gives 60.
        allowed = per_second * 1.1 + rate_burst(per_second) + per_second // 4
        assert busiest_second(limited) <= allowed
        assert rate(limited, per_second) >= per_second * 0.5  # and it does get them
        # Both sent waiting ones (taken from the retry set, where they waited for their slot).
        assert all(w.ctx["retry_runner"].taken > 0 for w in env.workers)
        # The other endpoint was not held back by the limited one's wait.
        assert free_took < limited_took / 2, (free_took, limited_took)
        # Waiting is no failure: one attempt each, succeeded; the webhook is still active.
        await all_succeeded_once(env, limited_id, events)
        await all_succeeded_once(env, free_id, events)
        webhook = (await env.api.get(f"/api/webhooks/manage/{limited_id}")).json()
        assert webhook["active"] is True
        assert "disabled_reason" not in webhook

    async def test_retries_take_slots_too(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        per_second, events = 10, 10
        env = await start_env(workers=2, retry_schedule=(0.0, 0.2, 0.4))
        # Every event fails once, then succeeds: 20 attempts, each through the limiter.
        receiver = await receivers(*[Reply(500)] * events, Reply(200))
        webhook_id = await env.webhook(receiver.url, rate_limit=per_second)
        await ingest(env, events)
        await receiver.wait_for(2 * events, timeout=2 * events / per_second * 4 + 10)
        assert rate(receiver, per_second) <= per_second * 1.1

        async def done() -> list[dict[str, object]]:
            found = await env.deliveries(webhook_id, status="succeeded", limit="1000")
            return found if len(found) == events else []

        succeeded = await eventually(done)
        # 20 attempts in all, every one through the limiter. Not two each: the receiver
        # fails the first ten requests it gets, and on a loaded machine a retry can reach it
        # before another event's first attempt (a make test saw attempts of 1, 2 and 3).
        assert sum(cast(int, d["attempts"]) for d in succeeded) == 2 * events

    async def test_a_limit_set_later_applies_and_cleared_goes_full_speed(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        webhook_id = await env.webhook(receiver.url)
        patched = await env.api.patch(f"/api/webhooks/manage/{webhook_id}", json={"rate_limit": 5})
        assert patched.json()["rate_limit"] == 5
        await ingest(env, 10)
        await receiver.wait_for(10, timeout=15)
        assert rate(receiver, 5) <= 5 * 1.1
        await env.api.patch(f"/api/webhooks/manage/{webhook_id}", json={"rate_limit": None})
        receiver.received.clear()
        await ingest(env, 30, offset=10)
        await receiver.wait_for(30, timeout=10)
        times = sorted(r.at for r in receiver.received)
        assert times[-1] - times[0] < 30 / 5 / 2  # far faster than 5 a second
