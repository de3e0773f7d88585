"""POST /api/accounts/{id}/portal-links: who may ask, and what the link is."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.portal import verify_link
from tests.conftest import API_KEY, FIXED_NOW
from tests.http.portal.conftest import PORTAL_SECRET, Portal, admin

pytestmark = pytest.mark.anyio


class TestIssue:
    async def test_an_admin_key_for_any_account(self, portal: Portal) -> None:
        account = await portal.account()
        response = await portal.api.post(f"/api/accounts/{account}/portal-links", headers=admin())
        assert response.status_code == 201
        body = response.json()
        assert body["expires_at"] == "2026-03-03T10:10:00Z"  # FIXED_NOW + 10 min
        url = urlsplit(body["url"])
        assert (url.scheme, url.netloc, url.path) == ("http", "testserver", "/portal/login")
        [token] = parse_qs(url.query)["token"]
        claims = verify_link(PORTAL_SECRET, token, now=int(FIXED_NOW.timestamp()))
        assert claims.a == account

    async def test_each_link_is_another(self, portal: Portal) -> None:
        account = await portal.account()
        assert await portal.link(account) != await portal.link(account)

    async def test_an_account_key_for_its_own_account_only(self, portal: Portal) -> None:
        mine, theirs = await portal.account("Mine"), await portal.account("Theirs")
        key = (await portal.api.post(f"/api/accounts/{mine}/keys", headers=admin())).json()["key"]
        own = {"Authorization": f"Bearer {key}"}
        assert (
            await portal.api.post(f"/api/accounts/{mine}/portal-links", headers=own)
        ).status_code == 201
        other = await portal.api.post(f"/api/accounts/{theirs}/portal-links", headers=own)
        missing = await portal.api.post("/api/accounts/acc_nothing/portal-links", headers=own)
        assert other.status_code == missing.status_code == 404
        assert other.json()["error"]["code"] == "not_found"

    async def test_api_keys_open_the_default_accounts(self, portal: Portal) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        response = await portal.api.post(
            f"/api/accounts/{DEFAULT_ACCOUNT}/portal-links", headers=headers
        )
        assert response.status_code == 201

    @pytest.mark.parametrize(
        ("headers", "status"),
        [({}, 401), ({"Authorization": "Bearer wrong-key-0123456789"}, 401), (admin(), 404)],
    )
    async def test_refused(self, portal: Portal, headers: dict[str, Any], status: int) -> None:
        response = await portal.api.post("/api/accounts/acc_nothing/portal-links", headers=headers)
        assert response.status_code == status

    async def test_off_without_a_secret(self, make_portal: Any) -> None:
        portal = await make_portal(portal_secret="")
        account = await portal.account()
        response = await portal.api.post(f"/api/accounts/{account}/portal-links", headers=admin())
        assert response.status_code == 501
        assert response.json()["error"]["code"] == "not_enabled"
        assert "PORTAL_SECRET" in response.json()["error"]["message"]
        page = await portal.api.get("/portal/")
        assert page.status_code == 501
        assert "text/html" in page.headers["content-type"]
