"""The Procfile's web and worker processes under faults, on one Redis and on a three-master
Redis Cluster (REDIS_CLUSTER=true, 16 partitions): a worker SIGKILLed mid-batch, a worker
dying while another runs (its share taken over within the claim window), Redis restarts,
and 20 % of the endpoints failing. Every (event, webhook) pair arrives; only a crash may send
a pair twice (at least once), at most what was in flight; without one, nothing twice."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from config import Config
from devtools.redis_cluster import PrivateCluster
from devtools.redis_server import PrivateRedis, free_port, wait_for_port
from service.storage.connection import connect
from tests.conftest import API_KEY, StartProcess
from tests.receiver import Receiver, Reply

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {
    "API_KEYS": API_KEY,
    "ALLOW_HTTP_URLS": "true",
    "ALLOW_PRIVATE_URLS": "true",
    "ALLOW_UNSIGNED_INBOUND": "true",
    "DELIVERY_TIMEOUT": "1",
    "RETRY_SCHEDULE": "0,0.2,0.4",
    "DELIVERY_CONCURRENCY": "20",
}
# What one crash may send twice: the attempts in flight (DELIVERY_CONCURRENCY).
IN_FLIGHT = 20


@dataclass
class Deployment:
    """One Redis or a cluster, with the Procfile's processes started on it."""

    kind: str
    env: dict[str, str]
    restart_redis: Callable[[], None]
    start_process: StartProcess
    web: httpx.AsyncClient | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def start_web(self) -> httpx.AsyncClient:
        port = free_port()
        process = self.start_process("web", quiet=True, **self.env, PORT=str(port))
        await asyncio.to_thread(wait_for_port, port, 30, process)
        self.web = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
            # Under uvicorn's 5 s keep-alive: never reuse a connection it is closing.
            limits=httpx.Limits(keepalive_expiry=2),
        )
        return self.web

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self.start_process("worker", quiet=True, **self.env)
        self.workers.append(worker)
        return worker


@pytest.fixture(params=["single", "cluster"])
async def deployment(
    request: pytest.FixtureRequest, start_process: StartProcess
) -> AsyncIterator[Deployment]:
    if request.param == "single":
        server: PrivateRedis = request.getfixturevalue("durable_redis")
        found = Deployment(
            "single", {**ENV, "REDIS_URL": server.url}, server.restart, start_process
        )
        yield found
    else:
        cluster: PrivateCluster = request.getfixturevalue("redis_cluster")
        client = connect(Config(redis_url=cluster.url, redis_cluster=True))
        await client.flushall(target_nodes="primaries")
        await client.aclose()

        def restart_every_master() -> None:
            for node in cluster.nodes:
                cluster.restart(node)

        env = {**ENV, "REDIS_URL": cluster.nodes[1].url, "REDIS_CLUSTER": "true"}
        found = Deployment("cluster", env, restart_every_master, start_process)
        yield found
    if found.web is not None:
        await found.web.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver.start([Reply(delay=0.01)])
    yield receiver
    await receiver.stop()


