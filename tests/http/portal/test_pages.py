"""The portal's pages in process: what each shows and changes, through the API's own
functions, scoped to the session's account; the headers and markup of every page."""

from __future__ import annotations

import re

import pytest

from service.core.ids import delivery_id, entry_id, epoch_ms
from service.core.outcome import Verdict
from service.storage.deliveries import DeliveryStore
from service.storage.webhooks import WebhookStore
from tests.conftest import FIXED_NOW
from tests.http.portal.conftest import Portal, admin

pytestmark = pytest.mark.anyio


async def webhooks_of(portal: Portal, account: str) -> list[dict[str, object]]:
    response = await portal.api.get(
        "/api/webhooks/manage", headers={**admin(), "X-Account-Id": account}
    )
    found: list[dict[str, object]] = response.json()["webhooks"]
    return found


async def finished(portal: Portal, webhook_id: int, verdict: Verdict, at_ms: int, n: int) -> str:
    """A delivery made at `at_ms` and finished with `verdict`, straight into the store."""
    store = DeliveryStore(portal.redis)
    id_ = delivery_id(f"{at_ms}-{n}", webhook_id)
    await store.claim(
        delivery_id=id_, webhook_id=webhook_id, event_id=f"evt_{at_ms}-{n}",
        event_type="email.open", owner="t", now_ms=at_ms, lease_ms=1000,
    )  # fmt: skip
    found = await store.get(id_)
    assert found is not None
    await store.record(
        found, owner="t", now_ms=at_ms, verdict=verdict, status_code=500, error="http_status",
        attempt_json=b'{"number":1,"at":"2026-03-03T09:00:00Z","latency_ms":12,'
        b'"status_code":500,"error":"http_status","response":"boom"}',
        disable_after_ms=10**12, retention_count=100, retention_seconds=10**6,
    )  # fmt: skip
    return id_


