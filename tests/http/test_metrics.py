"""GET /metrics through HTTP: real traffic in (ingest, the real worker delivering to real local
receivers), then a scrape parsed with prometheus_client's own parser and checked exactly."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from config import Config
from devtools.redis_server import PrivateRedis, free_port, wait_for_port
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.metrics import COUNTED, GAUGES, PER_ACCOUNT, UNREADABLE_EVENTS, Kind
from service.storage import keys
from tests.conftest import API_KEY, MakeClient, StartProcess
from tests.receiver import Receiver, Reply
from tests.signers import INBOUND_SECRET, generic_headers
from tests.worker.test_deliverer import (  # noqa: F401 (fixtures)
    StartEnv,
    eventually,
    receivers,
    start_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

TOKEN = "metrics-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
# Every label a sample may carry: none names a webhook, a URL or (by default) an account.
BOUNDED_LABELS = {"provider", "type", "outcome", "result", "reason", "le"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def of(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of one name, by their labels."""
    return {labels: value for (found, labels), value in samples.items() if found == name}


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


async def scrape(api: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Samples:
    response = await api.get("/metrics", headers=headers if headers is not None else BEARER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text)


class TestToken:
    async def test_without_metrics_token_anyone_may_scrape(
        self, make_client: MakeClient, make_config: Callable[..., Config], real_redis: Redis
    ) -> None:
        client = await make_client(make_config(), redis=real_redis, auth=False)
        samples = await scrape(client, {})
        assert of(samples, "mailhooks_worker_up") == {labels(): 0.0}

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {"Authorization": f"Bearer {API_KEY}"},  # an API key is not the metrics token
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN}x"},
        ],
    )
    async def test_with_metrics_token_only_it_may(
        self,
        make_client: MakeClient,
        make_config: Callable[..., Config],
        real_redis: Redis,
        headers: dict[str, str],
    ) -> None:
        client = await make_client(make_config(metrics_token=TOKEN), redis=real_redis, auth=False)
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == 'Bearer realm="mailhooks"'
        await scrape(client, BEARER)


class TestPerAccount:
    @pytest.mark.parametrize("per_account", [False, True])
    async def test_accounts_are_labels_only_with_the_flag(
        self,
        make_client: MakeClient,
        make_config: Callable[..., Config],
        real_redis: Redis,
        per_account: bool,
    ) -> None:
        config = make_config(allow_unsigned_inbound=True, metrics_per_account=per_account)
        client = await make_client(config, redis=real_redis)
        body = {"type": "email.opened", "email_id": "msg_1"}
        assert (await client.post("/api/webhooks", json=body)).status_code == 200
        found = of(await scrape(client), "mailhooks_account_inbound_events_total")
        if per_account:
            assert found == {labels(account=DEFAULT_ACCOUNT, outcome="stored"): 1.0}
        else:
            assert found == {}


class TestProbes:
    async def test_a_providers_url_check_is_a_probe_and_head_is_not_counted(
        self, make_client: MakeClient, make_config: Callable[..., Config], real_redis: Redis
    ) -> None:
        client = await make_client(make_config(allow_unsigned_inbound=True), redis=real_redis)
        form = {"content-type": "application/x-www-form-urlencoded"}
        empty_batch = b"mandrill_events=%5B%5D"  # Mandrill checking that the URL answers
        response = await client.post("/api/webhooks/mandrill", content=empty_batch, headers=form)
        assert response.status_code == 200
        assert (await client.head("/api/webhooks/mandrill")).status_code == 200
        found = of(await scrape(client), "mailhooks_inbound_requests_total")
        assert found == {labels(provider="mandrill", outcome="probe"): 1.0}


