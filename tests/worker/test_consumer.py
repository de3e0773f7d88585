"""The worker process (the Procfile's line) against crashes: SIGKILL mid-batch and a Redis
restart. Every (event, webhook) pair must be delivered; duplicates are allowed (at least once)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from config import Config
from devtools.redis_server import PrivateRedis
from service.app import create_app
from service.core.accounts import DEFAULT_ACCOUNT
from service.storage import keys
from service.storage.connection import connect
from tests.conftest import API_KEY, StartProcess, serve
from tests.receiver import Receiver, Reply
from tests.worker.test_deliverer import eventually
from worker.consumer import Consumer
from worker.http import WebhookClient
from worker.settings import Stores, build_deliverer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

OUTAGE_SECONDS = 8.0
WORKER_ENV = {
    "API_KEYS": API_KEY,
    "ALLOW_HTTP_URLS": "true",
    "ALLOW_PRIVATE_URLS": "true",
    "DELIVERY_TIMEOUT": "1",
    "RETRY_SCHEDULE": "0,0.2,0.4",
    "DELIVERY_CONCURRENCY": "20",  # below 5 endpoints x ENDPOINT_CONCURRENCY 10
}


@pytest.fixture
def start_worker(
    durable_redis: PrivateRedis, start_process: StartProcess
) -> Callable[..., subprocess.Popen[bytes]]:
    def start(**env: str) -> subprocess.Popen[bytes]:
        settings = {**WORKER_ENV, **env}
        return start_process("worker", quiet=True, **settings, REDIS_URL=durable_redis.url)

    return start


@pytest.fixture
async def api(durable_redis: PrivateRedis) -> AsyncIterator[httpx.AsyncClient]:
    config = Config(
        redis_url=durable_redis.url,
        api_keys=(API_KEY,),
        allow_http_urls=True,
        allow_private_urls=True,
        allow_unsigned_inbound=True,
    )
    async with AsyncExitStack() as stack:
        redis = connect(config)  # the web process's own client, reconnecting and retrying
        stack.push_async_callback(redis.aclose)
        app = create_app(config, redis=redis)
        yield await stack.enter_async_context(serve(app, {"Authorization": f"Bearer {API_KEY}"}))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver.start([Reply(delay=0.02)])
    yield receiver
    await receiver.stop()


async def subscribe(api: httpx.AsyncClient, url: str, count: int) -> None:
    for _ in range(count):
        body = {"url": url, "events": "*", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
        assert (await api.post("/api/webhooks/manage", json=body)).status_code == 201


async def ingest(api: httpx.AsyncClient, first: int, count: int) -> None:
    for n in range(first, first + count):
        body = {"type": "email.opened", "email_id": f"msg_{n}"}
        assert (await api.post("/api/webhooks", json=body)).status_code == 200


def pairs(receiver: Receiver) -> set[tuple[str, str]]:
    """(email id, webhook id) of everything received."""
    found = set()
    for request in receiver.received:
        webhook = request.headers["webhook-id"].rsplit("_", 1)[1]
        found.add((json.loads(request.body)["data"]["email_id"], webhook))
    return found


async def all_pairs(receiver: Receiver, expected: set[tuple[str, str]], timeout: float) -> None:
    async def complete() -> None:
        while not expected <= pairs(receiver):
            await receiver.wait_for(len(receiver.received) + 1, timeout=timeout)

    await asyncio.wait_for(complete(), timeout)


async def test_sigkill_mid_batch_loses_nothing(
    api: httpx.AsyncClient,
    receiver: Receiver,
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    webhooks, events = 5, 100
    await subscribe(api, receiver.url, webhooks)
    await ingest(api, 0, events)
    worker = start_worker()
    await receiver.wait_for(100, timeout=30)  # mid-batch: 100 of 500 deliveries done
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    delivered_before_kill = len(pairs(receiver))
    assert delivered_before_kill < webhooks * events

    start_worker()  # reclaims what the dead one left pending
    expected = {(f"msg_{n}", str(w)) for n in range(events) for w in range(1, webhooks + 1)}
    await all_pairs(receiver, expected, timeout=60)
    assert pairs(receiver) == expected
    duplicates = len(receiver.received) - len(expected)
    # At most what was sent but not yet recorded at the kill: DELIVERY_CONCURRENCY.
    assert duplicates <= 20


async def test_a_kill_behind_a_backlog_sends_no_more_twice_than_were_in_flight(
    api: httpx.AsyncClient,
    receiver: Receiver,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """With retention keeping only 10 finished deliveries per webhook, the records that say
    "delivered" of entries a killed worker had not acknowledged must still be there when
    another worker reclaims them, or each is sent again (1,817 twice in one soak)."""
    events = 300
    # A slower endpoint holds each entry's acknowledgement back, while the fast one's
    # deliveries of the same entries are done and, past the newest 10, due for pruning.
    slow = await Receiver.start([Reply(delay=0.05)])
    try:
        await subscribe(api, receiver.url, 1)
        await subscribe(api, slow.url, 1)
        await ingest(api, 0, events)
        env = {"DELIVERY_RETENTION_COUNT": "10", "ENDPOINT_CONCURRENCY": "2"}
        worker = start_worker(**env)
        await receiver.wait_for(events, timeout=30)  # the fast endpoint has everything
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        assert len(slow.received) < events  # the kill left entries unacknowledged
        start_worker(**env)
        await slow.wait_for(events, timeout=90)
        fast_twice = len(receiver.received) - events
        slow_twice = len(slow.received) - len({r.body for r in slow.received})
        # DELIVERY_CONCURRENCY (20): sent and not yet recorded at the kill, at most.
        assert fast_twice + slow_twice <= 20
    finally:
        await slow.stop()


async def test_sigkill_with_a_lane_loses_nothing(
    api: httpx.AsyncClient,
    receiver: Receiver,
    durable_redis: PrivateRedis,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """A worker killed while its account's backlog waits in the account's lane (read by it,
    unfinished): another worker reclaims the lane entries it held and finishes the lane."""
    events = 300
    # Over its rate limit, the account's events are handed on: its window narrows, and
    # beyond the 200 events a worker then holds, the rest go to its lane.
    body = {"url": receiver.url, "events": "*", "rate_limit": 100}
    assert (await api.post("/api/webhooks/manage", json=body)).status_code == 201
    await ingest(api, 0, events)
    worker = start_worker(ACCOUNT_CONCURRENCY="40")
    redis = Redis.from_url(durable_redis.url)
    lane = keys.lane(DEFAULT_ACCOUNT)
    try:
        assert await eventually(lambda: redis.exists(lane), timeout=30)
        await receiver.wait_for(20, timeout=30)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        assert len(pairs(receiver)) < events
        start_worker(ACCOUNT_CONCURRENCY="40")
        await all_pairs(receiver, {(f"msg_{n}", "1") for n in range(events)}, timeout=90)
        # At most what was in flight at the kill was sent twice (DELIVERY_CONCURRENCY).
        assert len(receiver.received) - events <= 20
        assert await eventually(lambda: _lane_gone(redis, lane), timeout=30)
    finally:
        await redis.aclose()


async def _lane_gone(redis: Redis, lane: str) -> bool:
    return not await redis.exists(lane)


async def test_redis_restart_is_survived_without_restarting_the_worker(
    api: httpx.AsyncClient,
    receiver: Receiver,
    durable_redis: PrivateRedis,
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    await subscribe(api, receiver.url, 2)
    worker = start_worker()
    await ingest(api, 0, 20)
    await all_pairs(receiver, {(f"msg_{n}", w) for n in range(20) for w in "12"}, timeout=30)

    durable_redis.restart()
    await ingest(api, 20, 20)
    expected = {(f"msg_{n}", w) for n in range(40) for w in "12"}
    await all_pairs(receiver, expected, timeout=60)
    assert worker.poll() is None  # the same worker process, still running

    # A longer outage: Redis stays down well past a command's retries (the outage's length
    # is the scenario, not a wait for something to happen).
    durable_redis.stop()
    await asyncio.sleep(OUTAGE_SECONDS)
    durable_redis.start()
    await ingest(api, 40, 20)
    expected |= {(f"msg_{n}", w) for n in range(40, 60) for w in "12"}
    await all_pairs(receiver, expected, timeout=60)
    assert worker.poll() is None


async def test_sigterm_finishes_in_flight_work_and_loses_nothing(
    api: httpx.AsyncClient,
    durable_redis: PrivateRedis,
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    slow = await Receiver.start([Reply(delay=0.5)])
    try:
        await subscribe(api, slow.url, 1)
        await ingest(api, 0, 30)
        worker = start_worker()
        await slow.wait_for(1, timeout=30)
        worker.send_signal(signal.SIGTERM)  # as Heroku does, 30 s before SIGKILL
        assert worker.wait(timeout=25) == 0
        start_worker()
        expected = {(f"msg_{n}", "1") for n in range(30)}
        await all_pairs(slow, expected, timeout=60)
    finally:
        await slow.stop()


async def test_two_workers_share_the_work_without_doubling_it(
    api: httpx.AsyncClient,
    receiver: Receiver,
    durable_redis: PrivateRedis,
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    await subscribe(api, receiver.url, 2)
    start_worker()
    start_worker()
    redis = Redis.from_url(durable_redis.url)

    async def consumers() -> int:
        # A consumer joins the group when a read first hands it entries.
        try:
            return len(await redis.xinfo_consumers(keys.EVENTS_STREAM, keys.DELIVERY_GROUP))
        except ResponseError:  # no stream or group before the first worker creates them
            return 0

    sent = 0
    while await consumers() < 2:  # keep events coming until both workers have taken some
        assert sent < 2000, "the second worker never took any work"
        await ingest(api, sent, 10)
        sent += 10
    await redis.aclose()
    expected = {(f"msg_{n}", w) for n in range(sent) for w in "12"}
    await all_pairs(receiver, expected, timeout=60)
    assert len(receiver.received) == len(expected)  # nothing crashed, so nothing twice


async def test_a_backlog_beyond_the_in_flight_cap_is_delivered_whole(
    api: httpx.AsyncClient, durable_redis: PrivateRedis, receiver: Receiver
) -> None:
    """Backpressure: with at most 3 entries at work, a 30-event backlog still arrives, every
    event once, and never more than 3 requests at a time."""
    config = Config(
        redis_url=durable_redis.url,
        allow_http_urls=True,
        allow_private_urls=True,
        endpoint_concurrency=10,
    )
    await subscribe(api, receiver.url, 1)
    await ingest(api, 0, 30)
    redis = connect(config)
    http = WebhookClient(config)
    stores = Stores.create(redis, config)
    deliverer = build_deliverer(stores, http=http, config=config)
    await stores.stream.ensure_group()
    consumer = Consumer(
        stores.stream,
        deliverer,
        name="capped",
        reclaim_idle_ms=60_000,
        max_entries_in_flight=3,
    )
    running = asyncio.create_task(consumer.run())
    try:
        arrived = await receiver.wait_for(30)
        assert sorted(json.loads(r.body)["data"]["email_id"] for r in arrived) == sorted(
            f"msg_{n}" for n in range(30)
        )
        assert receiver.max_in_flight == 3
    finally:
        await consumer.stop(grace_seconds=5)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await http.aclose()
        await redis.aclose()
    assert await redis_pending(durable_redis) == 0


async def redis_pending(server: PrivateRedis) -> int:
    client = Redis.from_url(server.url)
    summary = await client.xpending(keys.EVENTS_STREAM, keys.DELIVERY_GROUP)
    await client.aclose()
    return int(summary["pending"])