class TestWebhooks:
    async def test_create_with_a_generated_secret_shown_once(self, portal: Portal) -> None:
        account = await portal.account()
        browser = await portal.visitor(account)
        form = {"url": "https://hooks.example.com/a", "events": ["open", "bounce"]}
        created = await browser.post("/portal/webhooks", form)
        assert created.status_code == 201
        secret = re.search(r"(whsec_[A-Za-z0-9+/=]+)", created.text)
        assert secret is not None
        [webhook] = await webhooks_of(portal, account)
        assert (webhook["url"], webhook["events"], webhook["active"]) == (
            "https://hooks.example.com/a", "open,bounce", True,
        )  # fmt: skip
        page = await browser.get(f"/portal/webhooks/{webhook['id']}")
        assert secret[1] not in page.text

    async def test_a_chosen_secret_is_not_shown(self, portal: Portal) -> None:
        browser = await portal.visitor(await portal.account())
        form = {"url": "https://hooks.example.com/a", "events": "*", "secret": "my-own-secret"}
        created = await browser.post("/portal/webhooks", form)
        assert created.status_code == 201
        assert "my-own-secret" not in created.text

    @pytest.mark.parametrize(
        ("form", "field", "message"),
        [
            ({"url": "http://10.0.0.5/x", "events": "open"}, "url", "https://"),
            ({"url": "https://hooks.example.com/a"}, "events", "at least one event type"),
            ({"url": "", "events": "open"}, "url", "length"),
            ({"url": "https://h.example/a", "events": "*", "secret": "short"}, "secret", "length"),
        ],
    )
    async def test_a_bad_form_comes_back_saying_why(
        self, portal: Portal, form: dict[str, str], field: str, message: str
    ) -> None:
        browser = await portal.visitor(await portal.account())
        response = await browser.post("/portal/webhooks", form)
        assert response.status_code == 422
        assert message in response.text
        assert f'href="#field-{field}"' in response.text
        assert f'id="field-{field}"' in response.text
        assert form["url"] in response.text  # what was typed stays

    async def test_the_account_limit(self, make_portal: object) -> None:
        portal: Portal = await make_portal(max_webhooks_per_account=1)  # type: ignore[operator]
        account = await portal.account()
        await portal.webhook(account)
        browser = await portal.visitor(account)
        response = await browser.post(
            "/portal/webhooks", {"url": "https://h.example/b", "events": "*"}
        )
        assert response.status_code == 409
        assert "MAX_WEBHOOKS_PER_ACCOUNT" in response.text

    async def test_edit_and_disable_and_enable(self, portal: Portal) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        browser = await portal.visitor(account)
        form = await browser.get(f"/portal/webhooks/{webhook_id}/edit")
        assert 'value="https://hooks.example.com/in"' in form.text
        saved = await browser.post(
            f"/portal/webhooks/{webhook_id}",
            {"url": "https://new.example.com/x", "events": ["click"]},
        )
        assert saved.status_code == 303
        assert saved.headers["location"] == f"/portal/webhooks/{webhook_id}?done=saved"
        disabled = await browser.post(f"/portal/webhooks/{webhook_id}/active", {"active": "false"})
        assert disabled.headers["location"].endswith("done=disabled")
        [webhook] = await webhooks_of(portal, account)
        assert (webhook["url"], webhook["events"], webhook["active"]) == (
            "https://new.example.com/x", "click", False,
        )  # fmt: skip
        page = await browser.get(disabled.headers["location"])
        assert "Webhook disabled" in page.text
        await browser.post(f"/portal/webhooks/{webhook_id}/active", {"active": "true"})
        assert (await webhooks_of(portal, account))[0]["active"] is True

    async def test_the_form_offers_operational_events_and_keeps_them(self, portal: Portal) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        headers = {**admin(), "X-Account-Id": account}
        path = f"/api/webhooks/manage/{webhook_id}"
        await portal.api.patch(path, json={"events": "open,webhook.disabled"}, headers=headers)
        browser = await portal.visitor(account)
        form = (await browser.get(f"/portal/webhooks/{webhook_id}/edit")).text
        assert 'value="webhook.disabled" checked' in form
        assert 'value="delivery.exhausted">' in form
        saved = await browser.post(
            f"/portal/webhooks/{webhook_id}",
            {"url": "https://hooks.example.com/in", "events": ["open", "webhook.disabled"]},
        )
        assert saved.status_code == 303
        [webhook] = await webhooks_of(portal, account)
        assert webhook["events"] == "open,webhook.disabled"

    async def test_list_shows_each_webhooks_state_and_last_day(self, portal: Portal) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        now = epoch_ms(FIXED_NOW)
        await finished(portal, webhook_id, Verdict.SUCCEEDED, now - 1000, 1)
        await finished(portal, webhook_id, Verdict.FAILED, now - 2000, 2)
        await finished(portal, webhook_id, Verdict.FAILED, now - 2 * 86_400_000, 3)  # too old
        page = await (await portal.visitor(account)).get("/portal/")
        assert "https://hooks.example.com/in" in page.text
        assert "1 succeeded" in page.text
        assert "1 failed" in page.text
        assert "active" in page.text

    async def test_the_chart_counts_the_last_24_hours(self, portal: Portal) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        now = epoch_ms(FIXED_NOW)
        for n in range(3):
            await finished(portal, webhook_id, Verdict.SUCCEEDED, now - 3_600_000, n)
        await finished(portal, webhook_id, Verdict.FAILED, now, 9)
        page = await (await portal.visitor(account)).get(f"/portal/webhooks/{webhook_id}")
        assert "Last 24 hours: 3 succeeded, 1 failed" in page.text
        assert page.text.count('<rect class="ok"') == 1
        assert page.text.count('<rect class="fail"') == 1
        assert "09:00 UTC: 3 succeeded, 0 failed" in page.text
        assert "10:00 UTC: 0 succeeded, 1 failed" in page.text

    async def test_deliveries_filtered_and_paged(self, portal: Portal) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        now = epoch_ms(FIXED_NOW)
        failed = [
            await finished(portal, webhook_id, Verdict.FAILED, now - n, n) for n in range(1, 31)
        ]
        ok = await finished(portal, webhook_id, Verdict.SUCCEEDED, now, 99)
        browser = await portal.visitor(account)
        first = await browser.get(f"/portal/webhooks/{webhook_id}", status="failed")
        assert ok not in first.text
        assert all(id_ in first.text for id_ in failed[:25])
        older = re.search(r'href="([^"]+before=[^"]+)"', first.text)
        assert older is not None
        second = await browser.get(older[1].replace("&amp;", "&"))
        assert all(id_ in second.text for id_ in failed[25:])
        assert failed[0] not in second.text
        every = await browser.get(f"/portal/webhooks/{webhook_id}")
        assert ok in every.text
        bad = await browser.get(f"/portal/webhooks/{webhook_id}", status="lost")
        assert bad.status_code == 422

    async def test_send_test_and_recover(self, portal: Portal) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        browser = await portal.visitor(account)
        sent = await browser.post(f"/portal/webhooks/{webhook_id}/test", {"type": "bounce"})
        assert sent.status_code == 303
        location = sent.headers["location"]
        assert re.fullmatch(
            rf"/portal/webhooks/{webhook_id}/deliveries/dlv_test_\w+_{webhook_id}\?done=test",
            location,
        )
        page = await browser.get(location)
        assert "email.bounce" in page.text
        assert "Test event sent" in page.text
        failed = await finished(portal, webhook_id, Verdict.FAILED, epoch_ms(FIXED_NOW) - 1000, 1)
        recovered = await browser.post(
            f"/portal/webhooks/{webhook_id}/recover", {"since": "2026-03-03T09:00"}
        )
        assert recovered.headers["location"].endswith("done=recovered&requeued=1")
        assert "queued again: 1" in (await browser.get(recovered.headers["location"])).text
        assert (await DeliveryStore(portal.redis).get(failed)).status == "pending"  # type: ignore[union-attr]
        bad = await browser.post(f"/portal/webhooks/{webhook_id}/recover", {"since": "yesterday"})
        assert bad.status_code == 422


