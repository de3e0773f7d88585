"""The portal in a real browser: headless Chromium (tests/browser.py) against the app on a
real port (uvicorn, as the Procfile runs it), with the real worker delivering to real local
receivers and a real Redis. Each test takes a few seconds; `make screenshots` keeps the
pictures docs/portal.md shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from tests.browser import chromium, screenshot_dir, served
from tests.conftest import API_KEY
from tests.receiver import Reply
from tests.worker.test_deliverer import (  # noqa: F401  (fixtures)
    Env,
    StartEnv,
    eventually,
    receivers,
    start_env,
)

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ADMIN = "admin-key-0123456789abcdef"
SETTINGS: dict[str, Any] = {
    "admin_api_keys": (ADMIN,),
    "portal_secret": "portal-secret-0123456789abcdef0123456789",
    "retry_schedule": (0.0,),  # one attempt: a failure is final until retried by hand
}
PHONE = {"width": 390, "height": 844}


class Skewed:
    """The web app's clock, which a test can move forward (links expire by it)."""

    def __init__(self) -> None:
        self.skew = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.skew


async def portal_link(base: str, key: str, account: str) -> str:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post(
            f"/api/accounts/{account}/portal-links", headers={"Authorization": f"Bearer {key}"}
        )
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    assert url.startswith(base + "/portal/login?token=")
    return url


async def delivery_ids(env: Env, webhook_id: int, headers: dict[str, str]) -> list[str]:
    response = await env.api.get(f"/api/webhooks/manage/{webhook_id}/deliveries", headers=headers)
    return [d["id"] for d in response.json()["deliveries"]]


async def test_a_customer_manages_webhooks_and_deliveries(
    start_env: StartEnv,  # noqa: F811
    receivers: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.async_api import expect

    env = await start_env(**SETTINGS)
    shots = screenshot_dir(tmp_path)
    receiver = await receivers(Reply(500, body=b'{"error": "database unavailable"}'), Reply(200))
    app = create_app(env.config, redis=env.redis)
    async with served(app) as base, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1100, "height": 900})
        await page.goto(await portal_link(base, API_KEY, "acc_default"))
        await expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
        assert page.url == base + "/portal/"

        # Add a webhook for opens and clicks: the generated secret is shown once.
        await page.get_by_role("link", name="Add a webhook").click()
        await page.get_by_label("Endpoint URL").fill(receiver.url)
        await page.get_by_label("All events").uncheck()
        await page.get_by_label("open", exact=True).check()
        await page.get_by_label("click", exact=True).check()
        await page.screenshot(path=shots / "add-webhook.png", full_page=True)
        await page.get_by_role("button", name="Add webhook").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Webhook 1 added")
        await expect(page.locator("#secret")).to_have_text(re.compile(r"^whsec_"))
        await page.screenshot(path=shots / "webhook-added.png")

        # An event arrives; the worker delivers it to the receiver, which answers 500.
        await env.ingest("email.opened", email_id="msg_portal_1", recipient="ada@example.com")
        await receiver.wait_for(1)
        await page.get_by_role("link", name="Go to the webhook").click()
        failed = page.get_by_role("row").filter(has_text="failed")

        async def shown_failed() -> bool:
            await page.reload()
            return await failed.count() == 1

        await eventually(shown_failed)

        # Its attempts: time, status code, duration, the response's beginning.
        await failed.get_by_role("link").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Delivery dlv_")
        attempt = page.get_by_role("row").filter(has_text="database unavailable")
        await expect(attempt).to_contain_text("500")
        await expect(attempt).to_contain_text(" ms")
        await page.screenshot(path=shots / "delivery-failed.png", full_page=True)

        # Retried from the portal: the receiver answers 200 now, and the page (its script
        # looks again while the delivery is pending) shows it succeeded.
        await page.get_by_role("button", name="Retry now").click()
        await expect(page.get_by_role("status")).to_contain_text("queued for another attempt")
        await receiver.wait_for(2)
        await expect(page.locator(".summary .badge")).to_have_text("succeeded", timeout=10_000)
        await expect(page.get_by_role("row")).to_have_count(3)  # header and two attempts
        await page.screenshot(path=shots / "delivery-retried.png", full_page=True)

        # A test event, delivered like a real one.
        await page.get_by_role("link", name="Webhook 1").click()
        await page.get_by_label("Test event type").select_option("click")
        await page.get_by_role("button", name="Send test event").click()
        await expect(page.get_by_role("status")).to_contain_text("Test event sent")
        test_request = await receiver.wait_for(3)
        assert b'"type":"email.click"' in test_request[-1].body

        # The webhook's page: the 24-hour chart and its deliveries, on a wide and a phone screen.
        await page.get_by_role("link", name="Webhook 1").click()
        await expect(page.locator("figure.chart figcaption")).to_contain_text(
            re.compile(r"[12] succeeded")
        )
        await expect(page.get_by_role("img")).to_have_accessible_name(
            re.compile(r"^Last 24 hours: [12] succeeded, 0 failed")
        )
        await page.screenshot(path=shots / "webhook.png", full_page=True)
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=shots / "webhook-phone.png", full_page=True)
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await page.set_viewport_size({"width": 1100, "height": 900})

        # The event, found by its email id, with where it was delivered.
        await page.get_by_role("link", name="Events").click()
        await page.get_by_label("Email id").fill("msg_portal_1")
        await page.get_by_role("button", name="Search").click()
        row = page.get_by_role("row").filter(has_text="msg_portal_1")
        await expect(row).to_contain_text("ada@example.com")
        await expect(row.locator(".badge")).to_have_text("succeeded")
        await page.screenshot(path=shots / "events.png", full_page=True)

        # The list, with its state and last day; keyboard users skip to the content first.
        await page.get_by_role("link", name="Webhooks", exact=True).click()
        await expect(page.get_by_role("row").filter(has_text=receiver.url)).to_contain_text(
            "active"
        )
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
        await page.screenshot(path=shots / "webhooks.png", full_page=True)


