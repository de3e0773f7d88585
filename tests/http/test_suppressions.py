"""Suppression lists through HTTP: filled by provider events, kept by hand, one per account."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from config import Config
from tests.conftest import MakeClient
from tests.signers import generic_headers

pytestmark = pytest.mark.anyio

ADMIN = "admin-key-0123456789abcdef"


@pytest.fixture
def config(make_config: Any) -> Config:
    made: Config = make_config(admin_api_keys=(ADMIN,), allow_unsigned_inbound=True)
    return made


@pytest.fixture
async def api(make_client: MakeClient, config: Config) -> httpx.AsyncClient:
    return await make_client(config)


async def bounce(api: httpx.AsyncClient, recipient: str, kind: str, **extra: Any) -> None:
    body = {
        "type": "email.bounced",
        "email_id": f"msg_{recipient}_{kind}",
        "recipient": recipient,
        "bounce": {"kind": kind, "reason": "550 5.1.1 user unknown"},
        **extra,
    }
    raw = json.dumps(body).encode()
    response = await api.post("/api/webhooks", content=raw, headers=generic_headers(raw))
    assert response.json() == {"received": True}, response.text


class TestFromProviders:
    async def test_a_hard_bounce_suppresses(self, api: httpx.AsyncClient) -> None:
        await bounce(api, "Gone@Example.com", "hard")
        [event] = (await api.get("/api/events")).json()["events"]
        found = await api.get("/api/suppressions/gone@example.com")
        assert found.status_code == 200
        assert found.json() == {
            "email": "gone@example.com",
            "reason": "hard_bounce",
            "event_id": event["id"],
            "created_at": found.json()["created_at"],
        }

    @pytest.mark.parametrize("kind", ["soft", "undetermined"])
    async def test_soft_bounces_do_not_even_repeated(
        self, api: httpx.AsyncClient, kind: str
    ) -> None:
        for n in range(5):
            await bounce(api, "full@example.com", kind, email_id=f"msg_{n}")
        assert (await api.get("/api/suppressions/full@example.com")).status_code == 404

    async def test_a_complaint_suppresses(self, api: httpx.AsyncClient) -> None:
        raw = json.dumps(
            {"type": "email.complained", "email_id": "m1", "recipient": "angry@example.com"}
        ).encode()
        await api.post("/api/webhooks", content=raw, headers=generic_headers(raw))
        found = await api.get("/api/suppressions/angry@example.com")
        assert found.json()["reason"] == "complaint"


class TestByHand:
    async def test_add_check_lift(self, api: httpx.AsyncClient) -> None:
        added = await api.post("/api/suppressions", json={"email": " Alex@Example.com "})
        assert added.status_code == 201
        assert added.headers["location"] == "/api/suppressions/alex@example.com"
        assert added.json() == {
            "email": "alex@example.com",
            "reason": "manual",
            "event_id": None,
            "created_at": "2026-03-03T10:00:00Z",
        }
        for spelled in ("alex@example.com", "ALEX@EXAMPLE.COM", "Alex%40Example.com"):
            found = await api.get(f"/api/suppressions/{spelled}")
            assert found.status_code == 200
            assert found.json() == added.json()
        again = await api.post(
            "/api/suppressions", json={"email": "alex@example.com", "reason": "complaint"}
        )
        assert again.status_code == 200
        assert again.json() == added.json()  # the entry it had
        assert (await api.delete("/api/suppressions/ALEX@example.com")).status_code == 204
        assert (await api.delete("/api/suppressions/alex@example.com")).status_code == 404
        missing = await api.get("/api/suppressions/alex@example.com")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"

    async def test_an_imported_reason(self, api: httpx.AsyncClient) -> None:
        added = await api.post(
            "/api/suppressions", json={"email": "a@example.com", "reason": "unsubscribe"}
        )
        assert added.json()["reason"] == "unsubscribe"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"email": "not-an-address"}, "email"),
            ({"email": "a@example.com", "reason": "bored"}, "reason"),
            ({}, "email"),
            ({"email": "a@example.com", "note": "x"}, "note"),
        ],
    )
    async def test_refused(self, api: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
        response = await api.post("/api/suppressions", json=body)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == field

    async def test_a_path_that_is_no_address(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/api/suppressions/nobody")
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "email"

    async def test_listing_pages_by_address_and_filters_by_reason(
        self, api: httpx.AsyncClient
    ) -> None:
        for n, reason in enumerate(["manual", "unsubscribe", "manual", "complaint", "manual"]):
            await api.post(
                "/api/suppressions", json={"email": f"u{n}@example.com", "reason": reason}
            )
        seen: list[str] = []
        url: str | None = "/api/suppressions?limit=2"
        while url:
            response = await api.get(url)
            assert response.status_code == 200
            seen += [s["email"] for s in response.json()["suppressions"]]
            url = response.links.get("next", {}).get("url")
        assert seen == [f"u{n}@example.com" for n in range(5)]
        manual = await api.get("/api/suppressions", params={"reason": "manual"})
        assert [s["email"] for s in manual.json()["suppressions"]] == [
            "u0@example.com",
            "u2@example.com",
            "u4@example.com",
        ]
        bad = await api.get("/api/suppressions", params={"reason": "soft_bounce"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "reason"


class TestAccounts:
    async def test_another_accounts_list_is_invisible(self, api: httpx.AsyncClient) -> None:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        keys = []
        ids = []
        for name in ("Acme", "Globex"):
            account = (await api.post("/api/accounts", json={"name": name}, headers=admin)).json()
            key = (await api.post(f"/api/accounts/{account['id']}/keys", headers=admin)).json()
            ids.append(account["id"])
            keys.append({"Authorization": f"Bearer {key['key']}"})
        acme, globex = keys
        await api.post("/api/suppressions", json={"email": "a@example.com"}, headers=acme)
        await bounce(api, "b@example.com", "hard", account_id=ids[0])
        mine = await api.get("/api/suppressions", headers=acme)
        assert [s["email"] for s in mine.json()["suppressions"]] == [
            "a@example.com",
            "b@example.com",
        ]
        assert (await api.get("/api/suppressions", headers=globex)).json() == {"suppressions": []}
        for address in ("a@example.com", "b@example.com"):
            assert (
                await api.get(f"/api/suppressions/{address}", headers=globex)
            ).status_code == 404
            lifted = await api.delete(f"/api/suppressions/{address}", headers=globex)
            assert lifted.status_code == 404
        # ... and the default account (API_KEYS) sees none of Acme's either.
        assert (await api.get("/api/suppressions")).json() == {"suppressions": []}
        # An admin acts in an account with X-Account-Id, and only then.
        as_admin = await api.get("/api/suppressions", headers={**admin, "X-Account-Id": ids[0]})
        assert len(as_admin.json()["suppressions"]) == 2
        assert (await api.get("/api/suppressions", headers=admin)).status_code == 400

    async def test_needs_a_key(self, make_client: MakeClient, config: Config) -> None:
        anonymous = await make_client(config, auth=False)
        assert (await anonymous.get("/api/suppressions/a@example.com")).status_code == 401
