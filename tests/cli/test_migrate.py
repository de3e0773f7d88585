"""`mailhooks migrate` from a single Redis (one partition, the names from before partitions)
to the local three-master cluster (16 partitions), end to end: then the Procfile's web and
worker on the cluster (REDIS_CLUSTER=true) serve the migrated accounts, keys, webhooks (an
old id through its alias), email registrations and suppressions. A second run changes
nothing; a dry run writes nothing; the source is never written to."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis, RedisCluster

from config import Config
from devtools.redis_cluster import PrivateCluster
from devtools.redis_server import PrivateRedis, free_port, wait_for_port
from service.core.partitions import Partitioning
from service.core.signing import standard_webhooks_signature
from service.storage import keys
from service.storage.accounts import AccountStore
from service.storage.connection import connect
from service.storage.suppressions import SuppressionStore
from service.storage.webhooks import WebhookStore
from tests.cli.test_main import Run, mailhooks  # noqa: F401 (fixture)
from tests.conftest import StartProcess
from tests.receiver import Receiver

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

NOW = "2026-03-01T00:00:00Z"
OLD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
PARTITIONS = Partitioning(16)
ENV = {
    "ALLOW_HTTP_URLS": "true",
    "ALLOW_PRIVATE_URLS": "true",
    "ALLOW_UNSIGNED_INBOUND": "true",
}


@dataclass
class Source:
    """What the single Redis holds: two accounts' keys and webhooks (webhook ids 1, 2 of the
    first; 3, with a rotated secret and custom headers, of the second)."""

    acme: str
    globex: str
    acme_key: str
    globex_key: str


async def fill(redis: Redis, url: str) -> Source:
    accounts, webhooks = AccountStore(redis), WebhookStore(redis)
    suppressions = SuppressionStore(redis)
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    acme = (await accounts.create_new("Acme", now=now)).id
    globex = (await accounts.create_new("Globex", now=now)).id
    acme_key = (await accounts.issue_key(acme, now=now)).key
    globex_key = (await accounts.issue_key(globex, now=now)).key
    common = {"secret": OLD_SECRET, "active": True, "now": NOW, "limit": 100}
    await webhooks.create(account=acme, url=url, events=("*",), **common)  # type: ignore[arg-type]
    await webhooks.create(account=acme, url=url + "?2", events=("open",), **common)  # type: ignore[arg-type]
    rotated = await webhooks.create(
        account=globex,
        url=url,
        events=("*",),
        headers=(("X-Tenant", "globex"),),
        **common,  # type: ignore[arg-type]
    )
    await webhooks.rotate_secret(
        rotated.id,
        globex,
        secret=NEW_SECRET,
        grace_seconds=86400,
        now_ms=now_ms,
        now=NOW,
    )
    await accounts.register_emails(acme, ["msg_registered"], ttl_ms=86_400_000, now_ms=now_ms)
    await suppressions.add(acme, "gone@example.com", "manual", now=NOW)
    await suppressions.add(globex, "nope@example.com", "manual", now=NOW)
    return Source(acme, globex, acme_key, globex_key)


async def snapshot(redis: Redis | RedisCluster) -> dict[bytes, bytes]:
    """Every key's DUMP (its type and value), on every master."""
    if isinstance(redis, RedisCluster):
        names = [
            name
            async for name in redis.scan_iter(count=1000, target_nodes=RedisCluster.PRIMARIES)  # type: ignore[call-arg]
        ]
    else:
        names = [name async for name in redis.scan_iter(count=1000)]
    dumps = [await redis.dump(name) for name in names]
    return {name: dump for name, dump in zip(names, dumps, strict=True) if dump is not None}


@pytest.fixture
def source(real_redis: Redis) -> Redis:
    """The single Redis, its keys named as before partitions (this process's naming)."""
    assert keys.partitioning().count == 1
    return real_redis


@pytest.fixture
async def cluster(redis_cluster: PrivateCluster) -> AsyncIterator[RedisCluster]:
    client = connect(Config(redis_url=redis_cluster.url, redis_cluster=True))
    assert isinstance(client, RedisCluster)
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()


