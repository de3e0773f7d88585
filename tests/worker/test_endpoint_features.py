"""Endpoint features end to end (issue #19): secret rotation with overlap, custom headers, the
event-type catalogue against real deliveries, and deliveries through an egress proxy. Real
Redis, the real worker, real receivers, as in test_deliverer.py."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema
import pytest
import standardwebhooks
from multidict import CIMultiDict
from standardwebhooks.webhooks import WebhookVerificationError

from service.core.signing import standard_webhooks_key
from tests.proxy import Proxy
from tests.receiver import Received, Receiver, Reply
from tests.worker import test_deliverer
from tests.worker.test_deliverer import SECRET, StartEnv, eventually, verify_with_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

Receivers = Callable[..., Awaitable[Receiver]]
# test_deliverer's fixtures: a real worker and web app on a private Redis, local receivers.
start_env = test_deliverer.start_env
receivers = test_deliverer.receivers
NEW_SECRET = "whsec_bmV3LXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"


def verifies(received: Received, secret: str) -> bool:
    """As a subscriber verifies webhook-signature with the standardwebhooks library."""
    key = base64.b64encode(standard_webhooks_key(secret)).decode()
    try:
        standardwebhooks.Webhook(key).verify(received.body, received.headers)
    except WebhookVerificationError:
        return False
    return True


class TestSecretRotation:
    async def test_both_secrets_verify_during_the_grace_period_only_the_new_after(
        self, start_env: StartEnv, receivers: Receivers
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        webhook_id = await env.webhook(receiver.url)
        grace = 3
        rotated = await env.api.post(
            f"/api/webhooks/manage/{webhook_id}/secret/rotate",
            json={"secret": NEW_SECRET, "grace_period_seconds": grace},
        )
        assert rotated.status_code == 200, rotated.text
        rotated_at = time.monotonic()

        await env.ingest(email_id="msg_during")
        [during] = await receiver.wait_for(1)
        assert time.monotonic() - rotated_at < grace, "delivered too late to test the overlap"
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        assert verifies(during, NEW_SECRET)
        assert verifies(during, SECRET)
        # X-Webhook-Signature: one hex value, the new secret's (the API page's verifyWebhook).
        assert verify_with_node(during, NEW_SECRET) is True
        assert verify_with_node(during, SECRET) is False

        await asyncio.sleep(max(0.0, grace + 0.2 - (time.monotonic() - rotated_at)))
        await env.ingest(email_id="msg_after")
        after = (await receiver.wait_for(2))[1]
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        assert verifies(after, NEW_SECRET)
        assert not verifies(after, SECRET)
        assert verify_with_node(after, NEW_SECRET) is True

    async def test_a_grace_of_zero_switches_at_once(
        self, start_env: StartEnv, receivers: Receivers
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        webhook_id = await env.webhook(receiver.url)
        response = await env.api.post(
            f"/api/webhooks/manage/{webhook_id}/secret/rotate", json={"grace_period_seconds": 0}
        )
        generated = response.json()["secret"]
        await env.ingest()
        [received] = await receiver.wait_for(1)
        assert verifies(received, generated)
        assert not verifies(received, SECRET)


class TestCustomHeaders:
    async def test_they_arrive_with_every_delivery_beside_ours(
        self, start_env: StartEnv, receivers: Receivers, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        env = await start_env()
        receiver = await receivers()
        headers = {"Authorization": "Bearer endpoint-t0ken", "X-Tenant": "acme"}
        webhook_id = await env.webhook(receiver.url, headers=headers)
        await env.ingest(email_id="msg_1")
        await env.api.post(f"/api/webhooks/manage/{webhook_id}/test", json={"type": "click"})
        for received in await receiver.wait_for(2):
            got = CIMultiDict(received.headers)  # names are case-insensitive (sent lower case)
            assert got["Authorization"] == "Bearer endpoint-t0ken"
            assert got["X-Tenant"] == "acme"
            assert got["Content-Type"] == "application/json"
            assert verifies(received, SECRET)
        await env.api.patch(f"/api/webhooks/manage/{webhook_id}", json={"headers": {}})
        await env.ingest(email_id="msg_2")
        third = (await receiver.wait_for(3))[2]
        assert "Authorization" not in CIMultiDict(third.headers)
        assert "endpoint-t0ken" not in caplog.text


class TestCatalogue:
    async def test_its_schemas_validate_real_deliveries(
        self, start_env: StartEnv, receivers: Receivers
    ) -> None:
        env = await start_env()
        receiver = await receivers()
        await env.webhook(receiver.url, events="*")
        response = await env.api.get("/api/event-types")
        schemas = {t["type"]: t["schema"] for t in response.json()["event_types"]}
        inbound = {
            "email.opened": {"user_agent": "Mozilla/5.0"},
            "email.clicked": {"click": {"url": "https://example.com/x"}},
            "email.bounced": {"bounce": {"kind": "hard", "reason": "no such user"}},
            "email.unsubscribed": {},
            "email.delivered": {"mta_response": "250 OK"},
            "email.complained": {},
            "email.deferred": {"reason": "mailbox busy"},
            "email.rejected": {"reason": "suppressed"},
        }
        for n, (type_, extra) in enumerate(inbound.items()):
            await env.ingest(type_, f"msg_{n}", metadata={"n": n}, **extra)
        delivered = [json.loads(r.body) for r in await receiver.wait_for(len(inbound))]
        assert {p["type"] for p in delivered} == {t for t in schemas if t.startswith("email.")}
        for payload in delivered:
            jsonschema.validate(payload, schemas[payload["type"]])
            others = [t for t in schemas if t != payload["type"]]
            for other in others:
                with pytest.raises(jsonschema.ValidationError):
                    jsonschema.validate(payload, schemas[other])

    async def test_its_schemas_validate_real_operational_deliveries(
        self, start_env: StartEnv, receivers: Receivers
    ) -> None:
        env = await start_env(retry_schedule=(0.0, 0.1))
        gone, failing = await receivers(Reply(410)), await receivers(Reply(500))
        watcher = await receivers()
        await env.webhook(gone.url, events="open")
        await env.webhook(failing.url, events="click")
        await env.webhook(watcher.url, events="webhook.disabled,delivery.exhausted")
        schemas = {
            t["type"]: t["schema"]
            for t in (await env.api.get("/api/event-types")).json()["event_types"]
        }
        await env.ingest("email.opened", "msg_gone")
        await env.ingest("email.clicked", "msg_failing")
        delivered = [json.loads(r.body) for r in await watcher.wait_for(2)]
        assert {p["type"] for p in delivered} == {"webhook.disabled", "delivery.exhausted"}
        for payload in delivered:
            jsonschema.validate(payload, schemas[payload["type"]])
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(payload, schemas["email.open"])


class TestEgressProxy:
    async def test_deliveries_go_through_the_proxy_with_its_credentials(
        self,
        start_env: StartEnv,
        receivers: Receivers,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        proxy = await Proxy.start()
        try:
            proxy_url = proxy.url.replace("http://", "http://egress:pr0xy-pass@")
            env = await start_env(delivery_proxy_url=proxy_url)
            receiver = await receivers()
            webhook_id = await env.webhook(receiver.url, headers={"X-Tenant": "acme"})
            await env.ingest(email_id="msg_1")
            await env.api.post(f"/api/webhooks/manage/{webhook_id}/test", json={"type": "open"})
            arrived = await receiver.wait_for(2)
            assert len(proxy.forwarded) == 2
            expected = "Basic " + base64.b64encode(b"egress:pr0xy-pass").decode()
            for forwarded, received in zip(proxy.forwarded, arrived, strict=True):
                assert forwarded.target == receiver.url  # absolute form
                assert forwarded.headers["Proxy-Authorization"] == expected
                assert forwarded.body == received.body
                assert "Proxy-Authorization" not in CIMultiDict(received.headers)
                assert CIMultiDict(received.headers)["X-Tenant"] == "acme"
                assert verifies(received, SECRET)
            assert "pr0xy-pass" not in caplog.text
        finally:
            await proxy.stop()

    async def test_the_blocked_address_verdict_holds_through_the_proxy(
        self, start_env: StartEnv, receivers: Receivers
    ) -> None:
        proxy = await Proxy.start()
        try:
            env = await start_env(delivery_proxy_url=proxy.url, allow_private_urls=False)
            receiver = await receivers()
            # Registered while its name was public, say; now it resolves to loopback.
            from service.core.accounts import DEFAULT_ACCOUNT
            from service.storage.webhooks import WebhookStore

            webhook = await WebhookStore(env.redis).create(
                account=DEFAULT_ACCOUNT,
                url=receiver.url.replace("127.0.0.1", "localhost"),
                events=("*",),
                secret=SECRET,
                active=True,
                now="t",
                limit=10,
            )
            await env.ingest()

            async def failed() -> list[dict[str, Any]]:
                return await env.deliveries(webhook.id, status="failed")

            [delivery] = await eventually(failed)
            assert delivery["last_error"] == "blocked_address"
            assert proxy.forwarded == []
            assert receiver.received == []
        finally:
            await proxy.stop()
