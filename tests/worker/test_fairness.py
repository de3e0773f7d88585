"""Fair delivery across accounts, end to end in process: real Redis, the real worker, real
receivers, two accounts through the HTTP API. One account's backlog to a slow endpoint waits
in its lane (service.storage.lanes) while the other account's events go straight through;
then the backlog arrives whole, each event once, and the lane is gone."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import pytest

from service.storage import keys
from tests.receiver import Receiver, Reply
from tests.worker.test_deliverer import (  # noqa: F401 (fixtures)
    StartEnv,
    eventually,
    receivers,
    start_env,
)
from tests.worker.test_operational import ADMIN, ingest, new_account, webhook
from worker import consumer as consumer_module

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

Receivers = Callable[..., Awaitable[Receiver]]
BACKLOG = 400
WINDOW = 20


def email_ids(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["data"]["email_id"] for r in receiver.received]


async def test_a_backlog_waits_in_its_lane_while_another_account_goes_through(
    start_env: StartEnv,  # noqa: F811
    receivers: Receivers,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Events slower than 20 ms narrow their account's window (1 s in production: the slow
    # endpoint here answers in 50 ms, and queues 2 deep behind its 10 slots).
    monkeypatch.setattr(consumer_module, "SLOW_EVENT_SECONDS", 0.02)
    env = await start_env(admin_api_keys=(ADMIN,), account_concurrency=WINDOW)
    slow = await receivers(Reply(delay=0.05))
    fast = await receivers()
    busy, busy_key = await new_account(env.api, "Busy")
    calm, calm_key = await new_account(env.api, "Calm")
    await webhook(env.api, busy_key, slow.url, "*")
    await webhook(env.api, calm_key, fast.url, "*")

    lane_seen = asyncio.create_task(eventually(lambda: env.redis.exists(keys.lane(busy))))
    for first in range(0, BACKLOG, 50):
        await asyncio.gather(
            *(ingest(env.api, f"busy_{n}", busy) for n in range(first, first + 50))
        )
    # More than the worker keeps in memory: the rest waits in the account's lane.
    assert await lane_seen

    sent = time.monotonic()
    for n in range(5):
        await ingest(env.api, f"calm_{n}", calm)
    await fast.wait_for(5, timeout=5)
    calm_latency = time.monotonic() - sent
    # The calm account's events did not queue behind the backlog (which needs 2 s at 10 in
    # flight and 50 ms each): they arrived while it was still being delivered.
    assert len(slow.received) < BACKLOG - 100
    assert calm_latency < 1.5
    assert sorted(email_ids(fast)) == [f"calm_{n}" for n in range(5)]

    await slow.wait_for(BACKLOG, timeout=30)
    assert sorted(email_ids(slow)) == sorted(f"busy_{n}" for n in range(BACKLOG))  # each once
    assert slow.max_in_flight <= WINDOW  # the account's window held
    # The lane is deleted once empty, and nothing is left pending anywhere.
    assert await eventually(lambda: _gone(env.redis, busy))
    [group] = await env.redis.xinfo_groups(keys.EVENTS_STREAM)
    assert (group["lag"], group["pending"]) == (0, 0)


async def _gone(redis: object, account: str) -> bool:
    exists = await redis.exists(keys.lane(account))  # type: ignore[attr-defined]
    listed = await redis.zcard(keys.lanes(0))  # type: ignore[attr-defined]
    return not exists and not listed
