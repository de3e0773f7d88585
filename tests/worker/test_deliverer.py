"""Delivery end to end, in process: real Redis, the real worker (arq's, with WorkerSettings:
the consumer and the retry runner), real local HTTP receivers. Ingest goes through the HTTP
API; what receivers got is asserted."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import standardwebhooks
from arq.worker import Worker, get_kwargs
from redis.asyncio import Redis

import worker.settings
from config import Config
from devtools.redis_server import PrivateRedis
from service.app import create_app
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.signing import standard_webhooks_key
from service.storage import keys
from service.storage.deliveries import DeliveryStore, StoredDelivery
from service.storage.events import EventStore
from service.storage.webhooks import WebhookStore
from tests import FIXTURES
from tests.conftest import API_KEY, serve
from tests.receiver import Received, Receiver, Reply
from tests.storage.test_events import event
from worker.__main__ import GracefulWorker
from worker.settings import WorkerSettings, redis_settings

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VERIFY_WEBHOOK_TS = FIXTURES / "verifyWebhook.ts"


@dataclass
class Env:
    api: httpx.AsyncClient
    redis: Redis
    config: Config
    worker: Worker
    workers: list[Worker] = field(default_factory=list)  # start_env(workers=n): all n

    async def webhook(self, url: str, events: str = "*", **fields: Any) -> int:
        body = {"url": url, "events": events, "secret": SECRET, **fields}
        response = await self.api.post("/api/webhooks/manage", json=body)
        assert response.status_code == 201, response.text
        webhook_id: int = response.json()["id"]
        return webhook_id

    async def ingest(
        self, type_: str = "email.opened", email_id: str = "msg_1", **extra: Any
    ) -> None:
        body = {"type": type_, "email_id": email_id, "recipient": "to@example.com", **extra}
        response = await self.api.post("/api/webhooks", json=body)
        assert response.json() == {"received": True}

    async def deliveries(self, webhook_id: int, **params: str) -> list[dict[str, Any]]:
        response = await self.api.get(
            f"/api/webhooks/manage/{webhook_id}/deliveries", params=params
        )
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["deliveries"]
        return found

    async def delivery_by_id(self, delivery_id: str) -> StoredDelivery:
        # The webhook is gone, so its API routes are too: read the record itself.
        found = await DeliveryStore(self.redis).get(delivery_id)
        assert found is not None
        return found

    async def delivery(self, webhook_id: int, delivery_id: str) -> dict[str, Any]:
        path = f"/api/webhooks/manage/{webhook_id}/deliveries/{delivery_id}"
        found: dict[str, Any] = (await self.api.get(path)).json()
        return found


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Await a state change: poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(0.02)


StartEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start_env(
    redis_server: PrivateRedis, real_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StartEnv]:
    # Workers in one process would share the consumer name (host and pid): number them.
    numbers = itertools.count()
    monkeypatch.setattr(worker.settings, "consumer_name", lambda: f"worker-{next(numbers)}")
    async with AsyncExitStack() as stack:

        async def start(*, workers: int = 1, **overrides: Any) -> Env:
            settings: dict[str, Any] = {
                "redis_url": redis_server.url,
                "api_keys": (API_KEY,),
                "allow_http_urls": True,
                "allow_private_urls": True,
                "allow_unsigned_inbound": True,
                "retry_schedule": (0.0, 0.2, 0.4),
                "delivery_timeout": 2.0,
            }
            settings.update(overrides)
            config = Config(**settings)
            app = create_app(config, redis=real_redis)
            api = await stack.enter_async_context(
                serve(app, {"Authorization": f"Bearer {API_KEY}"})
            )
            started = [await start_worker(config) for _ in range(workers)]
            return Env(api, real_redis, config, started[0], started)

        async def start_worker(config: Config) -> Worker:
            """One worker process's arq Worker (consumer, retry runner, maintenance), in this
            process."""
            settings: dict[str, Any] = {
                **get_kwargs(WorkerSettings),  # type: ignore[arg-type]
                "redis_settings": redis_settings(config),
                "ctx": {"config": config},
                "handle_signals": False,
                "poll_delay": 0.05,
            }
            worker = GracefulWorker(**settings)  # the worker process's own Worker
            task = asyncio.create_task(worker.async_run())

            async def stop() -> None:
                # Let running jobs finish their attempt (cancelling one inside a Redis
                # transaction leaks its connection), then cancel those still waiting for a
                # slot; close() waits for them, however they end.
                worker.allow_pick_jobs = False
                jobs = list(worker.tasks.values())
                if jobs:
                    _, waiting = await asyncio.wait(jobs, timeout=config.delivery_timeout + 1)
                    for job in waiting:
                        job.cancel()
                await worker.close()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

            stack.push_async_callback(stop)
            return worker

        yield start


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def start(*replies: Reply) -> Receiver:
        receiver = await Receiver.start(list(replies) or None)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


def verify_with_node(received: Received, secret: str) -> bool:
    """Run the API page's verifyWebhook (TypeScript, types erased) under Node."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed: CI must verify signatures with the seed's code")
        pytest.skip("node is not installed")
    source = VERIFY_WEBHOOK_TS.read_text()
    javascript = re.sub(r"\)\s*:\s*boolean", ")", re.sub(r"(\w+): string", r"\1", source))
    harness = javascript + (
        "\nconst [body, signature, secret] = process.argv.slice(-3).map("
        "(a) => Buffer.from(a, 'base64').toString('utf8'));\n"
        "console.log(verifyWebhook(body, signature, secret));\n"
    )
    values = (received.body, received.headers["x-webhook-signature"].encode(), secret.encode())
    args = [base64.b64encode(value).decode() for value in values]
    output = subprocess.run(
        [node, "--input-type=module", "-e", harness, "--", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    return output == "true"


class TestEndToEnd:
    @pytest.mark.parametrize(
        ("inbound_type", "payload_type"),
        [
            ("email.opened", "email.open"),
            ("email.clicked", "email.click"),
            ("email.bounced", "email.bounce"),
            ("email.unsubscribed", "email.unsubscribe"),
            ("email.delivered", "email.delivered"),
            ("email.complained", "email.complaint"),
        ],
    )
    async def test_each_event_type_is_delivered_signed(
        self,
        start_env: StartEnv,
        receivers: Callable[..., Awaitable[Receiver]],
        inbound_type: str,
        payload_type: str,
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        webhook_id = await env.webhook(receiver.url, events=payload_type.removeprefix("email."))
        await env.ingest(inbound_type, "msg_42", timestamp="2026-03-03T08:15:00Z")
        [received] = await receiver.wait_for(1)
        payload = json.loads(received.body)
        assert payload["id"].startswith("evt_")
        assert payload["type"] == payload_type
        assert payload["data"] == {
            "email_id": "msg_42",
            "recipient": "to@example.com",
            "timestamp": "2026-03-03T08:15:00Z",
            "provider": "generic",
        }
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", payload["created_at"])
        assert received.headers["Content-Type"] == "application/json"
        assert received.headers["User-Agent"].startswith("mailhooks/")
        assert received.headers["webhook-id"].startswith("dlv_")
        verifier = standardwebhooks.Webhook(
            base64.b64encode(standard_webhooks_key(SECRET)).decode()
        )
        assert verifier.verify(received.body, received.headers) == payload
        [delivery] = await eventually(lambda: _with_status(env, webhook_id, "succeeded"))
        assert delivery["id"] == received.headers["webhook-id"]

    async def test_x_webhook_signature_verifies_with_the_api_pages_code(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        await env.webhook(receiver.url)
        await env.ingest("email.bounced", "msg_ü", metadata={"note": "naïve ✓"})
        [received] = await receiver.wait_for(1)
        assert verify_with_node(received, SECRET) is True
        tampered = Received(received.headers, received.body.replace(b"msg_", b"msX_"), 0)
        assert verify_with_node(tampered, SECRET) is False

    async def test_only_active_subscribers_of_the_type_receive(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env()
        opens, clicks, inactive, everything = [await receivers() for _ in range(4)]
        await env.webhook(opens.url, "open")
        await env.webhook(clicks.url, "click")
        inactive_id = await env.webhook(inactive.url, "open", active=False)
        await env.webhook(everything.url, "*")
        await env.ingest("email.opened")
        await env.ingest("email.clicked")
        assert len(await opens.wait_for(1)) == 1
        assert len(await everything.wait_for(2)) == 2
        assert len(await clicks.wait_for(1)) == 1
        # The inactive one got nothing, but the event is kept for it, retryable by hand.
        [skipped] = await eventually(lambda: _with_status(env, inactive_id, "failed"))
        assert skipped["last_error"] == "webhook_disabled"
        assert skipped["attempts"] == 0
        assert inactive.received == []
        assert len(opens.received) == 1


async def _healthy_latencies_beside_a_hanging_endpoint(
    env: Env, receivers: Callable[..., Awaitable[Receiver]], events: int = 30
) -> list[float]:
    """Webhooks at an endpoint that never answers and at a healthy one; `events` ingested:
    each healthy delivery's seconds from its ingest to its arrival."""
    hanging = await receivers(Reply(delay=30))
    healthy = await receivers()
    await env.webhook(hanging.url)
    await env.webhook(healthy.url)
    sent_at: dict[str, float] = {}
    for n in range(events):
        sent_at[f"msg_{n}"] = time.monotonic()
        await env.ingest(email_id=f"msg_{n}")
    arrived = await healthy.wait_for(events, timeout=10)
    return [r.at - sent_at[json.loads(r.body)["data"]["email_id"]] for r in arrived]


async def _with_status(env: Env, webhook_id: int, status: str) -> list[dict[str, Any]]:
    return await env.deliveries(webhook_id, status=status)


class TestRetries:
    async def test_flaky_receiver_is_retried_on_schedule_until_it_succeeds(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env(retry_schedule=(0.0, 0.3, 0.6))
        receiver = await receivers(Reply(500, body=b"boom"), Reply(502), Reply(200))
        webhook_id = await env.webhook(receiver.url)
        await env.ingest()
        first, second, third = await receiver.wait_for(3)
        assert 0.3 * 0.8 <= second.at - first.at <= 0.3 * 1.2 + 0.5
        assert 0.6 * 0.8 <= third.at - second.at <= 0.6 * 1.2 + 0.5
        # The same delivery throughout: one webhook-id, one body, fresh timestamps.
        assert {r.headers["webhook-id"] for r in (first, second, third)} == {
            first.headers["webhook-id"]
        }
        assert first.body == second.body == third.body
        [delivery] = await eventually(lambda: _with_status(env, webhook_id, "succeeded"))
        detail = await env.delivery(webhook_id, delivery["id"])
        assert detail["attempts"] == 3
        log = detail["attempt_log"]
        assert [a["status_code"] for a in log] == [500, 502, 200]
        assert [a["number"] for a in log] == [1, 2, 3]
        assert log[0]["response"] == "boom"
        assert all(a["latency_ms"] >= 0 for a in log)

    async def test_spent_schedule_fails_and_stays_retryable_by_hand(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env(retry_schedule=(0.0, 0.05))
        receiver = await receivers(Reply(500), Reply(500), Reply(200))
        webhook_id = await env.webhook(receiver.url)
        await env.ingest()
        await receiver.wait_for(2)
        [failed] = await eventually(lambda: _with_status(env, webhook_id, "failed"))
        assert failed["attempts"] == 2
        assert failed["last_status_code"] == 500
        path = f"/api/webhooks/manage/{webhook_id}/deliveries/{failed['id']}/retry"
        response = await env.api.post(path)
        assert response.status_code == 202
        assert response.json()["status"] == "pending"
        third = (await receiver.wait_for(3))[2]
        assert third.headers["webhook-id"] == failed["id"]
        [done] = await eventually(lambda: _with_status(env, webhook_id, "succeeded"))
        assert done["attempts"] == 3

    async def test_410_disables_the_webhook(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env()
        receiver = await receivers(Reply(410))
        webhook_id = await env.webhook(receiver.url)
        await env.ingest()
        await receiver.wait_for(1)
        webhook = await eventually(
            lambda: _webhook_if(env, webhook_id, lambda w: w["active"] is False)
        )
        assert webhook["disabled_reason"] == "gone"
        [failed] = await _with_status(env, webhook_id, "failed")
        assert failed["attempts"] == 1
        # Later events are kept for it (failed, attempts 0), not sent.
        await env.ingest(email_id="msg_2")
        await eventually(lambda: _count_status(env, webhook_id, "failed", 2))
        assert len(receiver.received) == 1

    async def test_after_a_410_no_more_than_the_endpoints_slots_go_out(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        # 300 events read in a few reads: most of the 410 endpoint's deliveries are claimed
        # and waiting for one of its 10 slots when the first 410 arrives.
        env = await start_env()
        gone = await receivers(Reply(410, delay=0.05))
        healthy = await receivers()
        gone_id = await env.webhook(gone.url)
        await env.webhook(healthy.url)
        store = EventStore(env.redis, maxlen=10**6, dedup_ttl_seconds=3600)
        await store.append("generic", [event(n) for n in range(300)])
        await healthy.wait_for(300, timeout=30)

        async def all_failed() -> list[dict[str, Any]] | None:
            failed = await env.deliveries(gone_id, status="failed", limit="1000")
            return failed if len(failed) == 300 else None

        failed = await eventually(all_failed, timeout=30)
        assert len(gone.received) <= env.config.endpoint_concurrency
        abandoned = [d for d in failed if d["attempts"] == 0]
        assert len(abandoned) >= 300 - env.config.endpoint_concurrency
        assert {d["last_error"] for d in abandoned} == {"webhook_disabled"}

    @pytest.mark.parametrize("status", [429, 503])
    async def test_retry_after_is_honoured(
        self,
        start_env: StartEnv,
        receivers: Callable[..., Awaitable[Receiver]],
        status: int,
    ) -> None:
        env = await start_env(retry_schedule=(0.0, 0.01, 5.0))
        receiver = await receivers(Reply(status, headers={"Retry-After": "1"}), Reply(200))
        await env.webhook(receiver.url)
        await env.ingest()
        first, second = await receiver.wait_for(2)
        assert 1.0 <= second.at - first.at < 2.0

    async def test_failing_for_longer_than_disable_after_disables(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env(retry_schedule=(0.0, 0.3, 0.3, 0.3, 0.3), disable_after_seconds=0)
        receiver = await receivers(Reply(500))
        webhook_id = await env.webhook(receiver.url)
        await env.ingest()
        webhook = await eventually(
            lambda: _webhook_if(env, webhook_id, lambda w: w["active"] is False)
        )
        assert webhook["disabled_reason"] == "failing"
        [failed] = await eventually(lambda: _with_status(env, webhook_id, "failed"))
        assert failed["attempts"] == 2  # the second failure crossed DISABLE_AFTER
        # Re-enabled by hand, the webhook's health starts afresh.
        patched = await env.api.patch(f"/api/webhooks/manage/{webhook_id}", json={"active": True})
        assert "disabled_reason" not in patched.json()

    async def test_deleted_mid_retry_gets_no_more_attempts(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env(retry_schedule=(0.0, 0.3, 0.3))
        receiver = await receivers(Reply(500))
        webhook_id = await env.webhook(receiver.url)
        await env.ingest()
        await receiver.wait_for(1)
        assert (await env.api.delete(f"/api/webhooks/manage/{webhook_id}")).status_code == 204
        # The webhook's routes are gone with it: read its failed index in Redis.
        failed = keys.deliveries(webhook_id, "failed")
        [member] = await eventually(lambda: env.redis.zrange(failed, 0, -1))
        detail = await env.delivery_by_id(member.decode().split(":", 1)[1])
        assert detail.last_error == "webhook_deleted"
        assert detail.attempts == 1
        assert len(receiver.received) == 1


class TestControl:
    async def test_recover_requeues_failed_deliveries_since_a_time(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        webhook_id = await env.webhook(receiver.url, active=False)
        for n in range(3):
            await env.ingest(email_id=f"msg_{n}")
        await eventually(lambda: _count_status(env, webhook_id, "failed", 3))
        await env.api.patch(f"/api/webhooks/manage/{webhook_id}", json={"active": True})
        response = await env.api.post(
            f"/api/webhooks/manage/{webhook_id}/recover", json={"since": "2020-01-01T00:00:00Z"}
        )
        assert response.status_code == 202
        assert response.json() == {"requeued": 3}
        received = await receiver.wait_for(3)
        assert {json.loads(r.body)["data"]["email_id"] for r in received} == {
            "msg_0",
            "msg_1",
            "msg_2",
        }
        await eventually(lambda: _count_status(env, webhook_id, "succeeded", 3))

    async def test_recover_since_the_future_requeues_nothing(self, start_env: StartEnv) -> None:
        env = await start_env()
        webhook_id = await env.webhook("https://example.com/hook", active=False)
        await env.ingest()
        await eventually(lambda: _count_status(env, webhook_id, "failed", 1))
        response = await env.api.post(
            f"/api/webhooks/manage/{webhook_id}/recover", json={"since": "2999-01-01T00:00:00Z"}
        )
        assert response.json() == {"requeued": 0}

    @pytest.mark.parametrize(
        ("body", "field"), [({}, "since"), ({"since": "yesterday"}, "since"), ({"x": 1}, "x")]
    )
    async def test_recover_validation(
        self, start_env: StartEnv, body: dict[str, Any], field: str
    ) -> None:
        env = await start_env()
        webhook_id = await env.webhook("https://example.com/hook")
        response = await env.api.post(f"/api/webhooks/manage/{webhook_id}/recover", json=body)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == field

    async def test_test_endpoint_delivers_a_synthetic_event(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        webhook_id = await env.webhook(receiver.url, events="open")
        response = await env.api.post(
            f"/api/webhooks/manage/{webhook_id}/test", json={"type": "bounce"}
        )
        assert response.status_code == 202
        delivery = response.json()
        [received] = await receiver.wait_for(1)
        payload = json.loads(received.body)
        assert payload["type"] == "email.bounce"
        assert payload["data"]["metadata"] == {"test": True}
        assert received.headers["webhook-id"] == delivery["id"]
        verifier = standardwebhooks.Webhook(
            base64.b64encode(standard_webhooks_key(SECRET)).decode()
        )
        assert verifier.verify(received.body, received.headers) == payload
        await eventually(lambda: _count_status(env, webhook_id, "succeeded", 1))

    async def test_unknown_webhook_or_delivery_is_404(self, start_env: StartEnv) -> None:
        env = await start_env()
        webhook_id = await env.webhook("https://example.com/hook")
        for method, path in [
            ("GET", "/api/webhooks/manage/999/deliveries"),
            ("GET", f"/api/webhooks/manage/{webhook_id}/deliveries/dlv_nope"),
            ("POST", f"/api/webhooks/manage/{webhook_id}/deliveries/dlv_nope/retry"),
            ("POST", "/api/webhooks/manage/999/test"),
        ]:
            response = await env.api.request(method, path, json={})
            assert response.status_code == 404, (method, path)

    async def test_deliveries_page_newest_first_and_filter_by_status(
        self, start_env: StartEnv
    ) -> None:
        env = await start_env()
        webhook_id = await env.webhook("https://example.com/hook", active=False)
        for n in range(5):
            await env.ingest(email_id=f"msg_{n}")
        await eventually(lambda: _count_status(env, webhook_id, "failed", 5))
        first = await env.api.get(
            f"/api/webhooks/manage/{webhook_id}/deliveries", params={"limit": 2}
        )
        page1 = first.json()["deliveries"]
        page2 = (await env.api.get(first.links["next"]["url"])).json()["deliveries"]
        ids = [d["id"] for d in page1 + page2]
        assert len(set(ids)) == 4
        created = [d["created_at"] for d in page1 + page2]
        assert created == sorted(created, reverse=True)
        everything = await env.deliveries(webhook_id, limit="10")
        assert [d["id"] for d in everything][:4] == ids
        assert await _with_status(env, webhook_id, "succeeded") == []
        bad = await env.api.get(
            f"/api/webhooks/manage/{webhook_id}/deliveries", params={"status": "odd"}
        )
        assert bad.status_code == 422


class TestSafety:
    async def test_a_name_resolving_to_loopback_is_refused_at_delivery(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env(allow_private_urls=False)
        receiver = await receivers()
        # As if the name had been public at registration and now points at 127.0.0.1.
        store = WebhookStore(env.redis)
        url = receiver.url.replace("127.0.0.1", "localhost")
        # Subscribed to opens only: with *, each would also be sent the other's failure
        # (delivery.exhausted), and fail that too.
        common = {"events": ("open",), "secret": SECRET, "active": True, "now": "t", "limit": 10}
        webhook = await store.create(account=DEFAULT_ACCOUNT, url=url, **common)
        literal = await store.create(account=DEFAULT_ACCOUNT, url=receiver.url, **common)
        await env.ingest()
        for webhook_id in (webhook.id, literal.id):
            # Failed at the first refusal: the schedule (three attempts here) is not walked.
            [failed] = await eventually(lambda w=webhook_id: _with_status(env, w, "failed"))
            detail = await env.delivery(webhook_id, failed["id"])
            assert detail["attempts"] == 1
            assert detail["attempt_log"][0]["error"] == "blocked_address"
            assert detail["last_error"] == "blocked_address"
        assert receiver.received == []

    async def test_a_garbage_reply_is_a_failed_attempt_not_a_crash(
        self, start_env: StartEnv
    ) -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            writer.write(b"NOT HTTP AT ALL\r\nContent-Length: abc\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            env = await start_env(retry_schedule=(0.0, 0.05))
            webhook_id = await env.webhook(f"http://127.0.0.1:{port}/hook")
            await env.ingest()
            [failed] = await eventually(lambda: _with_status(env, webhook_id, "failed"))
            detail = await env.delivery(webhook_id, failed["id"])
            assert detail["attempts"] == 2
            assert {a["error"] for a in detail["attempt_log"]} <= {
                "protocol_error",
                "network_error",
            }
        finally:
            server.close()
            await server.wait_closed()

    async def test_redirects_are_not_followed(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env(retry_schedule=(0.0,))
        target = await receivers()
        redirect = await receivers(Reply(307, headers={"Location": target.url}))
        webhook_id = await env.webhook(redirect.url)
        await env.ingest()
        [failed] = await eventually(lambda: _with_status(env, webhook_id, "failed"))
        assert failed["last_status_code"] == 307
        assert target.received == []

    async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env(delivery_timeout=1.0, endpoint_concurrency=2)
        latencies = await _healthy_latencies_beside_a_hanging_endpoint(env, receivers)
        assert max(latencies) < env.config.delivery_timeout

    async def test_a_hanging_endpoint_does_not_hold_its_accounts_window(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        """The account may have only four events in flight: were each held until its
        delivery to the hanging endpoint timed out, every later event would wait for that
        (2 s) before its healthy delivery could start."""
        env = await start_env(delivery_timeout=2.0, endpoint_concurrency=2, account_concurrency=4)
        latencies = await _healthy_latencies_beside_a_hanging_endpoint(env, receivers)
        assert max(latencies) < env.config.delivery_timeout / 2

    async def test_a_delivery_that_waited_long_for_a_slot_is_sent_once(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        """Deliveries are claimed as they are read, then wait for a slot. Here most wait
        longer than half the timeout (0.5 s) and renew their lease before their attempt:
        each is still sent once, with one attempt, and succeeds."""
        env = await start_env(delivery_timeout=1.0, endpoint_concurrency=1)
        slow = await receivers(Reply(delay=0.4))  # one at a time: the last waits ~2.8 s
        webhook_id = await env.webhook(slow.url)
        for n in range(8):
            await env.ingest(email_id=f"msg_{n}")
        # ~3.2 s of requests; a delivery whose renewal failed would wait for the lease sweep
        # (lease 3 s + grace 5 s) instead.
        await slow.wait_for(8, timeout=6)

        async def all_succeeded() -> bool:
            return await env.redis.zcard(keys.deliveries(webhook_id, "succeeded")) == 8

        await eventually(all_succeeded, timeout=5)
        assert sorted(json.loads(r.body)["data"]["email_id"] for r in slow.received) == [
            f"msg_{n}" for n in range(8)
        ]
        for delivery in await env.deliveries(webhook_id):
            assert delivery["status"] == "succeeded"
            assert delivery["attempts"] == 1


class TestRecovery:
    async def test_a_flushed_redis_is_survived_without_restarting_the_worker(
        self, start_env: StartEnv, receivers: Callable[..., Awaitable[Receiver]]
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        await env.webhook(receiver.url)
        await env.ingest(email_id="before")
        await receiver.wait_for(1)
        await env.redis.flushall()  # the stream and its consumer group are gone
        await env.webhook(receiver.url)
        await env.ingest(email_id="after")
        received = await receiver.wait_for(2)
        assert json.loads(received[1].body)["data"]["email_id"] == "after"


async def _webhook_if(
    env: Env, webhook_id: int, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    webhook: dict[str, Any] = (await env.api.get(f"/api/webhooks/manage/{webhook_id}")).json()
    return webhook if predicate(webhook) else None


async def _count_status(env: Env, webhook_id: int, status: str, count: int) -> bool:
    return len(await env.deliveries(webhook_id, status=status)) == count


async def _first_attempt(env: Env, webhook_id: int) -> dict[str, Any] | None:
    for delivery in await env.deliveries(webhook_id):
        detail = await env.delivery(webhook_id, delivery["id"])
        if detail.get("attempt_log"):
            return detail
    return None


class TestMaintenance:
    async def test_the_worker_trims_a_delivered_backlog_on_its_own(
        self, start_env: StartEnv
    ) -> None:
        # Ingest held back (Redis nearly full) means no append trims: the worker's cron must.
        env = await start_env(events_maxlen=1000)
        event = b'{"type":"email.open","email_id":"m","occurred_at":"2026-03-03T10:00:00Z",'
        async with env.redis.pipeline(transaction=False) as pipe:
            for _ in range(3000):
                pipe.xadd(keys.EVENTS_STREAM, {"e": event + b'"provider":"generic"}'})
            await pipe.execute()

        async def all_read_and_acknowledged() -> bool:
            groups = await env.redis.xinfo_groups(keys.EVENTS_STREAM)  # once the worker is up
            return bool(groups and groups[0]["lag"] == 0 and groups[0]["pending"] == 0)

        await eventually(all_read_and_acknowledged)
        assert await env.redis.xlen(keys.EVENTS_STREAM) == 3000
        [job] = [job for job in WorkerSettings.cron_jobs if job.name == "cron:trim_events"]
        assert job.second == set(range(8, 60, 10))
        await job.coroutine(env.worker.ctx)  # as arq calls it, with the ctx startup made
        assert await env.redis.xlen(keys.EVENTS_STREAM) == 1000
