"""Idempotency-Key on the creating POSTs, through HTTP: replays, conflicts, scoping, and 20
identical requests at once on a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from config import Config
from service.core.idempotency import IdempotencyScope, pending_marker
from service.http import idempotency
from service.storage import keys
from tests.conftest import API_KEY, MakeClient
from tests.http.test_accounts import ADMIN, bearer
from tests.http.test_webhooks import assert_error

pytestmark = pytest.mark.anyio

MANAGE = "/api/webhooks/manage"
BODY = {"url": "https://yourapp.com/hooks", "events": "open"}
OTHER_KEY = "another-api-key-0123456789"


def idem(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


@pytest.fixture
def config(make_config: Any) -> Config:
    config: Config = make_config(api_keys=(API_KEY, OTHER_KEY), admin_api_keys=(ADMIN,))
    return config


@pytest.fixture
async def client(make_client: MakeClient, config: Config) -> httpx.AsyncClient:
    return await make_client(config)


async def webhook_count(client: httpx.AsyncClient) -> int:
    return len((await client.get(MANAGE)).json()["webhooks"])


class TestReplay:
    async def test_without_the_header_every_request_runs(self, client: httpx.AsyncClient) -> None:
        for _ in range(2):
            assert (await client.post(MANAGE, json=BODY)).status_code == 201
        assert await webhook_count(client) == 2

    async def test_the_same_key_and_body_get_the_first_response_again(
        self, client: httpx.AsyncClient
    ) -> None:
        first = await client.post(MANAGE, json=BODY, headers=idem("k1"))
        again = await client.post(MANAGE, json=BODY, headers=idem("k1"))
        assert first.status_code == again.status_code == 201
        assert again.content == first.content
        assert first.json()["secret"].startswith("whsec_")  # shown again to the same caller
        assert again.headers["location"] == first.headers["location"] == f"{MANAGE}/1"
        assert again.headers["content-type"] == "application/json"
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert await webhook_count(client) == 1

    async def test_another_body_with_the_same_key_is_a_409(self, client: httpx.AsyncClient) -> None:
        await client.post(MANAGE, json=BODY, headers=idem("k1"))
        other = await client.post(MANAGE, json={**BODY, "events": "click"}, headers=idem("k1"))
        assert_error(other, 409, "idempotency_key_reused")
        assert await webhook_count(client) == 1

    async def test_scoped_to_the_caller_and_the_path(self, client: httpx.AsyncClient) -> None:
        await client.post(MANAGE, json=BODY, headers=idem("k1"))
        # Another key of the same account: another caller, whose request runs.
        other_caller = await client.post(
            MANAGE, json=BODY, headers=idem("k1", Authorization=f"Bearer {OTHER_KEY}")
        )
        assert other_caller.status_code == 201
        assert "idempotent-replayed" not in other_caller.headers
        assert await webhook_count(client) == 2
        # Another path with the same key runs too.
        test = await client.post(f"{MANAGE}/1/test", json={"type": "open"}, headers=idem("k1"))
        assert test.status_code == 202

    async def test_an_admin_key_is_scoped_to_the_account_it_acts_in(
        self, client: httpx.AsyncClient
    ) -> None:
        account = await client.post("/api/accounts", json={"name": "A"}, headers=bearer(ADMIN))
        acme = account.json()["id"]
        as_admin = bearer(ADMIN, acme)
        first = await client.post(MANAGE, json=BODY, headers={**as_admin, **idem("k1")})
        again = await client.post(MANAGE, json=BODY, headers={**as_admin, **idem("k1")})
        assert again.content == first.content
        default = await client.post(
            MANAGE, json=BODY, headers={**bearer(ADMIN, "acc_default"), **idem("k1")}
        )
        assert default.json()["id"] != first.json()["id"]

    async def test_failures_are_not_kept(self, client: httpx.AsyncClient) -> None:
        bad = await client.post(MANAGE, json={**BODY, "url": "ftp://x"}, headers=idem("k1"))
        assert bad.status_code == 422
        fixed = await client.post(MANAGE, json=BODY, headers=idem("k1"))
        assert fixed.status_code == 201
        assert await webhook_count(client) == 1

    @pytest.mark.parametrize("key", ["", "a" * 256, "has space", "ünïcode"])
    async def test_a_bad_key_is_a_422(self, client: httpx.AsyncClient, key: str) -> None:
        response = await client.post(MANAGE, json=BODY, headers={"Idempotency-Key": key.encode()})
        assert_error(response, 422, "validation_error", "Idempotency-Key")
        assert await webhook_count(client) == 0

    async def test_a_request_still_running_makes_the_same_one_wait_then_409(
        self, client: httpx.AsyncClient, fake_redis: Redis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(idempotency, "WAIT_SECONDS", 0.2)
        scope = IdempotencyScope(
            credential=API_KEY, account="", method="POST", path=MANAGE, key="k1"
        )
        body = httpx.Request("POST", "http://x", json=BODY).content
        record = keys.idempotency(scope.digest)
        await fake_redis.set(record, pending_marker(scope.fingerprint(body)), px=60_000)
        waited = await client.post(MANAGE, content=body, headers={
            "Idempotency-Key": "k1", "Content-Type": "application/json"})  # fmt: skip
        assert_error(waited, 409, "idempotency_in_progress")
        other = await client.post(MANAGE, json={**BODY, "events": "click"}, headers=idem("k1"))
        assert_error(other, 409, "idempotency_key_reused")
        assert await webhook_count(client) == 0

    async def test_responses_are_kept_sealed_for_24_hours(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        created = (await client.post(MANAGE, json=BODY, headers=idem("k1"))).json()
        [record] = [
            k async for k in fake_redis.scan_iter(match=keys.IDEMPOTENCY.split("{")[0] + "*")
        ]
        stored = await fake_redis.get(record)
        assert created["secret"].encode() not in stored
        assert b"yourapp.com" not in stored
        ttl = await fake_redis.pttl(record)
        assert 24 * 3600 * 1000 - 5000 < ttl <= 24 * 3600 * 1000


class TestRoutes:
    async def test_rotation_is_replayed_not_repeated(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        await client.post(MANAGE, json={**BODY, "secret": "first-secret-value"})
        path = f"{MANAGE}/1/secret/rotate"
        first = await client.post(path, json={}, headers=idem("r1"))
        again = await client.post(path, json={}, headers=idem("r1"))
        assert again.json()["secret"] == first.json()["secret"]
        from service.storage.webhooks import WebhookStore

        stored = await WebhookStore(fake_redis).get(1)
        assert stored is not None
        assert stored.secret == first.json()["secret"]
        assert [s for s, _ in stored.previous_secrets] == ["first-secret-value"]

    async def test_account_and_key_creation(self, client: httpx.AsyncClient) -> None:
        admin = {**bearer(ADMIN), **idem("a1")}
        first = await client.post("/api/accounts", json={"name": "Acme"}, headers=admin)
        again = await client.post("/api/accounts", json={"name": "Acme"}, headers=admin)
        assert again.json() == first.json()
        listed = (await client.get("/api/accounts", headers=bearer(ADMIN))).json()["accounts"]
        assert len([a for a in listed if a["name"] == "Acme"]) == 1
        keys_path = f"/api/accounts/{first.json()['id']}/keys"
        key = await client.post(keys_path, headers=admin)
        key_again = await client.post(keys_path, headers=admin)
        assert key_again.json() == key.json()
        assert key_again.status_code == 201
        listed_keys = (await client.get(keys_path, headers=bearer(ADMIN))).json()["keys"]
        assert len(listed_keys) == 1
        # The replayed key is the one that works.
        own = await client.get(MANAGE, headers=bearer(key_again.json()["key"]))
        assert own.status_code == 200

    async def test_test_events_and_email_registrations(self, client: httpx.AsyncClient) -> None:
        await client.post(MANAGE, json=BODY)
        test = f"{MANAGE}/1/test"
        first = await client.post(test, json={"type": "open"}, headers=idem("t1"))
        again = await client.post(test, json={"type": "open"}, headers=idem("t1"))
        assert again.json()["id"] == first.json()["id"]
        deliveries = (await client.get(f"{MANAGE}/1/deliveries")).json()["deliveries"]
        assert len(deliveries) == 1
        emails = {"email_ids": ["msg_1"]}
        registered = await client.post("/api/emails", json=emails, headers=idem("e1"))
        assert (await client.post("/api/emails", json=emails, headers=idem("e1"))).content == (
            registered.content
        )


@pytest.mark.redis
class TestConcurrency:
    async def test_twenty_identical_requests_at_once_make_one_webhook(
        self, make_client: MakeClient, config: Config, real_redis: Redis
    ) -> None:
        client = await make_client(config, redis=real_redis)
        responses = await asyncio.gather(
            *(client.post(MANAGE, json=BODY, headers=idem("same")) for _ in range(20))
        )
        assert {r.status_code for r in responses} == {201}
        assert len({r.content for r in responses}) == 1  # one id, one secret
        assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
        assert await webhook_count(client) == 1
        assert len(await real_redis.zrange(keys.account_webhooks("acc_default"), 0, -1)) == 1
