"""GET /api/event-types through HTTP: every type, described, with its payload's schema."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from service.core.event_types import EVENT_TYPES
from tests.conftest import MakeClient
from tests.http.test_accounts import ADMIN, bearer
from tests.http.test_webhooks import assert_error

pytestmark = pytest.mark.anyio


async def catalogue(client: httpx.AsyncClient, **headers: str) -> list[dict[str, Any]]:
    response = await client.get("/api/event-types", headers=headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["event_types"]
    return found


async def test_lists_every_type_with_a_description_and_schema(
    client: httpx.AsyncClient,
) -> None:
    found = await catalogue(client)
    types = [t["type"] for t in found]
    assert types[: len(EVENT_TYPES)] == [f"email.{t}" for t in EVENT_TYPES]
    assert {"email.deferred", "email.rejected", "webhook.disabled", "delivery.exhausted"} <= set(
        types
    )
    for entry in found:
        assert set(entry) == {"type", "description", "schema"}
        assert entry["description"]
        jsonschema.Draft202012Validator.check_schema(entry["schema"])


async def test_any_valid_key_and_no_other(make_client: MakeClient, make_config: Any) -> None:
    client = await make_client(make_config(admin_api_keys=(ADMIN,)), auth=False)
    assert_error(await client.get("/api/event-types"), 401, "unauthorized")
    assert_error(
        await client.get("/api/event-types", headers=bearer("wrong-key-0123456789")),
        401,
        "unauthorized",
    )
    admin = await catalogue(client, **bearer(ADMIN))
    account = (await client.post("/api/accounts", json={"name": "A"}, headers=bearer(ADMIN))).json()
    key = (await client.post(f"/api/accounts/{account['id']}/keys", headers=bearer(ADMIN))).json()[
        "key"
    ]
    assert await catalogue(client, **bearer(key)) == admin