class TestDeliveries:
    async def test_rotate_the_secret_shown_once(self, portal: Portal) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        before = await WebhookStore(portal.redis).get(webhook_id)
        browser = await portal.visitor(account)
        page = await browser.get(f"/portal/webhooks/{webhook_id}")
        assert f"/portal/webhooks/{webhook_id}/secret/rotate" in page.text
        rotated = await browser.post(
            f"/portal/webhooks/{webhook_id}/secret/rotate", {"grace": "86400"}
        )
        assert rotated.status_code == 200
        after = await WebhookStore(portal.redis).get(webhook_id)
        assert before is not None
        assert after is not None
        assert after.secret != before.secret
        assert after.secret in rotated.text  # shown this once
        assert [old for old, _ in after.previous_secrets] == [before.secret]
        assert "also signs" in rotated.text
        assert after.secret not in (await browser.get(f"/portal/webhooks/{webhook_id}")).text
        refused = await browser.post(
            f"/portal/webhooks/{webhook_id}/secret/rotate", {"grace": "12"}
        )
        assert refused.status_code == 422
        no_token = await browser.post(
            f"/portal/webhooks/{webhook_id}/secret/rotate", {"grace": "0", "csrf": None}
        )
        assert no_token.status_code == 403

    async def test_attempts_and_retry(self, portal: Portal) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        id_ = await finished(portal, webhook_id, Verdict.FAILED, epoch_ms(FIXED_NOW), 1)
        browser = await portal.visitor(account)
        page = await browser.get(f"/portal/webhooks/{webhook_id}/deliveries/{id_}")
        assert page.status_code == 200
        for shown in ("12 ms", "500", "boom", "http_status", "failed"):
            assert shown in page.text
        retried = await browser.post(f"/portal/webhooks/{webhook_id}/deliveries/{id_}/retry")
        assert retried.status_code == 303
        assert (await DeliveryStore(portal.redis).get(id_)).status == "pending"  # type: ignore[union-attr]
        again = await browser.post(f"/portal/webhooks/{webhook_id}/deliveries/{id_}/retry")
        assert again.status_code == 409  # the retry holds it

    async def test_another_accounts_ids_are_not_found(self, portal: Portal) -> None:
        mine, theirs = await portal.account("Mine"), await portal.account("Theirs")
        my_webhook, their_webhook = await portal.webhook(mine), await portal.webhook(theirs)
        their_delivery = await finished(portal, their_webhook, Verdict.FAILED, 1000, 1)
        browser = await portal.visitor(mine)
        for path in (
            f"/portal/webhooks/{their_webhook}",
            f"/portal/webhooks/{their_webhook}/edit",
            f"/portal/webhooks/{their_webhook}/deliveries/{their_delivery}",
            f"/portal/webhooks/{my_webhook}/deliveries/{their_delivery}",
            "/portal/webhooks/999999",
            "/portal/no-such-page",
        ):
            response = await browser.get(path)
            assert response.status_code == 404, path
            assert "Not found" in response.text
        for path in (
            f"/portal/webhooks/{their_webhook}/active",
            f"/portal/webhooks/{their_webhook}/test",
            f"/portal/webhooks/{their_webhook}/deliveries/{their_delivery}/retry",
        ):
            assert (
                await browser.post(path, {"active": "false", "type": "open"})
            ).status_code == 404
        assert (await webhooks_of(portal, theirs))[0]["active"] is True


