"""Operational events end to end (webhook.disabled, delivery.exhausted): real Redis, the real
worker, real receivers; two accounts through the HTTP API. Each arrives signed at the
account's webhooks subscribed to it, never at the webhook it is about, never at another
account's; an operational event's own failed delivery announces nothing more."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import standardwebhooks

from service.core.signing import signature_hex, standard_webhooks_key
from service.storage import keys
from tests.receiver import Received, Receiver, Reply
from tests.worker.test_deliverer import (  # noqa: F401 (fixtures)
    SECRET,
    Env,
    StartEnv,
    eventually,
    receivers,
    start_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

Receivers = Callable[..., Awaitable[Receiver]]
ADMIN = "admin-key-0123456789abcdef"
OPERATIONAL = "webhook.disabled,delivery.exhausted"


async def new_account(api: httpx.AsyncClient, name: str) -> tuple[str, dict[str, str]]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    account = (await api.post("/api/accounts", json={"name": name}, headers=admin)).json()
    key = (await api.post(f"/api/accounts/{account['id']}/keys", headers=admin)).json()["key"]
    return account["id"], {"Authorization": f"Bearer {key}"}


async def webhook(api: httpx.AsyncClient, headers: dict[str, str], url: str, events: str) -> int:
    body = {"url": url, "events": events, "secret": SECRET}
    response = await api.post("/api/webhooks/manage", json=body, headers=headers)
    assert response.status_code == 201, response.text
    webhook_id: int = response.json()["id"]
    return webhook_id


async def ingest(api: httpx.AsyncClient, email_id: str, account: str) -> None:
    body = {"type": "email.opened", "email_id": email_id, "account_id": account}
    assert (await api.post("/api/webhooks", json=body)).json() == {"received": True}


def verified(received: Received) -> dict[str, Any]:
    """The payload, once both signatures check out with the webhook's secret."""
    assert received.headers["x-webhook-signature"] == signature_hex(received.body, SECRET)
    key = base64.b64encode(standard_webhooks_key(SECRET)).decode()
    payload: dict[str, Any] = standardwebhooks.Webhook(key).verify(received.body, received.headers)
    return payload


def types(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["type"] for r in receiver.received]


async def settled(env: Env) -> None:
    """Every stored event read and acknowledged, and nothing left to retry."""

    async def quiet() -> bool:
        [group] = await env.redis.xinfo_groups("mh:events")
        scheduled = await env.redis.zcard(keys.retries(0))
        return group["lag"] == 0 and group["pending"] == 0 and scheduled == 0

    await eventually(quiet, timeout=15)