async def test_a_single_redis_moves_to_a_cluster(
    source: Redis,
    cluster: RedisCluster,
    redis_cluster: PrivateCluster,
    redis_server: PrivateRedis,
    mailhooks: Run,  # noqa: F811
    start_process: StartProcess,
) -> None:
    receiver = await Receiver.start()
    try:
        found = await fill(source, receiver.url)
        before = await snapshot(source)
        to = ("--to", redis_cluster.nodes[1].url, "--to-cluster")

        dry = await mailhooks("migrate", *to, "--dry-run", "--json")
        assert dry.code == 0, dry.stderr
        assert await snapshot(cluster) == {}
        first = await mailhooks("migrate", *to, "--json")
        assert first.code == 0, first.stderr
        after_first = await snapshot(cluster)
        second = await mailhooks("migrate", *to, "--json")
        assert second.code == 0, second.stderr
        # The partition count is fixed once migrated to; the source is not a target.
        other = await mailhooks("migrate", *to, "--partitions", "8")
        assert (other.code, "with 16 partitions, not 8" in other.stderr) == (1, True)
        itself = await mailhooks("migrate", "--to", redis_server.url)
        assert itself.code == 1
        assert await snapshot(source) == before  # never written to

        report = first.json()
        assert (report["accounts"], report["api_keys"], report["webhooks"]) == (2, 2, 3)
        assert (report["email_registrations"], report["suppressions"]) == (1, 2)
        assert second.json() == report  # the same ids, the same counts
        # The dry run foretold the ids the run gave.
        assert dry.json() == {**report, "dry_run": True}
        # Nothing changed but the time of the last complete run (to the second: two runs
        # within one second leave even that as it was).
        changed = {
            name
            for name, dump in (await snapshot(cluster)).items()
            if after_first.get(name) != dump
        }
        assert changed <= {keys.MIGRATION.encode()}
        renamed = {r["old_id"]: r["new_id"] for r in report["renamed"]}
        assert renamed  # acme's 1 and 2 cannot both name its partition
        for old_id, new_id in renamed.items():
            assert new_id > 3
            assert old_id % 16 != new_id % 16

        await serve_on_the_cluster(found, renamed, receiver, redis_cluster, start_process)
    finally:
        await receiver.stop()


async def serve_on_the_cluster(
    found: Source,
    renamed: dict[int, int],
    receiver: Receiver,
    redis_cluster: PrivateCluster,
    start_process: StartProcess,
) -> None:
    env = {**ENV, "REDIS_URL": redis_cluster.nodes[2].url, "REDIS_CLUSTER": "true"}
    port = free_port()
    web = start_process("web", quiet=True, PORT=str(port), **env)
    start_process("worker", quiet=True, **env)
    await asyncio.to_thread(wait_for_port, port, 30, web)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        acme = {"Authorization": f"Bearer {found.acme_key}"}
        globex = {"Authorization": f"Bearer {found.globex_key}"}
        listed = (await client.get("/api/webhooks/manage", headers=acme)).json()["webhooks"]
        acme_ids = [w["id"] for w in listed]
        assert sorted(acme_ids) == sorted(renamed.get(i, i) for i in (1, 2))
        assert {i % 16 for i in acme_ids} == {PARTITIONS.of_account(found.acme)}
        (globex_hook,) = (await client.get("/api/webhooks/manage", headers=globex)).json()[
            "webhooks"
        ]
        assert globex_hook["headers"] == {"X-Tenant": "globex"}
        # An old id answers with the webhook under its new id; another account's, 404.
        old_id = next(iter(renamed))
        owner = acme if old_id in (1, 2) else globex
        other = globex if owner is acme else acme
        shown = await client.get(f"/api/webhooks/manage/{old_id}", headers=owner)
        assert shown.status_code == 200
        assert shown.json()["id"] == renamed[old_id]
        assert (
            await client.get(f"/api/webhooks/manage/{old_id}", headers=other)
        ).status_code == 404
        suppressed = (await client.get("/api/suppressions", headers=acme)).json()
        assert [s["email"] for s in suppressed["suppressions"]] == ["gone@example.com"]

        # New events: globex's by its tag (signed with the rotated secret and the previous
        # one), acme's by the email id it registered on the single Redis.
        for body in (
            {"type": "email.opened", "email_id": "msg_tagged", "account_id": found.globex},
            {"type": "email.opened", "email_id": "msg_registered"},
        ):
            assert (await client.post("/api/webhooks", json=body)).status_code == 200
        arrived = await receiver.wait_for(3, timeout=30)  # globex's one, acme's * and open
    by_email: dict[str, list[Any]] = {}
    for request in arrived:
        by_email.setdefault(json.loads(request.body)["data"]["email_id"], []).append(request)
    (tagged,) = by_email["msg_tagged"]
    assert {k.lower(): v for k, v in tagged.headers.items()}["x-tenant"] == "globex"
    assert tagged.headers["webhook-id"].endswith(f"_{globex_hook['id']}")
    signatures = tagged.headers["webhook-signature"].split(" ")
    timestamp = int(tagged.headers["webhook-timestamp"])
    for secret in (NEW_SECRET, OLD_SECRET):
        expected = standard_webhooks_signature(
            secret, tagged.headers["webhook-id"], timestamp, tagged.body
        )
        assert expected in signatures
    assert len(by_email["msg_registered"]) == 2
