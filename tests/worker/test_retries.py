"""The retry runner (worker/retries.py) end to end: real Redis, real local receivers, attempts
scheduled through the HTTP API or by failed attempts, and taken from the retry set by the
worker's runner or by runners built here (as several worker processes)."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from config import Config
from devtools.redis_server import PrivateRedis
from service.app import create_app
from service.core.ids import handed_off_at_ms, parse_retry_member
from service.storage import keys
from service.storage.connection import connect
from tests.conftest import API_KEY, serve
from tests.receiver import Receiver, Reply
from tests.worker.test_deliverer import (  # noqa: F401 (fixtures)
    SECRET,
    StartEnv,
    _count_status,
    eventually,
    receivers,
    start_env,
)
from worker.http import WebhookClient
from worker.retries import RetryRunner
from worker.settings import Stores, build_deliverer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

Receivers = Callable[..., Awaitable[Receiver]]


def runner_of(env: Any, n: int = 0) -> RetryRunner:
    runner: RetryRunner = env.workers[n].ctx["retry_runner"]
    return runner


async def scheduled(redis: Redis) -> dict[str, float]:
    found = await redis.zrange(keys.retries(0), 0, -1, withscores=True)
    return {member.decode(): score for member, score in found}


class TestFromTheSet:
    async def test_a_failing_endpoints_delivery_is_retried_on_time(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        env = await start_env(retry_schedule=(0.0, 1.0))
        receiver = await receivers(Reply(500), Reply(200))
        webhook_id = await env.webhook(receiver.url)
        await env.ingest()
        [first] = await receiver.wait_for(1)
        delivery_id = first.headers["webhook-id"]
        # The next attempt waits in the retry set as its lease owner, due in 1 s ±20 %.
        found = await eventually(lambda: scheduled(env.redis))
        assert list(found) == [f"{delivery_id}:a2"]
        second = (await receiver.wait_for(2))[1]
        # On time: within the schedule's jitter and the runner's poll, not seconds late.
        assert 0.8 <= second.at - first.at <= 1.2 + 0.25
        assert runner_of(env).taken == 1
        await eventually(lambda: _count_status(env, webhook_id, "succeeded", 1))
        # Done: forgotten (the runner drops it once the attempt returns, just after its
        # outcome is recorded).
        await eventually(lambda: nothing_scheduled(env.redis))

    async def test_manual_retry_and_recover_go_through_the_set(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        webhook_id = await env.webhook(receiver.url, active=False)
        for n in range(3):
            await env.ingest(email_id=f"msg_{n}")
        failed = await eventually(lambda: _count_status(env, webhook_id, "failed", 3))
        assert failed
        assert runner_of(env).taken == 0  # failed at once: nothing scheduled
        await env.api.patch(f"/api/webhooks/manage/{webhook_id}", json={"active": True})
        listed = (await env.api.get(f"/api/webhooks/manage/{webhook_id}/deliveries")).json()
        one = listed["deliveries"][0]["id"]

        retried = await env.api.post(f"/api/webhooks/manage/{webhook_id}/deliveries/{one}/retry")
        assert retried.status_code == 202
        [received] = await receiver.wait_for(1)
        assert received.headers["webhook-id"] == one
        assert runner_of(env).taken == 1

        recovered = await env.api.post(
            f"/api/webhooks/manage/{webhook_id}/recover", json={"since": "2020-01-01T00:00:00Z"}
        )
        assert recovered.json() == {"requeued": 2}
        received = await receiver.wait_for(3)
        assert {json.loads(r.body)["data"]["email_id"] for r in received} == {
            "msg_0",
            "msg_1",
            "msg_2",
        }
        assert runner_of(env).taken == 3
        await eventually(lambda: _count_status(env, webhook_id, "succeeded", 3))

    async def test_a_saturated_endpoints_retries_are_rescheduled_not_lost(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        env = await start_env(endpoint_concurrency=1, delivery_timeout=5.0)
        # The endpoint holds its one slot for 3 s with another attempt waiting: saturated.
        receiver = await receivers(Reply(delay=3.0), Reply())
        webhook_id = await env.webhook(receiver.url)
        test_path = f"/api/webhooks/manage/{webhook_id}/test"
        for _ in range(2):
            assert (await env.api.post(test_path, json={"type": "open"})).status_code == 202
        await receiver.wait_for(1)
        await asyncio.sleep(0.6)  # busy for longer than SLOW_AFTER_SECONDS
        posted_ms = time.time() * 1000
        late = [(await env.api.post(test_path, json={"type": "open"})).json() for _ in range(2)]
        owners = {f"{d['id']}:t" for d in late}

        async def put_off() -> bool:
            # Taken, found saturated, and due again a backoff later (DELIVERY_TIMEOUT x
            # 0.5-1): not hidden for a lease as an attempt under way is, nor gone.
            found = await scheduled(env.redis)
            return owners <= set(found) and all(
                posted_ms + 2400 < found[owner] < posted_ms + 5300 for owner in owners
            )

        await eventually(put_off)
        arrived = await receiver.wait_for(4, timeout=20)
        ids = collections.Counter(r.headers["webhook-id"] for r in arrived)
        assert set(ids.values()) == {1}  # each once
        assert {d["id"] for d in late} <= set(ids)
        assert receiver.max_in_flight == 1
        await eventually(lambda: _count_status(env, webhook_id, "succeeded", 4))
        assert runner_of(env).taken >= 6  # the late ones taken twice: put off, then made

    async def test_a_first_attempt_put_off_by_a_saturated_endpoint_comes_back_soon(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        # A request timeout of 10 s: until 2026-12-02 a handed-off delivery waited 5-10 s
        # whatever the endpoint's speed; now about a second (service.core.schedule).
        env = await start_env(endpoint_concurrency=1, delivery_timeout=10.0)
        receiver = await receivers(Reply(delay=1.5), Reply(), Reply())
        webhook_id = await env.webhook(receiver.url)
        await env.ingest(email_id="msg_0")  # holds the one slot for 1.5 s
        await env.ingest(email_id="msg_1")  # waits for it
        await receiver.wait_for(1)
        await asyncio.sleep(0.6)  # busy for longer than SLOW_AFTER_SECONDS: saturated
        handed_ms = time.time() * 1000
        await env.ingest(email_id="msg_2")

        async def handed_off() -> dict[str, float]:
            found = await scheduled(env.redis)
            return {
                m: at
                for m, at in found.items()
                if handed_off_at_ms(parse_retry_member(m)[1]) is not None
            }

        [(member, due_ms)] = (await eventually(handed_off)).items()
        assert handed_ms + 400 < due_ms < handed_ms + 1500  # 0.5-1 s, not 5-10 s
        arrived = await receiver.wait_for(3, timeout=8)
        assert sorted(json.loads(r.body)["data"]["email_id"] for r in arrived) == [
            "msg_0",
            "msg_1",
            "msg_2",
        ]
        await eventually(lambda: _count_status(env, webhook_id, "succeeded", 3))
        assert member not in await scheduled(env.redis)


@pytest.fixture
async def bare(
    redis_server: PrivateRedis, real_redis: Redis
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """`await bare()`: the API over real Redis with no worker, `runner(**options)` to build
    a worker process's retry runner (its own Redis client, HTTP client, deliverer), and the
    Redis client."""
    async with AsyncExitStack() as stack:
        config = Config(
            redis_url=redis_server.url,
            api_keys=(API_KEY,),
            allow_http_urls=True,
            allow_private_urls=True,
            delivery_timeout=2.0,
        )
        api = await stack.enter_async_context(
            serve(create_app(config, redis=real_redis), {"Authorization": f"Bearer {API_KEY}"})
        )

        def runner(**options: Any) -> RetryRunner:
            redis = connect(config)
            http = WebhookClient(config)
            stack.push_async_callback(redis.aclose)
            stack.push_async_callback(http.aclose)
            stores = Stores.create(redis, config)
            deliverer = build_deliverer(stores, http=http, config=config)
            made = RetryRunner(stores.retries, deliverer, partitions=[0], **options)
            stack.push_async_callback(made.stop, grace_seconds=0)
            return made

        async def start() -> tuple[httpx.AsyncClient, Callable[..., RetryRunner], Redis]:
            return api, runner, real_redis

        yield start


async def synthetic_deliveries(api: httpx.AsyncClient, url: str, count: int) -> list[str]:
    """`count` synthetic deliveries to a new webhook at `url`, each scheduled now."""
    created = await api.post(
        "/api/webhooks/manage", json={"url": url, "events": "*", "secret": SECRET}
    )
    path = f"/api/webhooks/manage/{created.json()['id']}/test"
    return [(await api.post(path, json={"type": "open"})).json()["id"] for _ in range(count)]


class TestSharing:
    async def test_two_workers_share_due_retries_attempting_each_once(
        self,
        bare: Callable[..., Awaitable[Any]],
        receivers: Receivers,  # noqa: F811
    ) -> None:
        api, runner, redis = await bare()
        receiver = await receivers(Reply(delay=0.05))
        ids = await synthetic_deliveries(api, receiver.url, 40)
        first, second = runner(visibility_ms=5000, batch=4), runner(visibility_ms=5000, batch=4)
        first.start()
        second.start()
        arrived = await receiver.wait_for(40)
        await asyncio.sleep(0.3)  # anything attempted twice would have arrived by now
        assert collections.Counter(r.headers["webhook-id"] for r in receiver.received) == {
            id_: 1 for id_ in ids
        }
        assert len(arrived) == 40
        assert first.taken > 0
        assert second.taken > 0
        assert first.taken + second.taken == 40
        await eventually(lambda: nothing_scheduled(redis))

    async def test_a_worker_cut_off_holding_due_retries_loses_none(
        self,
        bare: Callable[..., Awaitable[Any]],
        receivers: Receivers,  # noqa: F811
    ) -> None:
        api, runner, redis = await bare()
        # The first worker's requests hang; it is cut off while they are in flight.
        receiver = await receivers(*[Reply(delay=30)] * 5, Reply())
        ids = await synthetic_deliveries(api, receiver.url, 5)
        doomed = runner(visibility_ms=1000)
        doomed.start()
        await receiver.wait_for(5)
        cut_at = asyncio.get_running_loop().time()
        await doomed.stop(grace_seconds=0)  # every attempt cancelled mid-request
        survivor = runner(visibility_ms=1000)
        survivor.start()
        again = await receiver.wait_for(10, timeout=10)
        retaken = again[5:]
        assert {r.headers["webhook-id"] for r in retaken} == set(ids)
        # Hidden until the dead worker's visibility window ended, then due again.
        assert min(r.at for r in retaken) - cut_at >= 0.5
        assert survivor.taken == 5
        await eventually(lambda: nothing_scheduled(redis))


async def nothing_scheduled(redis: Redis) -> bool:
    return await redis.zcard(keys.retries(0)) == 0
