"""GET /api/events and /api/events/{id}: filters, newest-first paging, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.models import Bounce, Event
from service.storage import keys
from service.storage.events import EventStore
from tests.conftest import MakeClient

pytestmark = pytest.mark.anyio


def event(n: int, **fields: Any) -> Event:
    values: dict[str, Any] = {
        "type": "email.open",
        "email_id": f"msg_{n % 3}",
        "recipient": f"User{n % 2}@example.com",
        "occurred_at": "2026-03-03T10:00:00Z",
        "provider": "generic",
        "provider_event_id": f"p{n}",
        "account_id": DEFAULT_ACCOUNT,
    }
    values.update(fields)
    return Event(**values)


@pytest.fixture
async def client(make_client: MakeClient, fake_redis: Redis) -> httpx.AsyncClient:
    store = EventStore(fake_redis, maxlen=10_000, dedup_ttl_seconds=3600)
    batch = [event(n) for n in range(10)]
    batch[4] = event(4, type="email.bounce", bounce=Bounce(kind="hard", reason="550"))
    await store.append("generic", batch)
    return await make_client()


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["provider_event_id"] for e in response.json()["events"]]


class TestList:
    async def test_newest_first(self, client: httpx.AsyncClient) -> None:
        assert ids(await client.get("/api/events")) == [f"p{n}" for n in range(9, -1, -1)]

    async def test_paging_with_link(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/api/events", params={"limit": 4})
        assert ids(first) == ["p9", "p8", "p7", "p6"]
        second = await client.get(first.links["next"]["url"])
        assert ids(second) == ["p5", "p4", "p3", "p2"]
        third = await client.get(second.links["next"]["url"])
        assert ids(third) == ["p1", "p0"]
        assert "link" not in third.headers

    @pytest.mark.parametrize("value", ["bounce", "email.bounce", "BOUNCE"])
    async def test_type_filter(self, client: httpx.AsyncClient, value: str) -> None:
        response = await client.get("/api/events", params={"type": value})
        assert ids(response) == ["p4"]
        assert response.json()["events"][0]["bounce"] == {"kind": "hard", "reason": "550"}

    async def test_email_id_filter_with_paging(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/api/events", params={"email_id": "msg_1", "limit": 2})
        assert ids(first) == ["p7", "p4"]
        assert ids(await client.get(first.links["next"]["url"])) == ["p1"]

    async def test_recipient_filter_ignores_case(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/events", params={"recipient": "user1@EXAMPLE.com"})
        assert ids(response) == ["p9", "p7", "p5", "p3", "p1"]

    async def test_combined_filters(self, client: httpx.AsyncClient) -> None:
        params = {"email_id": "msg_0", "recipient": "user0@example.com", "type": "open"}
        assert ids(await client.get("/api/events", params=params)) == ["p6", "p0"]

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"type": "sent"}, "type"),
            ({"limit": "0"}, "limit"),
            ({"limit": "1001"}, "limit"),
            ({"before": "123"}, "before"),
            ({"before": "evt_abc"}, "before"),
            ({"email_id": "x" * 999}, "email_id"),
        ],
    )
    async def test_bad_parameters(
        self, client: httpx.AsyncClient, params: dict[str, str], field: str
    ) -> None:
        response = await client.get("/api/events", params=params)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == field

    async def test_needs_the_api_key(self, make_client: MakeClient) -> None:
        client = await make_client(auth=False)
        assert (await client.get("/api/events")).status_code == 401
        assert (await client.get("/api/events/evt_1-0")).status_code == 401


class TestGet:
    async def test_one_event(self, client: httpx.AsyncClient) -> None:
        listed = (await client.get("/api/events", params={"limit": 1})).json()["events"][0]
        response = await client.get(f"/api/events/{listed['id']}")
        assert response.status_code == 200
        assert response.json() == listed

    @pytest.mark.parametrize(
        "event_id", ["evt_1-0", "nope", "evt_", "evt_1-0-0", "evt_99999999999999999999-0"]
    )
    async def test_missing_is_404(self, client: httpx.AsyncClient, event_id: str) -> None:
        response = await client.get(f"/api/events/{event_id}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


class TestEntriesThatAreNoEvent:
    """Something other than mailhooks wrote to the stream: every read skips the entry."""

    @pytest.mark.parametrize("fields", [{"e": b"garbage"}, {"x": b"1"}, {"e": b'{"type":1}'}])
    async def test_lists_skip_them_and_the_direct_get_is_404(
        self, client: httpx.AsyncClient, fake_redis: Redis, fields: dict[str, bytes]
    ) -> None:
        poison = (await fake_redis.xadd(keys.EVENTS_STREAM, fields)).decode()  # type: ignore[arg-type]
        store = EventStore(fake_redis, maxlen=10_000, dedup_ttl_seconds=3600)
        await store.append("generic", [event(10)])  # a good event after it
        assert ids(await client.get("/api/events"))[:2] == ["p10", "p9"]
        assert len(ids(await client.get("/api/events", params={"limit": 1000}))) == 11
        filtered = await client.get("/api/events", params={"type": "open", "limit": 1000})
        assert len(ids(filtered)) == 10
        by_email = await client.get("/api/events", params={"email_id": "msg_1"})
        assert ids(by_email) == ["p10", "p7", "p4", "p1"]
        missing = await client.get(f"/api/events/evt_{poison}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
