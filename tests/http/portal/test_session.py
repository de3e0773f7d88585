"""Opening the portal by link, its session cookie, signing out, and CSRF on every form."""

from __future__ import annotations

import pytest

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.portal import session_digest
from service.storage import keys
from tests.http.portal.conftest import Portal, admin

pytestmark = pytest.mark.anyio


class TestLogin:
    async def test_a_link_opens_a_session(self, portal: Portal) -> None:
        account = await portal.account("Acme")
        browser = await portal.visitor()
        response = await browser.http.get(await portal.link(account))
        assert response.status_code == 303
        assert response.headers["location"] == "/portal/"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("mh_portal=")
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/portal", "max-age=3600"} <= attributes
        assert "secure" not in attributes  # served over http here
        page = await browser.get("/portal/")
        assert page.status_code == 200
        assert "Acme" in page.text

    async def test_secure_over_https(self, portal: Portal) -> None:
        account = await portal.account()
        link = (await portal.link(account)).replace("http://", "https://")
        response = await (await portal.visitor()).http.get(link)
        assert "secure" in response.headers["set-cookie"].lower()

    async def test_the_session_lasts_portal_session_seconds(self, make_portal: object) -> None:
        portal: Portal = await make_portal(portal_session_seconds=120)  # type: ignore[operator]
        browser = await portal.visitor(await portal.account())
        portal.clock.advance(seconds=119)
        assert (await browser.get("/portal/")).status_code == 200
        portal.clock.advance(seconds=1)
        ended = await browser.get("/portal/")
        assert ended.status_code == 401
        assert "Session ended" in ended.text

    async def test_a_link_is_used_once(self, portal: Portal) -> None:
        link = await portal.link(await portal.account())
        assert (await (await portal.visitor()).http.get(link)).status_code == 303
        again = await (await portal.visitor()).http.get(link)
        assert again.status_code == 403
        assert "used already" in again.text
        assert "set-cookie" not in again.headers

    async def test_an_expired_link_is_refused(self, portal: Portal) -> None:
        link = await portal.link(await portal.account())
        portal.clock.advance(minutes=10)
        response = await (await portal.visitor()).http.get(link)
        assert response.status_code == 403
        assert "expired" in response.text

    @pytest.mark.parametrize("token", ["", "garbage", "a.b"])
    async def test_a_forged_link_is_refused(self, portal: Portal, token: str) -> None:
        response = await (await portal.visitor()).http.get("/portal/login", params={"token": token})
        assert response.status_code == 403
        assert "not valid" in response.text

    async def test_a_deleted_accounts_link_and_session_end(self, portal: Portal) -> None:
        account = await portal.account()
        browser = await portal.visitor(account)
        link = await portal.link(account)
        assert (
            await portal.api.delete(f"/api/accounts/{account}", headers=admin())
        ).status_code == 204
        assert (await browser.get("/portal/")).status_code == 401
        assert (await (await portal.visitor()).http.get(link)).status_code == 403

    async def test_without_a_session(self, portal: Portal) -> None:
        browser = await portal.visitor()
        for path in ("/portal/", "/portal/events", "/portal/webhooks/1"):
            response = await browser.get(path)
            assert response.status_code == 401
            assert "Open the portal again from your dashboard" in response.text
        browser.http.cookies.set("mh_portal", "made-up")
        assert (await browser.get("/portal/")).status_code == 401

    async def test_the_cookie_is_never_stored(self, portal: Portal) -> None:
        browser = await portal.visitor(DEFAULT_ACCOUNT)
        session_id = browser.http.cookies["mh_portal"]
        stored = [key.decode() async for key in portal.redis.scan_iter("mh:portal:*")]
        assert keys.portal_session(session_digest(session_id)) in stored
        assert not any(session_id in key for key in stored)


class TestLogout:
    async def test_signing_out_ends_the_session(self, portal: Portal) -> None:
        browser = await portal.visitor(await portal.account())
        response = await browser.post("/portal/logout")
        assert response.status_code == 200
        assert "Signed out" in response.text
        assert 'mh_portal=""' in response.headers["set-cookie"]
        browser.http.cookies.clear()
        assert (await browser.get("/portal/")).status_code == 401


class TestCsrf:
    async def test_a_form_without_its_token_is_refused(self, portal: Portal) -> None:
        browser = await portal.visitor(await portal.account())
        form = {"url": "https://hooks.example.com/a", "events": "open"}
        refused = await browser.post("/portal/webhooks", {**form, "csrf": None})
        assert refused.status_code == 403
        assert "Form refused" in refused.text
        wrong = await browser.post("/portal/webhooks", {**form, "csrf": "x" * 43})
        assert wrong.status_code == 403
        assert "No webhooks yet" in (await browser.get("/portal/")).text
        assert (await browser.post("/portal/webhooks", form)).status_code == 201

    async def test_another_sessions_token_is_refused(self, portal: Portal) -> None:
        account = await portal.account()
        mine, other = await portal.visitor(account), await portal.visitor(account)
        assert mine.csrf != other.csrf
        response = await mine.post("/portal/logout", {"csrf": other.csrf})
        assert response.status_code == 403

    async def test_only_forms_are_read(self, portal: Portal) -> None:
        browser = await portal.visitor(await portal.account())
        response = await browser.http.post(
            "/portal/webhooks", json={"csrf": browser.csrf, "url": "https://x.example"}
        )
        assert response.status_code == 415