async def test_what_the_portal_refuses(
    start_env: StartEnv,  # noqa: F811
    receivers: Any,  # noqa: F811
) -> None:
    from playwright.async_api import expect

    env = await start_env(**SETTINGS)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    receiver = await receivers()
    # Another account, with a webhook and a delivery of its own.
    other = (await env.api.post("/api/accounts", json={"name": "Other"}, headers=admin)).json()
    theirs = {**admin, "X-Account-Id": other["id"]}
    hook = {"url": receiver.url, "events": "*", "secret": "s3cret-s3cret"}
    their_webhook = (await env.api.post("/api/webhooks/manage", json=hook, headers=theirs)).json()[
        "id"
    ]
    await env.ingest("email.opened", email_id="msg_theirs", account_id=other["id"])
    await receiver.wait_for(1)
    [their_delivery] = await eventually(lambda: delivery_ids(env, their_webhook, theirs))
    mine = await env.webhook(receiver.url)

    clock = Skewed()
    app = create_app(env.config, redis=env.redis, clock=clock)
    async with served(app) as base, chromium() as browser:
        link = await portal_link(base, API_KEY, "acc_default")
        page = await browser.new_page()
        await page.goto(link)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")

        # Another account's ids answer 404, under its webhook or under ours.
        for path in (
            f"/portal/webhooks/{their_webhook}/deliveries/{their_delivery}",
            f"/portal/webhooks/{mine}/deliveries/{their_delivery}",
            f"/portal/webhooks/{their_webhook}",
        ):
            response = await page.goto(base + path)
            assert response is not None
            assert response.status == 404, path
            await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")

        # A form whose CSRF token was taken out is refused, and changes nothing.
        await page.goto(base + "/portal/webhooks/new")
        await page.get_by_label("Endpoint URL").fill(receiver.url + "?csrf")
        await page.locator("main input[name=csrf]").evaluate("input => input.remove()")
        async with page.expect_response(re.compile(r"/portal/webhooks$")) as posted:
            await page.get_by_role("button", name="Add webhook").click()
        assert (await posted.value).status == 403
        await expect(page.get_by_role("heading", level=1)).to_have_text("Form refused")
        await page.goto(base + "/portal/")
        await expect(page.get_by_text(receiver.url + "?csrf")).to_have_count(0)

        # The link that opened this session is spent.
        fresh = await browser.new_page()
        response = await fresh.goto(link)
        assert response is not None
        assert response.status == 403
        await expect(fresh.get_by_role("main")).to_contain_text("used already")

        # A link past its ten minutes is refused.
        late = await portal_link(base, API_KEY, "acc_default")
        clock.skew = timedelta(minutes=11)
        response = await fresh.goto(late)
        assert response is not None
        assert response.status == 403
        await expect(fresh.get_by_role("main")).to_contain_text("expired")