async def subscribe(web: httpx.AsyncClient, url: str, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        body = {"url": url, "events": "*", "secret": SECRET}
        response = await web.post("/api/webhooks/manage", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def ingest(web: httpx.AsyncClient, first: int, count: int) -> None:
    for start in range(first, first + count, 20):
        chunk = range(start, min(start + 20, first + count))
        replies = await asyncio.gather(
            *(
                web.post("/api/webhooks", json={"type": "email.opened", "email_id": f"msg_{n}"})
                for n in chunk
            )
        )
        assert [r.status_code for r in replies] == [200] * len(replies), replies[0].text


def pairs(receiver: Receiver) -> list[tuple[str, int]]:
    """(email id, webhook id) of every email event received, repeats included (not the
    operational events a `*` webhook also gets: delivery.exhausted of the failing ones)."""
    found = []
    for request in receiver.received:
        payload = json.loads(request.body)
        if payload["type"].startswith("email."):
            webhook_id = int(request.headers["webhook-id"].rsplit("_", 1)[1])
            found.append((payload["data"]["email_id"], webhook_id))
    return found


async def all_arrived(
    receiver: Receiver, expected: set[tuple[str, int]], timeout: float = 90
) -> None:
    async def complete() -> None:
        while not expected <= set(pairs(receiver)):
            await receiver.wait_for(len(receiver.received) + 1, timeout=timeout)

    await asyncio.wait_for(complete(), timeout)


async def test_sigkill_mid_batch_loses_nothing(deployment: Deployment, receiver: Receiver) -> None:
    web = await deployment.start_web()
    webhooks = await subscribe(web, receiver.url, 5)
    await ingest(web, 0, 100)
    worker = deployment.start_worker()
    await receiver.wait_for(100, timeout=60)  # mid-batch: 100 of 500 deliveries done
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert len(set(pairs(receiver))) < 500

    deployment.start_worker()  # reclaims what the dead one left pending
    expected = {(f"msg_{n}", w) for n in range(100) for w in webhooks}
    await all_arrived(receiver, expected)
    assert set(pairs(receiver)) == expected
    assert len(receiver.received) - len(expected) <= IN_FLIGHT


async def test_a_dead_workers_share_is_taken_over_by_the_other(
    deployment: Deployment, receiver: Receiver
) -> None:
    """Two workers share the partitions; one dies holding entries; the other finishes them
    after the claim window (twice the lease: 6 s here), with no coordinator but Redis."""
    web = await deployment.start_web()
    webhooks = await subscribe(web, receiver.url, 2)
    first, _ = deployment.start_worker(), deployment.start_worker()
    await ingest(web, 0, 200)
    await receiver.wait_for(50, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    expected = {(f"msg_{n}", w) for n in range(200) for w in webhooks}
    await all_arrived(receiver, expected)
    assert len(receiver.received) - len(expected) <= IN_FLIGHT


async def test_redis_restarts_are_survived_without_restarting_a_process(
    deployment: Deployment, receiver: Receiver
) -> None:
    web = await deployment.start_web()
    webhooks = await subscribe(web, receiver.url, 2)
    worker = deployment.start_worker()
    await ingest(web, 0, 20)
    await all_arrived(receiver, {(f"msg_{n}", w) for n in range(20) for w in webhooks})

    await asyncio.to_thread(deployment.restart_redis)
    await ingest(web, 20, 20)
    expected = {(f"msg_{n}", w) for n in range(40) for w in webhooks}
    await all_arrived(receiver, expected)
    assert worker.poll() is None  # the same worker process, still running
    # No crash of ours: a restart with AOF on loses nothing acknowledged and sends nothing
    # twice beyond what was in flight when Redis went away.
    assert len(receiver.received) - len(expected) <= IN_FLIGHT


async def test_failing_endpoints_cost_the_others_nothing_and_double_nothing(
    deployment: Deployment, receiver: Receiver
) -> None:
    """2 of 10 endpoints (20 %) answer 500: each of their deliveries is tried the schedule's
    3 times and recorded failed; the 8 healthy ones get every event exactly once."""
    failing = await Receiver.start([Reply(status=500)])
    try:
        web = await deployment.start_web()
        healthy_ids = await subscribe(web, receiver.url, 8)
        failing_ids = await subscribe(web, failing.url, 2)
        deployment.start_worker()
        await ingest(web, 0, 50)
        expected = {(f"msg_{n}", w) for n in range(50) for w in healthy_ids}
        await all_arrived(receiver, expected)
        # Their requests include the delivery.exhausted events of the other failing one.
        while len(pairs(failing)) < 50 * 2 * 3:
            await failing.wait_for(len(failing.received) + 1, timeout=90)
        assert sorted(pairs(receiver)) == sorted(expected)  # each exactly once
        attempts = pairs(failing)
        assert sorted(set(attempts)) == sorted(
            (f"msg_{n}", w) for n in range(50) for w in failing_ids
        )
        assert len(attempts) == 50 * 2 * 3
        for webhook_id in failing_ids:
            path = f"/api/webhooks/manage/{webhook_id}/deliveries"
            await _eventually_all_failed(web, path)
    finally:
        await failing.stop()


async def _eventually_all_failed(web: httpx.AsyncClient, path: str) -> None:
    """The webhook's 50 email deliveries are all recorded failed (it also has deliveries of
    the other failing webhook's delivery.exhausted events)."""
    statuses: list[str] = []
    for _ in range(200):
        listed = (await web.get(path, params={"limit": "200"})).json()["deliveries"]
        statuses = [d["status"] for d in listed if d["type"].startswith("email.")]
        if len(statuses) == 50 and set(statuses) == {"failed"}:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not all failed: {sorted(set(statuses))}, {len(statuses)} of 50")


async def test_a_backlog_through_the_accounts_lane_arrives_whole(
    deployment: Deployment, receiver: Receiver
) -> None:
    """Over its webhook's rate limit the account's events are handed on and its window
    narrows; beyond the 200 a worker then holds, its events go to its lane and come back
    from it (on a cluster, in the account's partition's slot), each delivered once."""
    deployment.env["ACCOUNT_CONCURRENCY"] = "40"
    web = await deployment.start_web()
    body = {"url": receiver.url, "events": "*", "secret": SECRET, "rate_limit": 200}
    response = await web.post("/api/webhooks/manage", json=body)
    webhook = response.json()["id"]
    await ingest(web, 0, 600)
    deployment.start_worker()
    for _ in range(600):  # the lane is seen while the backlog drains
        if (await web.get("/api/status")).json()["events"]["in_lanes"]:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("no event went through a lane")
    expected = {(f"msg_{n}", webhook) for n in range(600)}
    await all_arrived(receiver, expected)
    assert sorted(pairs(receiver)) == sorted(expected)  # each once
    status = (await web.get("/api/status")).json()
    assert status["events"]["in_lanes"] == 0