class TestAfterRealTraffic:
    async def test_every_figure_counts_what_happened(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Callable[..., Awaitable[Receiver]],  # noqa: F811
        make_client: MakeClient,
    ) -> None:
        env = await start_env(
            provider_secrets={"generic": INBOUND_SECRET},
            metrics_token=TOKEN,
            max_body_bytes=4096,
        )
        ok, flaky, gone = (
            await receivers(),
            await receivers(Reply(500), Reply()),
            await receivers(Reply(410)),
        )
        await env.webhook(ok.url, "*")
        await env.webhook(flaky.url, "bounce")
        gone_id = await env.webhook(gone.url, "click")

        async def ingest(body: dict[str, Any], status: int = 200, **headers: str) -> None:
            raw = json.dumps(body).encode()
            sent = {**generic_headers(raw), **headers}
            response = await env.api.post("/api/webhooks", content=raw, headers=sent)
            assert response.status_code == status, response.text

        opened = {"type": "email.opened", "email_id": "msg_1"}
        await ingest(opened)
        await ingest(opened)  # the provider's retry: a duplicate
        await ingest({"type": "email.bounced", "email_id": "msg_2", "bounce": {"kind": "hard"}})
        await ingest({"type": "email.clicked", "email_id": "msg_3", "click": {"url": "https://x"}})
        await ingest({"type": "email.sent", "email_id": "msg_4"})  # no canonical type: ignored
        await ingest(opened, 401, **{"x-webhook-signature": "0" * 64})
        await ingest(opened, 415, **{"content-type": "text/plain"})
        await ingest({"type": "email.opened", "email_id": "m" * 5000}, 413)

        # ok (subscribed to everything) also gets the operational event announcing the
        # webhook the 410 disabled.
        await ok.wait_for(4)
        await flaky.wait_for(2)
        await gone.wait_for(1)

        async def all_recorded() -> Samples | None:
            samples = await scrape(env.api)
            print(
                of(samples, "mailhooks_deliveries_total"),
                of(samples, "mailhooks_backlog_events"),
                of(samples, "mailhooks_inbound_events_total"),
            )
            recorded = sum(of(samples, "mailhooks_deliveries_total").values()) == 7
            idle = of(samples, "mailhooks_backlog_events") == {labels(): 0.0}
            return samples if recorded and idle else None

        samples = await eventually(all_recorded)  # the worker flushes once a second

        assert of(samples, "mailhooks_inbound_requests_total") == {
            labels(provider="generic", outcome="accepted"): 5.0,
            labels(provider="generic", outcome="invalid_signature"): 1.0,
            labels(provider="generic", outcome="unsupported_media_type"): 1.0,
            labels(provider="unknown", outcome="too_large"): 1.0,  # refused before detection
        }
        assert of(samples, "mailhooks_inbound_events_total") == {
            labels(provider="generic", type="open", outcome="stored"): 1.0,
            labels(provider="generic", type="open", outcome="duplicate"): 1.0,
            labels(provider="generic", type="bounce", outcome="stored"): 1.0,
            labels(provider="generic", type="click", outcome="stored"): 1.0,
            labels(provider="generic", type="none", outcome="ignored"): 1.0,
        }
        assert of(samples, "mailhooks_deliveries_total") == {
            labels(outcome="succeeded"): 5.0,  # ok four times, flaky's retry
            labels(outcome="failed_retrying"): 1.0,  # flaky's 500
            labels(outcome="gone"): 1.0,
        }
        assert of(samples, "mailhooks_webhooks_disabled_total") == {labels(reason="gone"): 1.0}
        attempts = of(samples, "mailhooks_delivery_attempt_duration_seconds_count")
        assert attempts == {
            labels(result="2xx"): 5.0,
            labels(result="5xx"): 1.0,
            labels(result="4xx"): 1.0,
        }
        # Cumulative buckets: the +Inf one holds every attempt.
        buckets = of(samples, "mailhooks_delivery_attempt_duration_seconds_bucket")
        assert buckets[labels(result="2xx", le="+Inf")] == 5.0
        assert buckets[labels(result="2xx", le="0.005")] <= 5.0
        latency = of(samples, "mailhooks_delivery_latency_seconds_count")
        assert latency == {labels(): 5.0}  # one per delivery's success
        latency_sum = of(samples, "mailhooks_delivery_latency_seconds_sum")[labels()]
        assert 0 < latency_sum < 30
        assert of(samples, "mailhooks_delivery_latency_seconds_bucket")[labels(le="60.0")] == 5.0

        gauges = {
            name: of(samples, name)[labels()]
            for name in (
                "mailhooks_backlog_events",
                "mailhooks_events_in_progress",
                "mailhooks_lane_events",
                "mailhooks_oldest_undelivered_seconds",
                "mailhooks_events_stored",
                "mailhooks_retries_scheduled",
                "mailhooks_retries_due",
                "mailhooks_dead_letters",
                "mailhooks_worker_up",
                "mailhooks_unreadable_events_total",
            )
        }
        assert gauges == {
            "mailhooks_backlog_events": 0.0,
            "mailhooks_events_in_progress": 0.0,
            "mailhooks_lane_events": 0.0,
            "mailhooks_oldest_undelivered_seconds": 0.0,
            "mailhooks_events_stored": 4.0,  # three ingested, one operational
            "mailhooks_retries_scheduled": 0.0,
            "mailhooks_retries_due": 0.0,
            "mailhooks_dead_letters": 0.0,
            "mailhooks_worker_up": 1.0,
            "mailhooks_unreadable_events_total": 0.0,
        }
        assert of(samples, "mailhooks_redis_memory_used_bytes")[labels()] > 0
        assert of(samples, "mailhooks_redis_memory_max_bytes") == {labels(): 0.0}

        # No label can grow with webhooks, URLs or accounts.
        used = {name for _, found in samples for name, _ in found}
        assert used <= BOUNDED_LABELS
        values = {value for _, found in samples for _, value in found}
        assert not any(gone.url in value or str(gone_id) == value for value in values)

        # Another web process over the same Redis shows the same counts (counted in Redis).
        other = await make_client(env.config, redis=env.redis, auth=False)
        again = await scrape(other)
        for name in ("mailhooks_inbound_events_total", "mailhooks_deliveries_total"):
            assert of(again, name) == of(samples, name)

    async def test_the_figures_are_redis_backed_not_per_process(
        self, make_client: MakeClient, make_config: Callable[..., Config], real_redis: Redis
    ) -> None:
        config = make_config(allow_unsigned_inbound=True)
        first = await make_client(config, redis=real_redis)
        second = await make_client(config, redis=real_redis)
        for client in (first, second, second):
            body = {"type": "email.opened", "email_id": "msg_1"}
            assert (await client.post("/api/webhooks", json=body)).status_code == 200
        # Each scrape flushes its own process's counts; the other's arrive within a second.
        await scrape(second)
        found = of(await scrape(first), "mailhooks_inbound_requests_total")
        assert found == {labels(provider="generic", outcome="accepted"): 3.0}
        assert await real_redis.hget(keys.METRICS, "inbound_requests|generic|accepted") == b"3"


