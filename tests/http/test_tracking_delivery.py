"""First-party tracking end to end: real Redis, the real worker, a real receiver per account.
Opens, clicks and a one-click unsubscribe reach the webhook of the account whose link it was,
and only that one; the unsubscribe suppresses; a hard bounce from a provider suppresses too."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.http.test_routing import ADMIN, all_acknowledged, new_account, subscribe
from tests.receiver import Receiver
from tests.worker.test_deliverer import (  # noqa: F401 (fixtures)
    StartEnv,
    eventually,
    receivers,
    start_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PUBLIC_URL = "https://t.example.com"
TRACKING_KEY = "tracking-key-0123456789abcdef0123456789"
TARGET = "https://shop.example.com/spring"
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)


def payloads(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received]


async def test_tracked_events_reach_the_links_account_only(
    start_env: StartEnv,  # noqa: F811
    receivers: Callable[..., Awaitable[Receiver]],  # noqa: F811
) -> None:
    env = await start_env(
        api_keys=(),
        admin_api_keys=(ADMIN,),
        public_url=PUBLIC_URL,
        tracking_signing_keys=(TRACKING_KEY,),
    )
    api = env.api
    _, acme_key = await new_account(api, "Acme")
    _, globex_key = await new_account(api, "Globex")
    acme_hook, globex_hook = await receivers(), await receivers()
    await subscribe(api, acme_key, acme_hook.url)
    await subscribe(api, globex_key, globex_hook.url)

    made = await api.post(
        "/api/tracking",
        json={"email_id": "msg_spring", "recipient": "Alex@Example.com", "links": [TARGET]},
        headers=acme_key,
    )
    assert made.status_code == 200, made.text
    urls = made.json()

    def path(url: str) -> str:
        return url.removeprefix(PUBLIC_URL)

    # A mail client shows the message; a link scanner follows the link; the recipient opts
    # out with the mail client's one-click button (after its GET preview changed nothing).
    opened = await api.get(path(urls["open_url"]), headers={"User-Agent": APPLE_MAIL})
    assert opened.status_code == 200
    scanned = await api.get(path(urls["links"][TARGET]), headers={"User-Agent": "curl/8.4.0"})
    assert scanned.headers["location"] == TARGET
    previewed = await api.get(path(urls["unsubscribe_url"]), headers={"User-Agent": APPLE_MAIL})
    assert previewed.status_code == 200
    assert (
        await api.get("/api/suppressions/alex@example.com", headers=acme_key)
    ).status_code == 404
    unsubscribed = await api.post(
        path(urls["unsubscribe_url"]), content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert unsubscribed.status_code == 200

    await acme_hook.wait_for(3)
    await eventually(lambda: all_acknowledged(env.redis))
    delivered = {p["type"]: p for p in payloads(acme_hook)}
    assert sorted(delivered) == ["email.click", "email.open", "email.unsubscribe"]
    assert globex_hook.received == []
    for payload in delivered.values():
        assert payload["data"]["email_id"] == "msg_spring"
        assert payload["data"]["recipient"] == "Alex@Example.com"
        assert payload["data"]["provider"] == "mailhooks"
    assert "machine" not in delivered["email.open"]["data"]
    assert delivered["email.open"]["data"]["user_agent"] == APPLE_MAIL
    assert delivered["email.click"]["data"]["click"] == {"url": TARGET}
    assert delivered["email.click"]["data"]["machine"] == "scanner"

    suppressed = await api.get("/api/suppressions/alex@example.com", headers=acme_key)
    assert suppressed.status_code == 200
    assert suppressed.json()["reason"] == "unsubscribe"
    assert suppressed.json()["event_id"] == delivered["email.unsubscribe"]["id"]
    theirs = await api.get("/api/suppressions/alex@example.com", headers=globex_key)
    assert theirs.status_code == 404


async def test_a_hard_bounce_from_a_provider_suppresses_and_is_delivered(
    start_env: StartEnv,  # noqa: F811
    receivers: Callable[..., Awaitable[Receiver]],  # noqa: F811
) -> None:
    env = await start_env(api_keys=(), admin_api_keys=(ADMIN,))
    api = env.api
    acme, acme_key = await new_account(api, "Acme")
    hook = await receivers()
    await subscribe(api, acme_key, hook.url)
    body = {
        "type": "email.bounced",
        "email_id": "msg_1",
        "recipient": "Gone@Example.com",
        "bounce": {"kind": "hard", "reason": "550 5.1.1 no such user"},
        "account_id": acme,
    }
    assert (await api.post("/api/webhooks", json=body)).json() == {"received": True}
    [received] = await hook.wait_for(1)
    delivered = json.loads(received.body)
    assert delivered["type"] == "email.bounce"
    found = await api.get("/api/suppressions/gone@example.com", headers=acme_key)
    assert found.json() == {
        "email": "gone@example.com",
        "reason": "hard_bounce",
        "event_id": delivered["id"],
        "created_at": found.json()["created_at"],
    }