class TestDeliveryExhausted:
    async def test_announced_signed_to_the_accounts_other_webhook_only(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        env = await start_env(
            api_keys=(), admin_api_keys=(ADMIN,), retry_schedule=(0.0, 0.05, 0.05)
        )
        acme, acme_key = await new_account(env.api, "Acme")
        _, globex_key = await new_account(env.api, "Globex")
        failing, ops, other_account = (
            await receivers(Reply(500, body=b"boom")),
            await receivers(),
            await receivers(),
        )
        failing_id = await webhook(env.api, acme_key, failing.url, "*")
        ops_id = await webhook(env.api, acme_key, ops.url, OPERATIONAL)
        await webhook(env.api, globex_key, other_account.url, "*")
        await ingest(env.api, "msg_1", acme)

        [received] = await ops.wait_for(1)
        payload = verified(received)
        path = f"/api/webhooks/manage/{failing_id}/deliveries"
        response = await env.api.get(path, params={"status": "failed"}, headers=acme_key)
        [delivery] = response.json()["deliveries"]
        assert payload["type"] == "delivery.exhausted"
        assert payload["id"].startswith("evt_")
        assert payload["data"] == {
            "delivery_id": delivery["id"],
            "webhook_id": failing_id,
            "event_id": delivery["event_id"],
            "event_type": "email.open",
            "attempts": 3,
            "last_status_code": 500,
            "last_error": "http_status",
            "failed_at": payload["data"]["failed_at"],
        }
        assert received.headers["webhook-id"].endswith(f"_{ops_id}")
        await settled(env)
        # The failing webhook got its three attempts, and no announcement of its own failure.
        assert types(failing) == ["email.open"] * 3
        assert types(ops) == ["delivery.exhausted"]
        assert other_account.received == []
        # Stored under the account like any event: listed to it, filtered by type.
        listed = await env.api.get(
            "/api/events", params={"type": "delivery.exhausted"}, headers=acme_key
        )
        [event] = listed.json()["events"]
        assert (event["id"], event["provider"], event["account_id"]) == (
            payload["id"],
            "mailhooks",
            acme,
        )
        assert event["delivery_exhausted"] == payload["data"]
        theirs = await env.api.get("/api/events", headers=globex_key)
        assert theirs.json()["events"] == []

    async def test_failing_announcements_announce_nothing_more(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        """Two failing webhooks subscribed to everything: each is told of the other's
        failure once, fails that too, and it ends there."""
        env = await start_env(retry_schedule=(0.0, 0.05))
        first, second = await receivers(Reply(500)), await receivers(Reply(500))
        await env.webhook(first.url, "*")
        await env.webhook(second.url, "*")
        await env.ingest()
        await settled(env)
        await asyncio.sleep(0.3)
        await settled(env)
        for receiver in (first, second):
            assert sorted(types(receiver)) == ["delivery.exhausted"] * 2 + ["email.open"] * 2
        stored = (await env.api.get("/api/events")).json()["events"]
        assert sorted(e["type"] for e in stored) == [
            "delivery.exhausted",
            "delivery.exhausted",
            "email.open",
        ]


class TestWebhookDisabled:
    async def test_gone_is_announced_once_to_the_other_webhook(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        env = await start_env()
        gone, ops = await receivers(Reply(410)), await receivers()
        gone_id = await env.webhook(gone.url, "*")
        ops_id = await env.webhook(ops.url, "*")  # * includes operational events
        for n in range(5):  # several 410s in flight: the webhook is disabled once
            await env.ingest(email_id=f"msg_{n}")
        await settled(env)
        disabled = [verified(r) for r in ops.received if json.loads(r.body)["type"] != "email.open"]
        [payload] = disabled
        assert payload["type"] == "webhook.disabled"
        data = payload["data"]
        assert data["delivery_id"].endswith(f"_{gone_id}")
        assert data == {
            "webhook_id": gone_id,
            "url": gone.url,
            "reason": "gone",
            "disabled_at": data["disabled_at"],
            "delivery_id": data["delivery_id"],
            "last_status_code": 410,
            "last_error": "http_status",
        }
        assert set(types(gone)) == {"email.open"}
        assert (await env.api.get(f"/api/webhooks/manage/{gone_id}")).json()["active"] is False
        assert ops_id

    async def test_failing_too_long_is_announced_with_its_reason(
        self,
        start_env: StartEnv,  # noqa: F811
        receivers: Receivers,  # noqa: F811
    ) -> None:
        env = await start_env(disable_after_seconds=0, retry_schedule=(0.0, 0.3, 0.3))
        failing, ops = await receivers(Reply(503)), await receivers()
        failing_id = await env.webhook(failing.url, "open")
        await env.webhook(ops.url, "webhook.disabled")
        await env.ingest()  # the first failure sets failing_since, the second disables
        [received] = await ops.wait_for(1)
        payload = verified(received)
        assert payload["type"] == "webhook.disabled"
        assert (payload["data"]["webhook_id"], payload["data"]["reason"]) == (failing_id, "failing")
        assert payload["data"]["last_status_code"] == 503
        await settled(env)
        assert types(ops) == ["webhook.disabled"]  # not delivery.exhausted: not subscribed