class TestDocumented:
    DOCS = Path(__file__).parents[2] / "docs"

    @staticmethod
    def exposed_names() -> set[str]:
        names = set()
        for family in (*COUNTED, *PER_ACCOUNT, *GAUGES, UNREADABLE_EVENTS):
            if family.kind is Kind.COUNTER:
                names.add(family.name + "_total")
            elif family.kind is Kind.HISTOGRAM:
                names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
            else:
                names.add(family.name)
        return names

    def test_operations_lists_every_metric(self) -> None:
        text = (self.DOCS / "operations.md").read_text()
        for family in (*COUNTED, *PER_ACCOUNT, *GAUGES, UNREADABLE_EVENTS):
            shown = family.name + ("_total" if family.kind is Kind.COUNTER else "")
            assert f"`{shown}" in text, shown

    def test_the_dashboard_queries_only_metrics_that_exist(self) -> None:
        dashboard = json.loads((self.DOCS / "grafana-dashboard.json").read_text())
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        queried = {
            name
            for panel in panels
            for target in panel["targets"]
            for name in re.findall(r"\bmailhooks_\w+", target["expr"])
        }
        assert queried <= self.exposed_names()
        # Each of the brief's views is there.
        wanted = {
            "mailhooks_inbound_requests_total",
            "mailhooks_inbound_events_total",
            "mailhooks_deliveries_total",
            "mailhooks_delivery_latency_seconds_bucket",
            "mailhooks_delivery_attempt_duration_seconds_bucket",
            "mailhooks_backlog_events",
            "mailhooks_oldest_undelivered_seconds",
            "mailhooks_dead_letters",
            "mailhooks_webhooks_disabled_total",
            "mailhooks_redis_memory_used_bytes",
            "mailhooks_redis_memory_max_bytes",
        }
        assert wanted <= queried


def test_the_procfile_processes_figures_outlive_them(
    start_process: StartProcess, redis_server: PrivateRedis
) -> None:
    """Web and `python -m worker` as deployed: what they counted is in Redis, so a web process
    started after both stopped still shows it."""
    with sync_redis.Redis.from_url(redis_server.url) as admin:
        admin.flushall()
    env = {
        "REDIS_URL": redis_server.url,
        "METRICS_TOKEN": TOKEN,
        "ALLOW_UNSIGNED_INBOUND": "true",
        "ALLOW_HTTP_URLS": "true",
        "ALLOW_PRIVATE_URLS": "true",
        "RETRY_SCHEDULE": "0",  # one attempt
    }

    def start_web() -> tuple[subprocess.Popen[bytes], httpx.Client]:
        port = free_port()
        process = start_process("web", quiet=True, PORT=str(port), **env)
        wait_for_port(port, timeout=20, process=process)
        return process, httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=BEARER)

    def scraped(client: httpx.Client) -> Samples:
        response = client.get("/metrics")
        assert response.status_code == 200, response.text
        return parse(response.text)

    web, client = start_web()
    worker = start_process("worker", quiet=True, **env)
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connect_error
    hook = {"url": closed, "events": "*"}
    api = {"Authorization": f"Bearer {API_KEY}"}
    assert client.post("/api/webhooks/manage", json=hook, headers=api).status_code == 201
    event = {"type": "email.opened", "email_id": "msg_1"}
    assert client.post("/api/webhooks", json=event).status_code == 200
    deadline = time.monotonic() + 30
    while of(scraped(client), "mailhooks_deliveries_total") != {labels(outcome="failed"): 1.0}:
        assert time.monotonic() < deadline, "the worker's outcome never reached /metrics"
        time.sleep(0.2)
    for process in (worker, web):
        process.terminate()
        process.wait(timeout=25)
    client.close()

    _, client = start_web()
    samples = scraped(client)
    client.close()
    assert of(samples, "mailhooks_inbound_requests_total") == {
        labels(provider="generic", outcome="accepted"): 1.0
    }
    assert of(samples, "mailhooks_deliveries_total") == {labels(outcome="failed"): 1.0}
    attempts = of(samples, "mailhooks_delivery_attempt_duration_seconds_count")
    assert attempts == {labels(result="connect_error"): 1.0}
    assert of(samples, "mailhooks_worker_up") == {labels(): 1.0}  # its heartbeat lasts 60 s
