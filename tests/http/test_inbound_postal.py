"""Postal, through HTTP: signed as Postal signs, stored, read back from the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import fakeredis
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from config import Config
from service.app import create_app
from service.storage import keys
from tests import FIXTURES
from tests.conftest import API_KEY, FIXED_NOW, MakeClient, serve
from tests.http.test_inbound import assert_refused, events, stored
from tests.signers import PostalSigner

pytestmark = pytest.mark.anyio

SAMPLES = FIXTURES / "providers" / "postal"
SIGNER = PostalSigner()
EXPECTED_TYPES = {
    "message_sent.json": "email.delivered",
    "message_delayed.json": "email.deferred",
    "message_delivery_failed.json": "email.bounce",
    "message_delivery_failed_max_attempts.json": "email.bounce",
    "message_held.json": "email.rejected",
    "message_bounced.json": "email.bounce",
    "message_link_clicked.json": "email.click",
    "message_loaded.json": "email.open",
    "domain_dns_error.json": None,
    "send_limit_approaching.json": None,
}


def fresh(name: str, **changes: Any) -> bytes:
    """Sample `name` as Postal would send it now (its `timestamp` at FIXED_NOW)."""
    body = json.loads((SAMPLES / name).read_text())
    body.update({"timestamp": FIXED_NOW.timestamp(), **changes})
    return json.dumps(body).encode()


@pytest.fixture
async def client(make_client: MakeClient, make_config: Callable[..., Config]) -> httpx.AsyncClient:
    return await make_client(make_config(provider_secrets={"postal": SIGNER.public_key}))


class TestPostal:
    @pytest.mark.parametrize("name", sorted(EXPECTED_TYPES))
    async def test_each_sample(
        self, client: httpx.AsyncClient, fake_redis: Redis, name: str
    ) -> None:
        body = fresh(name)
        response = await client.post(
            "/api/webhooks/postal", content=body, headers=SIGNER.headers(body)
        )
        assert response.json() == {"received": True}
        found = await events(client)
        expected = EXPECTED_TYPES[name]
        if expected is None:
            assert found == []
            event_name = json.loads(body)["event"]
            assert (
                await fake_redis.hget(keys.INBOUND_COUNTS, f"postal:ignored:{event_name}") == b"1"
            )
            return
        [event] = found
        assert (event["provider"], event["type"]) == ("postal", expected)
        assert event["provider_event_id"] == json.loads(body)["uuid"]
        assert event["metadata"] == {"tags": ["welcome"]}

    async def test_the_click_as_stored(self, client: httpx.AsyncClient) -> None:
        body = fresh("message_link_clicked.json")
        response = await client.post("/api/webhooks", content=body, headers=SIGNER.headers(body))
        assert response.is_success
        [event] = await events(client)
        assert {k: v for k, v in event.items() if k != "id"} == {
            "type": "email.click",
            "email_id": "5817a64332f44_4ec93ff59e79d154565eb@app34.mail",
            "occurred_at": "2026-03-03T10:00:00Z",  # no time of its own: the request's
            "provider": "postal",
            "recipient": "test@example.com",
            "provider_event_id": "820b47a4-4dfd-42e4-ae6a-1e5bed5a3306",
            "click": {"url": "https://atech.media"},
            "metadata": {"tags": ["welcome"]},
            "user_agent": (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_6) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/54.0.2840.98 Safari/537.36"
            ),
            "account_id": "acc_default",  # single-account mode: API_KEYS' account
        }

    async def test_retries_are_stored_once(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body = fresh("message_sent.json")
        for _ in range(3):  # Postal retries the same body, uuid and all
            response = await client.post(
                "/api/webhooks/postal", content=body, headers=SIGNER.headers(body)
            )
            assert response.is_success
        assert await stored(fake_redis) == 1

    @pytest.mark.parametrize(
        "make_headers",
        [
            pytest.param(lambda body: SIGNER.headers(body + b"\n"), id="signed-other-body"),
            pytest.param(lambda body: PostalSigner().headers(body), id="other-key"),
            pytest.param(lambda body: {"content-type": "application/json"}, id="unsigned"),
            pytest.param(
                lambda body: {**SIGNER.headers(body), "x-postal-signature-256": "AAAA"},
                id="bad-256-good-sha1",
            ),
        ],
    )
    async def test_refused(
        self,
        client: httpx.AsyncClient,
        fake_redis: Redis,
        make_headers: Callable[[bytes], dict[str, str]],
    ) -> None:
        body = fresh("message_sent.json")
        response = await client.post(
            "/api/webhooks/postal", content=body, headers=make_headers(body)
        )
        assert_refused(response)
        assert await stored(fake_redis) == 0

    async def test_a_tampered_body(self, client: httpx.AsyncClient, fake_redis: Redis) -> None:
        body = fresh("message_delivery_failed.json")
        headers = SIGNER.headers(body)
        tampered = body.replace(b"HardFail", b"Sent").replace(
            b"MessageDeliveryFailed", b"MessageSent"
        )
        assert_refused(await client.post("/api/webhooks/postal", content=tampered, headers=headers))
        assert await stored(fake_redis) == 0

    async def test_a_stale_body(self, client: httpx.AsyncClient, fake_redis: Redis) -> None:
        stale = (FIXED_NOW - timedelta(hours=12, seconds=1)).timestamp()
        body = fresh("message_sent.json", timestamp=stale)
        response = await client.post(
            "/api/webhooks/postal", content=body, headers=SIGNER.headers(body)
        )
        assert_refused(response)
        assert "too old" in response.json()["error"]["message"]
        assert await stored(fake_redis) == 0

    async def test_older_postal_signs_with_sha1_only(self, client: httpx.AsyncClient) -> None:
        body = fresh("message_loaded.json")
        headers = SIGNER.headers(body, sha256=False)
        assert (await client.post("/api/webhooks", content=body, headers=headers)).is_success
        assert [e["type"] for e in await events(client)] == ["email.open"]

    async def test_without_its_key_names_the_variable(
        self, make_client: MakeClient, make_config: Callable[..., Config], fake_redis: Redis
    ) -> None:
        client = await make_client(make_config())
        body = fresh("message_sent.json")
        response = await client.post(
            "/api/webhooks/postal", content=body, headers=SIGNER.headers(body)
        )
        assert_refused(response)
        assert "POSTAL_WEBHOOK_PUBLIC_KEY" in response.json()["error"]["message"]
        assert await stored(fake_redis) == 0


SIGNED_BODIES = [fresh(name) for name in sorted(EXPECTED_TYPES)]


@st.composite
def postal_requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """Arbitrary bytes, JSON and Postal's samples, mangled or not, signed (before or after the
    mangling) or with arbitrary signature headers."""
    body = draw(
        st.binary(max_size=300)
        | st.sampled_from(SIGNED_BODIES)
        | st.tuples(
            st.sampled_from(SIGNED_BODIES), st.integers(0, 1500), st.binary(max_size=8)
        ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :])
        | st.dictionaries(
            st.sampled_from(["event", "timestamp", "uuid", "payload"]),
            st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
        ).map(lambda d: json.dumps(d).encode())
    )
    headers = draw(
        st.sampled_from(["signed", "arbitrary"]).map(
            lambda how: SIGNER.headers(body) if how == "signed" else {}
        )
    )
    headers.update(
        draw(
            st.dictionaries(
                st.sampled_from(["x-postal-signature", "x-postal-signature-256", "content-type"]),
                st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
                max_size=2,
            )
        )
    )
    path = draw(st.sampled_from(["/api/webhooks/postal", "/api/webhooks"]))
    return path, body, headers


class TestArbitraryInput:
    def test_never_a_500(self) -> None:
        config = Config(api_keys=(API_KEY,), provider_secrets={"postal": SIGNER.public_key})

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(postal_requests())
        def check(request: tuple[str, bytes, dict[str, str]]) -> None:
            path, body, headers = request

            async def send() -> httpx.Response:
                redis = fakeredis.aioredis.FakeRedis()
                app = create_app(config, redis=redis, clock=lambda: FIXED_NOW)
                async with serve(app, {}) as client:
                    response = await client.post(path, content=body, headers=headers)
                await redis.aclose()
                return response

            response = anyio.run(send)
            assert response.status_code in (200, 401, 415, 422), response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json()

        check()