class TestEvents:
    async def test_found_by_email_or_recipient_with_their_deliveries(self, portal: Portal) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        other = await portal.account("Other")
        for email, owner in (("msg_1", account), ("msg_2", account), ("msg_1", other)):
            await portal.api.post(
                "/api/webhooks",
                json={"type": "email.opened", "email_id": email, "account_id": owner,
                      "recipient": f"{email}@example.com"},
            )  # fmt: skip
        events = (
            await portal.api.get("/api/events", headers={**admin(), "X-Account-Id": account})
        ).json()["events"]
        msg_1 = next(e for e in events if e["email_id"] == "msg_1")
        entry = entry_id(msg_1["id"])
        assert entry is not None
        store = DeliveryStore(portal.redis)
        await store.claim(
            delivery_id=delivery_id(entry, webhook_id), webhook_id=webhook_id,
            event_id=msg_1["id"], event_type="email.open", owner="t", now_ms=1, lease_ms=1000,
        )  # fmt: skip
        browser = await portal.visitor(account)
        found = await browser.get("/portal/events", email_id="msg_1")
        assert found.text.count("msg_1@example.com") == 1  # not the other account's
        assert "msg_2" not in found.text
        assert (
            f"/portal/webhooks/{webhook_id}/deliveries/{delivery_id(entry, webhook_id)}"
            in found.text
        )
        by_recipient = await browser.get("/portal/events", recipient="MSG_2@example.com")
        assert "msg_2@example.com" in by_recipient.text
        assert "no webhook" in by_recipient.text
        recent = await browser.get("/portal/events")
        assert "msg_1@example.com" in recent.text
        assert "msg_2@example.com" in recent.text
        assert "No event matches" in (await browser.get("/portal/events", email_id="x")).text


class TestEveryPage:
    async def test_security_headers(self, portal: Portal) -> None:
        browser = await portal.visitor(await portal.account())
        for path in ("/portal/", "/portal/static/portal.css", "/portal/nothing", "/portal/login"):
            response = await browser.http.get(path)
            csp = response.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp
            assert "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-frame-options"] == "DENY"
        assert (await browser.get("/portal/")).headers["cache-control"] == "no-store"

    async def test_framed_by_portal_frame_ancestors_only(self, make_portal: object) -> None:
        ancestors = ("https://app.example.com", "'self'")
        portal: Portal = await make_portal(portal_frame_ancestors=ancestors)  # type: ignore[operator]
        response = await (await portal.visitor()).http.get("/portal/")
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors https://app.example.com 'self'" in csp
        assert "x-frame-options" not in response.headers

    async def test_markup_needs_no_inline_script_and_labels_every_field(
        self, portal: Portal
    ) -> None:
        account = await portal.account()
        webhook_id = await portal.webhook(account)
        browser = await portal.visitor(account)
        labelled_total = 0
        for path in (
            "/portal/",
            "/portal/webhooks/new",
            f"/portal/webhooks/{webhook_id}",
            "/portal/events",
        ):
            html = (await browser.get(path)).text
            for landmark in ('<html lang="en">', 'href="#main"', 'id="main"'):
                assert landmark in html
            assert html.count("<h1>") == 1
            assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
            assert not re.search(r"\s(on\w+|style)=", html)
            assert not re.search(r"(src|href)=\"(https?:)?//", html)
            fields = re.findall(r'<(?:input|select)(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', html)
            labelled = set(re.findall(r'<label for="([^"]+)"', html))
            assert set(fields) <= labelled, path
            labelled_total += len(fields)
        assert labelled_total >= 12  # the form's, the actions', the search's
