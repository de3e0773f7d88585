"""/api/dead-letters through HTTP on a real Redis: admin keys only; list, inspect, redrive
(one, all, since a time) and delete. (Setting entries aside: tests/storage and tests/worker.)"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service.core.ids import dead_letter_id, event_id
from service.storage import keys
from service.storage.events import EventStore
from service.storage.stream import EventStream
from tests.conftest import MakeClient
from tests.storage.test_events import event

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ADMIN = "admin-key-0123456789abcdef"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


async def set_aside(redis: Redis, *fields: dict[str, Any]) -> list[str]:
    """Append these entries (event() keyword overrides, or raw fields under "raw"), read them
    and set each aside as the worker does: their dead letter ids, oldest first."""
    stream = EventStream(redis)
    await stream.ensure_group()
    store = EventStore(redis, maxlen=10_000, dedup_ttl_seconds=60)
    for n, spec in enumerate(fields):
        if "raw" in spec:
            await redis.xadd(keys.EVENTS_STREAM, spec["raw"])
        else:
            await store.append("sendgrid", [event(n, **spec)])
    read = await stream.read_new("w", count=100, block_ms=10)
    letters = []
    for entry in [*(e for e, _ in read.events), *read.not_events]:
        letter = await stream.dead_letter(
            entry,
            consumer="w",
            reason="failed",
            detail="ValueError: boom",
            at="2026-03-03T10:00:00Z",
        )
        assert letter is not None
        letters.append(dead_letter_id(letter))
    return sorted(letters)


@pytest.fixture
async def admin(make_client: MakeClient, make_config: Any, real_redis: Redis) -> httpx.AsyncClient:
    return await make_client(config=make_config(admin_api_keys=(ADMIN,)), redis=real_redis)


class TestAccess:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/dead-letters"),
            ("GET", "/api/dead-letters/dl_1-0"),
            ("POST", "/api/dead-letters/dl_1-0/redrive"),
            ("POST", "/api/dead-letters/redrive"),
            ("DELETE", "/api/dead-letters/dl_1-0"),
        ],
    )
    async def test_admin_keys_only(self, admin: httpx.AsyncClient, method: str, path: str) -> None:
        assert (await admin.request(method, path)).status_code == 403  # one of API_KEYS
        unauthenticated = {"Authorization": ""}
        assert (await admin.request(method, path, headers=unauthenticated)).status_code == 401


class TestReading:
    async def test_list_newest_first_in_pages(
        self, admin: httpx.AsyncClient, real_redis: Redis
    ) -> None:
        letters = await set_aside(real_redis, {}, {}, {})
        response = await admin.get("/api/dead-letters?limit=2", headers=AS_ADMIN)
        assert response.status_code == 200
        assert [d["id"] for d in response.json()["dead_letters"]] == letters[:0:-1]
        next_page = httpx.URL(response.links["next"]["url"])
        rest = await admin.get(next_page.path, params=next_page.params, headers=AS_ADMIN)
        assert [d["id"] for d in rest.json()["dead_letters"]] == letters[:1]
        assert "link" not in rest.headers
        bad = await admin.get("/api/dead-letters?before=evt_1-0", headers=AS_ADMIN)
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "before"

    async def test_inspect_one_with_its_event_decoded_and_its_fields(
        self, admin: httpx.AsyncClient, real_redis: Redis
    ) -> None:
        [tagged, garbage] = await set_aside(
            real_redis, {"account_id": "acc_x"}, {"raw": {"e": b"\xff{not json"}}
        )
        body = (await admin.get(f"/api/dead-letters/{tagged}", headers=AS_ADMIN)).json()
        assert body["reason"] == "failed"
        assert body["detail"] == "ValueError: boom"
        assert body["dead_lettered_at"] == "2026-03-03T10:00:00Z"
        assert body["deliveries"] == 1
        assert body["account_id"] == "acc_x"
        assert body["event"]["email_id"] == "msg_0"
        assert body["event"]["id"] == body["event_id"]
        assert set(body["fields"]) == {"e", "a"}
        assert body["fields"]["a"] == "acc_x"

        unreadable = (await admin.get(f"/api/dead-letters/{garbage}", headers=AS_ADMIN)).json()
        assert unreadable["fields"] == {"e": "\\xff{not json"}
        assert "event" not in unreadable
        assert "account_id" not in unreadable

        listed = (await admin.get("/api/dead-letters", headers=AS_ADMIN)).json()["dead_letters"]
        assert all("fields" not in d for d in listed)

    @pytest.mark.parametrize("letter", ["dl_1-0", "evt_1-0", "nonsense"])
    async def test_unknown_is_404(self, admin: httpx.AsyncClient, letter: str) -> None:
        for method, path in (
            ("GET", f"/api/dead-letters/{letter}"),
            ("POST", f"/api/dead-letters/{letter}/redrive"),
            ("DELETE", f"/api/dead-letters/{letter}"),
        ):
            response = await admin.request(method, path, headers=AS_ADMIN)
            assert response.status_code == 404, (method, path)
            assert response.json()["error"]["code"] == "not_found"


class TestRedrive:
    async def test_one_becomes_a_new_event_of_the_same_account(
        self, admin: httpx.AsyncClient, real_redis: Redis
    ) -> None:
        [letter] = await set_aside(real_redis, {"account_id": "acc_x"})
        original = (await admin.get(f"/api/dead-letters/{letter}", headers=AS_ADMIN)).json()
        response = await admin.post(f"/api/dead-letters/{letter}/redrive", headers=AS_ADMIN)
        assert response.status_code == 202
        new_id = response.json()["event_id"]
        assert new_id != original["event_id"]
        again = await admin.get(f"/api/events/{new_id}", headers=AS_ADMIN)
        assert again.status_code == 200
        assert again.json()["account_id"] == "acc_x"
        assert again.json()["email_id"] == "msg_0"
        assert (await admin.get(f"/api/dead-letters/{letter}", headers=AS_ADMIN)).status_code == 404
        assert (
            await admin.get(f"/api/events/{original['event_id']}", headers=AS_ADMIN)
        ).status_code == 404

    async def test_all_with_no_body_or_since_a_time(
        self, admin: httpx.AsyncClient, real_redis: Redis
    ) -> None:
        await set_aside(real_redis, {}, {})
        future = await admin.post(
            "/api/dead-letters/redrive", json={"since": "2999-01-01T00:00:00Z"}, headers=AS_ADMIN
        )
        assert (future.status_code, future.json()) == (202, {"redriven": 0})
        past = await admin.post(
            "/api/dead-letters/redrive", json={"since": "2020-01-01T00:00:00Z"}, headers=AS_ADMIN
        )
        assert past.json() == {"redriven": 2}
        # The two redriven events are read (new entries) and set aside again, with a third.
        again = await set_aside(real_redis, {"provider_event_id": "another"})
        assert len(again) == 3
        everything = await admin.post("/api/dead-letters/redrive", headers=AS_ADMIN)
        assert (everything.status_code, everything.json()) == (202, {"redriven": 3})
        assert await real_redis.xlen(keys.DEAD_LETTERS) == 0

    @pytest.mark.parametrize(
        ("body", "status", "field"),
        [
            ({"since": "yesterday"}, 422, "since"),
            ({"until": "2020-01-01T00:00:00Z"}, 422, "until"),
        ],
    )
    async def test_bad_bodies(
        self, admin: httpx.AsyncClient, body: dict[str, str], status: int, field: str
    ) -> None:
        response = await admin.post("/api/dead-letters/redrive", json=body, headers=AS_ADMIN)
        assert response.status_code == status
        assert response.json()["error"]["field"] == field

    async def test_a_body_that_is_not_json_is_415(self, admin: httpx.AsyncClient) -> None:
        response = await admin.post("/api/dead-letters/redrive", content=b"all", headers=AS_ADMIN)
        assert response.status_code == 415

    async def test_a_dead_letter_without_its_entry_is_a_conflict(
        self, admin: httpx.AsyncClient, real_redis: Redis
    ) -> None:
        raw = await real_redis.xadd(keys.DEAD_LETTERS, {"entry": "1-0", "reason": "reclaimed"})
        letter = dead_letter_id(raw.decode())
        response = await admin.post(f"/api/dead-letters/{letter}/redrive", headers=AS_ADMIN)
        assert response.status_code == 409
        assert (await admin.get(f"/api/dead-letters/{letter}", headers=AS_ADMIN)).json()[
            "event_id"
        ] == event_id("1-0")


async def test_delete(admin: httpx.AsyncClient, real_redis: Redis) -> None:
    [letter] = await set_aside(real_redis, {})
    assert (await admin.delete(f"/api/dead-letters/{letter}", headers=AS_ADMIN)).status_code == 204
    assert (await admin.delete(f"/api/dead-letters/{letter}", headers=AS_ADMIN)).status_code == 404
    assert await real_redis.xlen(keys.DEAD_LETTERS) == 0
