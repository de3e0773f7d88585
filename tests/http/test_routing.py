"""Routing inbound events to the account that sent the email, end to end: real Redis, the real
worker, a real receiver per account. Each provider's tag, the email registry, unrouted events,
and a key revoked in one web process refused at once by another."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from devtools.redis_server import PrivateRedis, free_port, wait_for_port
from service.core.accounts import DEFAULT_ACCOUNT
from service.storage import keys
from tests import FIXTURES
from tests.conftest import API_KEY, StartProcess
from tests.providers.test_account_tags import TAGGED
from tests.receiver import Receiver
from tests.signers import (
    FORM,
    INBOUND_SECRET,
    MAILGUN_KEY,
    RESEND_SECRET,
    SendgridSigner,
    generic_headers,
    mailgun_body,
    resend_headers,
)
from tests.worker.test_deliverer import (  # noqa: F401 (fixtures)
    StartEnv,
    eventually,
    receivers,
    start_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ADMIN = "admin-key-0123456789abcdef"
PROVIDERS = FIXTURES / "providers"
SENDGRID = SendgridSigner()


def admin(account: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    if account:
        headers["X-Account-Id"] = account
    return headers


async def new_account(api: httpx.AsyncClient, name: str) -> tuple[str, dict[str, str]]:
    account = (await api.post("/api/accounts", json={"name": name}, headers=admin())).json()
    key = (await api.post(f"/api/accounts/{account['id']}/keys", headers=admin())).json()["key"]
    return account["id"], {"Authorization": f"Bearer {key}"}


async def subscribe(api: httpx.AsyncClient, headers: dict[str, str], url: str) -> None:
    body = {"url": url, "events": "*", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    response = await api.post("/api/webhooks/manage", json=body, headers=headers)
    assert response.status_code == 201, response.text


async def post(api: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str]) -> None:
    response = await api.post(path, content=body, headers=headers)
    assert response.json() == {"received": True}, response.text


async def all_acknowledged(redis: Redis) -> bool:
    [group] = await redis.xinfo_groups(keys.EVENTS_STREAM)
    return group["lag"] == 0 and group["pending"] == 0


def email_ids(receiver: Receiver) -> list[str]:
    return sorted(json.loads(r.body)["data"]["email_id"] for r in receiver.received)


def fixture(path: str) -> Any:
    return json.loads((PROVIDERS / path).read_text())


class Senders:
    """Each provider's request for one email, tagged with an account the provider's way."""

    def __init__(self, api: httpx.AsyncClient) -> None:
        self.api = api

    async def generic(self, email_id: str, account: str | None = None) -> None:
        body: dict[str, Any] = {"type": "email.opened", "email_id": email_id}
        if account:
            body["account_id"] = account
        raw = json.dumps(body).encode()
        await post(self.api, "/api/webhooks", raw, generic_headers(raw))

    async def resend(self, email_id: str, account: str) -> None:
        body = fixture("resend/open.json")
        body["data"]["email_id"] = email_id
        body["data"]["tags"] = {"account_id": account, "category": "x"}
        raw = json.dumps(body).encode()
        await post(
            self.api, "/api/webhooks/resend", raw, resend_headers(raw, time.time(), email_id)
        )

    async def sendgrid(self, tagged: list[tuple[str, str]]) -> None:
        """One batch, an event per (email id, account): a custom arg is a top-level field."""
        [template] = fixture("sendgrid/open.json")
        batch = []
        for n, (email_id, account) in enumerate(tagged):
            item = copy.deepcopy(template)
            item.update(
                sg_message_id=email_id, sg_event_id=f"sg-{email_id}-{n}", account_id=account
            )
            batch.append(item)
        raw = json.dumps(batch).encode()
        await post(self.api, "/api/webhooks/sendgrid", raw, SENDGRID.headers(raw, time.time()))

    async def mailgun(self, email_id: str, account: str) -> None:
        data = fixture("mailgun/opened.event-data.json")
        data["message"]["headers"]["message-id"] = email_id
        data["id"] = f"mg-{email_id}"
        data["user-variables"] = {"account_id": account}
        raw = mailgun_body(data, time.time())
        await post(self.api, "/api/webhooks/mailgun", raw, {"content-type": "application/json"})


SECRETS = {
    "generic": INBOUND_SECRET,
    "resend": RESEND_SECRET,
    "sendgrid": SENDGRID.public_key,
    "mailgun": MAILGUN_KEY,
}


async def test_each_event_reaches_only_the_account_that_sent_it(
    start_env: StartEnv,  # noqa: F811
    receivers: Callable[..., Awaitable[Receiver]],  # noqa: F811
) -> None:
    env = await start_env(api_keys=(), admin_api_keys=(ADMIN,), provider_secrets=SECRETS)
    api = env.api
    acme, acme_key = await new_account(api, "Acme")
    globex, globex_key = await new_account(api, "Globex")
    acme_hook, globex_hook = await receivers(), await receivers()
    await subscribe(api, acme_key, acme_hook.url)
    await subscribe(api, globex_key, globex_hook.url)
    registered = await api.post("/api/emails", json={"email_ids": ["reg-1"]}, headers=globex_key)
    assert registered.json()["registered"] == 1

    send = Senders(api)
    # Unrouted first: untagged and unregistered, and a tag naming no account.
    await send.generic("nobody-1")
    await send.generic("nobody-2", account="acc_doesnotexist")
    await send.generic("gen-a", account=acme)
    await send.resend("resend-b", globex)
    await send.sendgrid([("sg-a", acme), ("sg-b", globex)])  # one batch, two accounts
    await send.mailgun("mg-a", acme)
    await send.generic("reg-1")  # untagged: its registration routes it
    await send.generic("reg-1-tagged", account=acme)

    await acme_hook.wait_for(4)
    await globex_hook.wait_for(3)
    await eventually(lambda: all_acknowledged(env.redis))
    assert email_ids(acme_hook) == sorted(["gen-a", "sg-a", "mg-a", "reg-1-tagged"])
    assert email_ids(globex_hook) == sorted(["resend-b", "sg-b", "reg-1"])

    # Each account reads only its own events; an admin lists the unrouted ones.
    listed = (await api.get("/api/events", headers=acme_key)).json()["events"]
    assert sorted(e["email_id"] for e in listed) == email_ids(acme_hook)
    assert {e["account_id"] for e in listed} == {acme}
    theirs = (await api.get("/api/events", headers=globex_key)).json()["events"][0]
    assert (await api.get(f"/api/events/{theirs['id']}", headers=acme_key)).status_code == 404
    unrouted = (await api.get("/api/events?unrouted=true", headers=admin())).json()["events"]
    assert sorted(e["email_id"] for e in unrouted) == ["nobody-1", "nobody-2"]
    assert all("account_id" not in e for e in unrouted)  # omitted, as every unset field
    refused = await api.get("/api/events?unrouted=true", headers=acme_key)
    assert refused.status_code == 403
    counts = await env.redis.hgetall(keys.INBOUND_COUNTS)
    assert counts[b"generic:unrouted"] == b"2"


async def test_single_account_mode_keeps_untagged_events_for_the_default_account(
    start_env: StartEnv,  # noqa: F811
    receivers: Callable[..., Awaitable[Receiver]],  # noqa: F811
) -> None:
    env = await start_env(admin_api_keys=(ADMIN,), provider_secrets=SECRETS)
    api = env.api  # API_KEYS: the default account's key
    acme, acme_key = await new_account(api, "Acme")
    default_hook, acme_hook = await receivers(), await receivers()
    await subscribe(api, {"Authorization": f"Bearer {API_KEY}"}, default_hook.url)
    await subscribe(api, acme_key, acme_hook.url)
    send = Senders(api)
    await send.generic("untagged")
    await send.generic("tagged", account=acme)
    await send.generic("unknown-tag", account="acc_doesnotexist")
    await default_hook.wait_for(1)
    await acme_hook.wait_for(1)
    await eventually(lambda: all_acknowledged(env.redis))
    assert email_ids(default_hook) == ["untagged"]
    assert email_ids(acme_hook) == ["tagged"]
    accounts = (await api.get("/api/accounts", headers=admin())).json()["accounts"]
    assert DEFAULT_ACCOUNT in [a["id"] for a in accounts]


async def test_a_revoked_key_is_refused_at_once_by_another_web_process(
    start_env: StartEnv,  # noqa: F811
    start_process: StartProcess,
    redis_server: PrivateRedis,
) -> None:
    env = await start_env(api_keys=(), admin_api_keys=(ADMIN,))
    account, own = await new_account(env.api, "Acme")
    port = free_port()
    process = start_process(
        "web", quiet=True, REDIS_URL=redis_server.url, PORT=str(port), API_KEYS="",
        ADMIN_API_KEYS=ADMIN,
    )  # fmt: skip
    wait_for_port(port, timeout=20, process=process)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as other:
        assert (await other.get("/api/webhooks/manage", headers=own)).status_code == 200
        [key] = (await env.api.get(f"/api/accounts/{account}/keys", headers=admin())).json()["keys"]
        revoked = await env.api.delete(f"/api/accounts/{account}/keys/{key['id']}", headers=admin())
        assert revoked.status_code == 204
        assert (await other.get("/api/webhooks/manage", headers=own)).status_code == 401


async def test_every_providers_tag_routes_its_events_to_the_owner(
    start_env: StartEnv,  # noqa: F811
    receivers: Callable[..., Awaitable[Receiver]],  # noqa: F811
) -> None:
    """Each provider's own tag (tests/providers/test_account_tags.py builds them), posted to its
    URL (unsigned, as ALLOW_UNSIGNED_INBOUND allows; SES is always verified and is tested there),
    alternating between two accounts: each account's receiver gets exactly its share."""
    env = await start_env(api_keys=(), admin_api_keys=(ADMIN,))
    acme, acme_key = await new_account(env.api, "Acme")
    globex, globex_key = await new_account(env.api, "Globex")
    acme_hook, globex_hook = await receivers(), await receivers()
    await subscribe(env.api, acme_key, acme_hook.url)
    await subscribe(env.api, globex_key, globex_hook.url)
    expected: dict[str, list[str]] = {acme: [], globex: []}
    cases = [case for case in sorted(TAGGED) if TAGGED[case][0] != "ses"]
    for number, case in enumerate(cases):
        provider, build = TAGGED[case]
        account = (acme, globex)[number % 2]
        path = "/api/webhooks" if provider == "generic" else f"/api/webhooks/{provider}"
        body = build(account)
        kind = FORM if provider == "mandrill" or case == "mailgun legacy" else "application/json"
        response = await env.api.post(path, content=body, headers={"content-type": kind})
        assert response.json() == {"received": True}, (case, response.text)
        expected[account].append(provider)
    await acme_hook.wait_for(len(expected[acme]))
    await globex_hook.wait_for(len(expected[globex]))
    await eventually(lambda: all_acknowledged(env.redis))

    def providers(receiver: Receiver) -> list[str]:
        return sorted(json.loads(r.body)["data"]["provider"] for r in receiver.received)

    assert providers(acme_hook) == sorted(expected[acme])
    assert providers(globex_hook) == sorted(expected[globex])
