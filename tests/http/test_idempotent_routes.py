"""Every creating POST honours Idempotency-Key: a retry with the same key and body gets the first
answer again and creates nothing more (the mechanism itself: tests/http/test_webhooks.py)."""

from __future__ import annotations

import pytest

from tests.conftest import MakeClient
from tests.http.portal.conftest import admin

pytestmark = pytest.mark.anyio

ADMIN = admin()


async def test_a_portal_link_asked_twice_with_one_key_is_one_link(
    make_client: MakeClient, make_config: object
) -> None:
    config = make_config(  # type: ignore[operator]
        admin_api_keys=(ADMIN["Authorization"].removeprefix("Bearer "),),
        portal_secret="p" * 40,
    )
    client = await make_client(config, auth=False)
    account = (await client.post("/api/accounts", json={"name": "A"}, headers=ADMIN)).json()
    headers = {**ADMIN, "Idempotency-Key": "link-1"}
    path = f"/api/accounts/{account['id']}/portal-links"
    first = await client.post(path, headers=headers)
    again = await client.post(path, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await client.post(path, headers={**ADMIN, "Idempotency-Key": "link-2"})
    assert other.json()["url"] != first.json()["url"]
