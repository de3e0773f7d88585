"""POST /api/webhooks and the per-provider URLs, through HTTP, with Redis state checked."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
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
from service.core.clock import system_clock
from service.storage import keys
from service.storage.connection import connect
from service.storage.deliveries import Claim, DeliveryStore
from tests import FIXTURES
from tests.conftest import FIXED_NOW, MakeClient, serve
from tests.http.test_webhooks import assert_error
from tests.signers import (
    FORM,
    INBOUND_SECRET,
    MAILERSEND_SECRET,
    MAILGUN_KEY,
    MANDRILL_KEY,
    MANDRILL_URL,
    RESEND_SECRET,
    SendgridSigner,
    generic_headers,
    mailersend_headers,
    mailgun_body,
    mailgun_legacy_fields,
    mandrill_request,
    multipart,
    resend_headers,
    urlencoded,
)

pytestmark = pytest.mark.anyio


def post_on_fresh_app(
    config: Config, path: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """One request to a new app over a new fake Redis (hypothesis runs each example apart)."""

    async def send() -> httpx.Response:
        redis = fakeredis.aioredis.FakeRedis()
        app = create_app(config, redis=redis, clock=lambda: FIXED_NOW)
        async with serve(app, {}) as client:
            response = await client.post(path, content=body, headers=headers)
        await redis.aclose()
        return response

    return anyio.run(send)


SAMPLES = FIXTURES / "providers"
JSON = {"content-type": "application/json"}
NOW = FIXED_NOW.timestamp()
SEED_EVENT = {
    "type": "email.bounced",
    "email_id": "msg_abc123def456",
    "recipient": "invalid@example.com",
    "timestamp": "2026-03-03T08:15:00Z",
}


def sample(provider: str, name: str) -> Any:
    return json.loads((SAMPLES / provider / name).read_text())


def samples(provider: str) -> dict[str, Any]:
    return {
        path.name: json.loads(path.read_text())
        for path in sorted((SAMPLES / provider).glob("*.json"))
        if "signature" not in path.name
    }


@pytest.fixture
def sendgrid_signer() -> SendgridSigner:
    return SendgridSigner()


@pytest.fixture
def signed_config(
    make_config: Callable[..., Config], sendgrid_signer: SendgridSigner
) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        settings: dict[str, Any] = {
            "provider_secrets": {
                "generic": INBOUND_SECRET,
                "resend": RESEND_SECRET,
                "sendgrid": sendgrid_signer.public_key,
                "mailgun": MAILGUN_KEY,
                "mailersend": MAILERSEND_SECRET,
                "mandrill": MANDRILL_KEY,
            },
            "provider_urls": {"mandrill": MANDRILL_URL},
        }
        settings.update(overrides)
        return make_config(**settings)

    return make


@pytest.fixture
async def client(
    make_client: MakeClient, signed_config: Callable[..., Config]
) -> httpx.AsyncClient:
    return await make_client(signed_config())


async def stored(redis: Redis) -> int:
    return int(await redis.xlen(keys.EVENTS_STREAM))


async def events(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/api/events", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def assert_refused(response: httpx.Response, status: int = 401) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] in ("invalid_signature", "invalid_payload")
    assert "www-authenticate" not in response.headers


class TestGeneric:
    async def test_seed_example_is_received_and_stored(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body = json.dumps(SEED_EVENT).encode()
        response = await client.post("/api/webhooks", content=body, headers=generic_headers(body))
        assert response.status_code == 200
        assert response.json() == {"received": True}
        [event] = await events(client)
        assert event["id"].startswith("evt_")
        assert {k: v for k, v in event.items() if k not in ("id", "provider_event_id")} == {
            "type": "email.bounce",
            "email_id": "msg_abc123def456",
            "recipient": "invalid@example.com",
            "occurred_at": "2026-03-03T08:15:00Z",
            "provider": "generic",
            "account_id": "acc_default",  # single-account mode: API_KEYS' account
        }
        assert (await client.get(f"/api/events/{event['id']}")).json() == event

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"x-webhook-signature": ""},
            {"x-webhook-signature": "0" * 64},
            {"x-webhook-signature": "not-hex"},
            generic_headers(b"{}"),
            generic_headers(json.dumps(SEED_EVENT).encode(), secret="another-secret"),
        ],
    )
    async def test_bad_signatures_store_nothing(
        self, client: httpx.AsyncClient, fake_redis: Redis, headers: dict[str, str]
    ) -> None:
        body = json.dumps(SEED_EVENT).encode()
        assert_refused(await client.post("/api/webhooks", content=body, headers=headers))
        assert await stored(fake_redis) == 0

    async def test_tampered_body_is_refused(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body = json.dumps(SEED_EVENT).encode()
        tampered = body.replace(b"invalid@", b"victim@")
        response = await client.post(
            "/api/webhooks", content=tampered, headers=generic_headers(body)
        )
        assert_refused(response)
        assert await stored(fake_redis) == 0

    async def test_unconfigured_secret_is_refused_unless_unsigned_allowed(
        self, make_client: MakeClient, make_config: Callable[..., Config], fake_redis: Redis
    ) -> None:
        body = json.dumps(SEED_EVENT).encode()
        strict = await make_client(make_config())
        response = await strict.post("/api/webhooks", content=body)
        assert_refused(response)
        assert "INBOUND_SECRET" in response.json()["error"]["message"]
        assert await stored(fake_redis) == 0

        lenient = await make_client(make_config(allow_unsigned_inbound=True))
        assert (await lenient.post("/api/webhooks", content=body, headers=JSON)).status_code == 200
        assert await stored(fake_redis) == 1

    @pytest.mark.parametrize(
        "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"]
    )
    async def test_a_body_that_is_not_json_is_415(
        self, make_client: MakeClient, make_config: Callable[..., Config], fake_redis: Redis,
        content_type: str | None,
    ) -> None:  # fmt: skip
        client = await make_client(make_config(allow_unsigned_inbound=True))
        body = json.dumps(SEED_EVENT).encode()
        headers = {} if content_type is None else {"content-type": content_type}
        response = await client.post("/api/webhooks", content=body, headers=headers)
        assert_error(response, 415, "unsupported_media_type")
        assert await stored(fake_redis) == 0
        with_charset = {"content-type": "application/json; charset=utf-8"}
        ok = await client.post("/api/webhooks", content=body, headers=with_charset)
        assert ok.status_code == 200

    async def test_a_retry_is_stored_once(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body = json.dumps(SEED_EVENT).encode()
        for _ in range(3):
            response = await client.post(
                "/api/webhooks", content=body, headers=generic_headers(body)
            )
            assert response.json() == {"received": True}
        assert await stored(fake_redis) == 1
        counts = await fake_redis.hgetall(keys.INBOUND_COUNTS)
        assert counts == {b"generic:stored": b"1", b"generic:duplicate": b"2"}

    async def test_unknown_type_is_accepted_and_counted_not_stored(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body = json.dumps({**SEED_EVENT, "type": "email.sent"}).encode()
        response = await client.post("/api/webhooks", content=body, headers=generic_headers(body))
        assert response.json() == {"received": True}
        assert await stored(fake_redis) == 0
        assert await fake_redis.hget(keys.INBOUND_COUNTS, "generic:ignored:email.sent") == b"1"

    @pytest.mark.parametrize(
        ("event", "field"),
        [
            ({"type": "email.bounced"}, "email_id"),
            ({"email_id": "m1"}, "type"),
            ({"type": "email.opened", "email_id": 5}, "email_id"),
            ({"type": "email.opened", "email_id": "m1", "timestamp": "yesterday"}, "timestamp"),
        ],
    )
    async def test_invalid_body_is_422_naming_the_field(
        self, client: httpx.AsyncClient, fake_redis: Redis, event: dict[str, Any], field: str
    ) -> None:
        body = json.dumps(event).encode()
        response = await client.post("/api/webhooks", content=body, headers=generic_headers(body))
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
        assert await stored(fake_redis) == 0

    async def test_oversized_body_is_413(
        self, make_client: MakeClient, signed_config: Callable[..., Config], fake_redis: Redis
    ) -> None:
        client = await make_client(signed_config(max_body_bytes=1024))
        body = json.dumps({**SEED_EVENT, "metadata": {"x": "y" * 2000}}).encode()
        response = await client.post("/api/webhooks", content=body, headers=generic_headers(body))
        assert response.status_code == 413
        assert await stored(fake_redis) == 0


class TestResend:
    @pytest.mark.parametrize(
        ("name", "expected_type"),
        [
            ("delivered.json", "email.delivered"),
            ("bounce_hard.json", "email.rejected"),  # a suppressed address: not sent
            ("open.json", "email.open"),
            ("click.json", "email.click"),
            ("complaint.json", "email.complaint"),
            ("delivery_delayed.json", "email.deferred"),
            ("suppressed.json", "email.rejected"),
            ("failed.json", "email.rejected"),
        ],
    )
    async def test_samples(
        self,
        client: httpx.AsyncClient,
        fake_redis: Redis,
        name: str,
        expected_type: str | None,
    ) -> None:
        body = (SAMPLES / "resend" / name).read_bytes()
        headers = resend_headers(body, NOW, msg_id=f"msg_{name}")
        response = await client.post("/api/webhooks", content=body, headers=headers)
        assert response.json() == {"received": True}
        found = await events(client)
        if expected_type is None:
            assert found == []
        else:
            [event] = found
            assert event["type"] == expected_type
            assert event["provider"] == "resend"
            assert event["provider_event_id"] == f"msg_{name}"
            assert event["email_id"] == sample("resend", name)["data"]["email_id"]

    @pytest.mark.parametrize(
        "make_headers",
        [
            pytest.param(lambda body: resend_headers(b"{}", NOW), id="signed-other-body"),
            pytest.param(lambda body: resend_headers(body, NOW - 301), id="expired"),
            pytest.param(lambda body: resend_headers(body, NOW + 301), id="future"),
            pytest.param(
                lambda body: resend_headers(body, NOW, secret="whsec_" + "A" * 43 + "="),
                id="wrong-secret",
            ),
            pytest.param(
                lambda body: {"svix-id": "msg_1", "svix-timestamp": str(int(NOW))},
                id="unsigned",
            ),
            pytest.param(
                lambda body: {**resend_headers(body, NOW), "svix-signature": "v1,not-base64!!"},
                id="malformed",
            ),
        ],
    )
    async def test_forged_tampered_expired(
        self,
        client: httpx.AsyncClient,
        fake_redis: Redis,
        make_headers: Callable[[bytes], dict[str, str]],
    ) -> None:
        body = (SAMPLES / "resend" / "open.json").read_bytes()
        response = await client.post(
            "/api/webhooks/resend", content=body, headers=make_headers(body)
        )
        assert_refused(response)
        assert await stored(fake_redis) == 0

    async def test_retry_with_new_timestamp_is_stored_once(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body = (SAMPLES / "resend" / "open.json").read_bytes()
        for offset in (0, 60, 120):
            headers = resend_headers(body, NOW - offset, msg_id="msg_same")
            assert (await client.post("/api/webhooks", content=body, headers=headers)).is_success
        assert await stored(fake_redis) == 1

    async def test_contact_unsubscribe(self, client: httpx.AsyncClient) -> None:
        payload = sample("resend", "unsubscribe_contact_updated.json")
        payload["data"]["unsubscribed"] = True
        body = json.dumps(payload).encode()
        headers = resend_headers(body, NOW)
        assert (await client.post("/api/webhooks", content=body, headers=headers)).is_success
        [event] = await events(client)
        assert event["type"] == "email.unsubscribe"
        assert event["recipient"] == payload["data"]["email"]


class TestSendgrid:
    async def test_every_sample_in_one_batch(
        self, client: httpx.AsyncClient, fake_redis: Redis, sendgrid_signer: SendgridSigner
    ) -> None:
        # The docs' samples share some sg_event_ids; make them distinct events.
        batch = [
            {**event, "sg_event_id": f"{name}:{event['sg_event_id']}"}
            for name, events_ in samples("sendgrid").items()
            for event in events_
        ]
        body = json.dumps(batch).encode()
        response = await client.post(
            "/api/webhooks", content=body, headers=sendgrid_signer.headers(body, NOW)
        )
        assert response.json() == {"received": True}
        found = await events(client, limit="1000")
        canonical = {"delivered", "bounce", "open", "click", "spamreport", "unsubscribe"}
        canonical |= {"group_unsubscribe", "deferred", "dropped"}
        assert len(found) == sum(1 for e in batch if e["event"] in canonical)
        assert {e["provider_event_id"] for e in found} == {
            e["sg_event_id"] for e in batch if e["event"] in canonical
        }
        counts = await fake_redis.hgetall(keys.INBOUND_COUNTS)
        assert counts[b"sendgrid:ignored:processed"] == b"1"
        assert b"sendgrid:ignored:deferred" not in counts

    async def test_thousand_event_batch_stores_a_thousand(
        self,
        make_client: MakeClient,
        signed_config: Callable[..., Config],
        fake_redis: Redis,
        sendgrid_signer: SendgridSigner,
    ) -> None:
        client = await make_client(signed_config())  # INGEST_TIMEOUT 10 s (tests/conftest.py)
        template = sample("sendgrid", "open.json")[0]
        batch = []
        for n in range(1000):
            event = copy.deepcopy(template)
            event["sg_event_id"] = f"evt-{n}"
            event["email"] = f"user{n}@example.com"
            batch.append(event)
        body = json.dumps(batch).encode()
        headers = sendgrid_signer.headers(body, NOW)
        assert (
            await client.post("/api/webhooks/sendgrid", content=body, headers=headers)
        ).is_success
        assert await stored(fake_redis) == 1000
        # The provider retries the whole batch: nothing new is stored.
        assert (
            await client.post("/api/webhooks/sendgrid", content=body, headers=headers)
        ).is_success
        assert await stored(fake_redis) == 1000

    async def test_mixed_batch_stores_only_known_types(
        self, client: httpx.AsyncClient, fake_redis: Redis, sendgrid_signer: SendgridSigner
    ) -> None:
        batch = sample("sendgrid", "open.json") + sample("sendgrid", "processed.json")
        batch += [{**batch[0], "event": "brand_new_event", "sg_event_id": "new-1"}]
        body = json.dumps(batch).encode()
        headers = sendgrid_signer.headers(body, NOW)
        assert (await client.post("/api/webhooks", content=body, headers=headers)).is_success
        assert [e["type"] for e in await events(client)] == ["email.open"]

    async def test_bad_signature_stores_nothing(
        self, client: httpx.AsyncClient, fake_redis: Redis, sendgrid_signer: SendgridSigner
    ) -> None:
        body = json.dumps(sample("sendgrid", "open.json")).encode()
        headers = sendgrid_signer.headers(body + b" ", NOW)
        assert_refused(await client.post("/api/webhooks", content=body, headers=headers))
        expired = sendgrid_signer.headers(body, NOW - 301)
        assert_refused(await client.post("/api/webhooks", content=body, headers=expired))
        other = SendgridSigner().headers(body, NOW)
        assert_refused(await client.post("/api/webhooks", content=body, headers=other))
        assert await stored(fake_redis) == 0


class TestMailgun:
    @pytest.mark.parametrize(
        ("name", "expected_type"),
        [
            ("delivered.event-data.json", "email.delivered"),
            ("failed_permanent.event-data.json", "email.bounce"),
            ("failed_temporary.event-data.json", "email.deferred"),
            ("opened.event-data.json", "email.open"),
            ("clicked.event-data.json", "email.click"),
            ("unsubscribed.event-data.json", "email.unsubscribe"),
            ("complained.event-data.json", "email.complaint"),
        ],
    )
    async def test_samples(self, client: httpx.AsyncClient, name: str, expected_type: str) -> None:
        body = mailgun_body(sample("mailgun", name), NOW)
        response = await client.post("/api/webhooks", content=body, headers=JSON)
        assert response.json() == {"received": True}
        [event] = await events(client)
        assert event["type"] == expected_type
        assert event["provider"] == "mailgun"

    async def test_retry_with_the_original_signature_hours_later(
        self, make_client: MakeClient, signed_config: Callable[..., Config], fake_redis: Redis
    ) -> None:

        body = mailgun_body(sample("mailgun", "opened.event-data.json"), NOW, token="t" * 50)
        first = await make_client(signed_config())
        assert (await first.post("/api/webhooks/mailgun", content=body, headers=JSON)).is_success
        later = await make_client(signed_config(), clock=lambda: FIXED_NOW + timedelta(hours=8))
        assert (await later.post("/api/webhooks/mailgun", content=body, headers=JSON)).is_success
        assert await stored(fake_redis) == 1

    async def test_reused_token_with_another_event_is_a_replay(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        token = "r" * 50
        first = mailgun_body(sample("mailgun", "opened.event-data.json"), NOW, token=token)
        assert (await client.post("/api/webhooks", content=first, headers=JSON)).is_success
        forged_data = sample("mailgun", "clicked.event-data.json")
        forged = mailgun_body(forged_data, NOW, token=token)
        assert_refused(await client.post("/api/webhooks", content=forged, headers=JSON))
        assert await stored(fake_redis) == 1

    @pytest.mark.parametrize(
        "body",
        [
            mailgun_body({"event": "opened"}, NOW, key="wrong-key"),
            mailgun_body({"event": "opened"}, NOW - 13 * 3600),
            json.dumps({"event-data": {"event": "opened"}, "signature": {}}).encode(),
        ],
    )
    async def test_bad_signatures(
        self, client: httpx.AsyncClient, fake_redis: Redis, body: bytes
    ) -> None:
        assert_refused(await client.post("/api/webhooks/mailgun", content=body, headers=JSON))
        assert await stored(fake_redis) == 0


def form_fields(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Pairs as httpx's `data=` takes them: a list per name (order within a name kept)."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


def legacy(name: str, **changes: str) -> dict[str, Any]:
    """A legacy sample's fields; anymail's leave out fields their test does not need."""
    fields: dict[str, Any] = {"Message-Id": "<legacy@example.com>", **sample("mailgun", name)}
    fields.update(changes)
    return fields


class TestMailgunLegacy:
    @pytest.mark.parametrize(
        ("name", "expected_type"),
        [
            ("legacy/delivered.json", "email.delivered"),
            ("legacy/dropped_bounce.json", "email.rejected"),
            ("legacy/dropped_timed_out.json", "email.bounce"),
            ("legacy/bounced_invalid_mailbox.json", "email.bounce"),
            ("legacy/metadata_key_conflicts.json", "email.click"),
            ("legacy/tags.json", "email.open"),
        ],
    )
    @pytest.mark.parametrize("path", ["/api/webhooks", "/api/webhooks/mailgun"])
    @pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
    async def test_samples_encoded_by_httpx(
        self, client: httpx.AsyncClient, name: str, expected_type: str, path: str, encoding: str
    ) -> None:
        data = form_fields(mailgun_legacy_fields(legacy(name), NOW))
        if encoding == "urlencoded":
            response = await client.post(path, data=data)
        else:  # httpx sends multipart/form-data when there are files
            files = {
                "attachment-1": ("message.eml", b"From: a@example.com\r\n\r\nhi", "message/rfc822")
            }
            response = await client.post(path, data=data, files=files)
        assert response.json() == {"received": True}, response.text
        [event] = await events(client)
        assert (event["type"], event["provider"]) == (expected_type, "mailgun")

    async def test_custom_variables_reach_the_metadata(self, client: httpx.AsyncClient) -> None:
        pairs = mailgun_legacy_fields(
            # The default account's tag, so that the event is routed to the reading key.
            legacy("legacy/metadata_post_fields.json", account_id="acc_default"),
            NOW,
        )
        body, headers = urlencoded(pairs)
        assert (await client.post("/api/webhooks", content=body, headers=headers)).is_success
        [event] = await events(client)
        assert event["metadata"] == {
            "custom1": "value1",
            "custom2": '{"key":"value"}',
            "account_id": "acc_default",
        }
        assert event["account_id"] == "acc_default"

    async def test_a_retry_is_stored_once_and_a_reused_token_is_a_replay(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        pairs = mailgun_legacy_fields(legacy("legacy/delivered.json"), NOW, token="r" * 50)
        body, headers = urlencoded(pairs)
        for _ in range(2):
            response = await client.post("/api/webhooks/mailgun", content=body, headers=headers)
            assert response.is_success
        forged = [(k, "victim@example.com" if k == "recipient" else v) for k, v in pairs]
        body, headers = multipart(forged)
        assert_refused(await client.post("/api/webhooks/mailgun", content=body, headers=headers))
        assert await stored(fake_redis) == 1

    @pytest.mark.parametrize(
        "pairs",
        [
            mailgun_legacy_fields({"event": "opened"}, NOW, key="wrong-key"),
            mailgun_legacy_fields({"event": "opened"}, NOW - 13 * 3600),
            [("event", "opened"), ("timestamp", str(int(NOW))), ("token", "t" * 50)],
        ],
        ids=["wrong-key", "stale", "unsigned"],
    )
    async def test_bad_signatures(
        self, client: httpx.AsyncClient, fake_redis: Redis, pairs: list[tuple[str, str]]
    ) -> None:
        body, headers = urlencoded(pairs)
        assert_refused(await client.post("/api/webhooks/mailgun", content=body, headers=headers))
        assert await stored(fake_redis) == 0

    async def test_a_body_that_is_not_a_form_is_422(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        response = await client.post(
            "/api/webhooks/mailgun", content=b"--b\r\nbroken", headers={"content-type": FORM}
        )
        assert_error(response, 422, "invalid_payload")
        assert await stored(fake_redis) == 0

    async def test_text_is_415(self, client: httpx.AsyncClient, fake_redis: Redis) -> None:
        body, _ = urlencoded(mailgun_legacy_fields(legacy("legacy/tags.json"), NOW))
        headers = {"content-type": "text/plain"}
        response = await client.post("/api/webhooks/mailgun", content=body, headers=headers)
        assert_error(response, 415, "unsupported_media_type")
        assert await stored(fake_redis) == 0


class TestMailerSend:
    async def test_every_sample(self, client: httpx.AsyncClient, fake_redis: Redis) -> None:
        for name, payload in samples("mailersend").items():
            # MailerSend escapes every "/"; the signature covers the bytes as sent.
            body = json.dumps(payload).replace("/", "\\/").encode()
            response = await client.post(
                "/api/webhooks/mailersend", content=body, headers=mailersend_headers(body)
            )
            assert response.json() == {"received": True}, name
        found = await events(client, limit="1000")
        assert {e["provider_event_id"]: e["type"] for e in found} == {
            "63fd1c1fcfbe46145d003a7b": "email.delivered",
            "63fd251d5c00f8e52001fce6": "email.bounce",
            # The v1 soft bounce and spam complaint samples share an id: stored once.
            "62f114f8165fe0d8db0288e5": "email.bounce",
            "63fd21c23f2bdd360e07d6b2": "email.unsubscribe",
            "63fd1e05532bd6cc700a793b": "email.open",
            "63fd1d23afa3c770b00da7d3": "email.click",
            "6aa59d4a531434d718ec48a0": "email.delivered",
            "6892766a5b66e2daf3dc9158": "email.bounce",
            "6892766a5b66e2daf3dc9157": "email.bounce",
            "6892766a5b66e2daf3dc9159": "email.deferred",
            "6892766a5b66e2daf3dc915d": "email.complaint",
            "6892766a5b66e2daf3dc915c": "email.unsubscribe",
            "6aa59dad05e8ec525fe6ef95": "email.open",
            "6aa59db1c8ba039cd6d68435": "email.click",
            "6892766a5b66e2daf3dc915f": "email.rejected",
        }
        counts = await fake_redis.hgetall(keys.INBOUND_COUNTS)
        assert counts[b"mailersend:ignored:activity.sent"] == b"3"
        assert counts[b"mailersend:duplicate"] == b"1"

    async def test_detected_on_the_shared_url(self, client: httpx.AsyncClient) -> None:
        body = json.dumps(sample("mailersend", "v2_opened.json")).encode()
        headers = mailersend_headers(body)
        assert (await client.post("/api/webhooks", content=body, headers=headers)).is_success
        [event] = await events(client)
        assert (event["provider"], event["user_agent"]) == (
            "mailersend",
            "Mozilla/5.0 (via ggpht.com GoogleImageProxy)",
        )

    @pytest.mark.parametrize(
        "make_headers",
        [
            pytest.param(lambda body: mailersend_headers(body + b" "), id="tampered"),
            pytest.param(lambda body: mailersend_headers(body, secret="other"), id="wrong-secret"),
            pytest.param(lambda body: {"content-type": "application/json"}, id="unsigned"),
        ],
    )
    async def test_refused(
        self,
        client: httpx.AsyncClient,
        fake_redis: Redis,
        make_headers: Callable[[bytes], dict[str, str]],
    ) -> None:
        body = json.dumps(sample("mailersend", "v2_delivered.json")).encode()
        response = await client.post(
            "/api/webhooks/mailersend", content=body, headers=make_headers(body)
        )
        assert_refused(response)
        assert await stored(fake_redis) == 0

    async def test_a_replay_is_stored_once(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        # Nothing signed carries a time: de-duplication (DEDUP_TTL_SECONDS) is the guard.
        body = json.dumps(sample("mailersend", "v2_delivered.json")).encode()
        for _ in range(3):
            response = await client.post(
                "/api/webhooks/mailersend", content=body, headers=mailersend_headers(body)
            )
            assert response.is_success
        assert await stored(fake_redis) == 1

    async def test_the_dashboard_ping_is_answered_whoever_signed_it(
        self, make_client: MakeClient, make_config: Callable[..., Config], fake_redis: Redis
    ) -> None:
        client = await make_client(make_config())  # no secret configured at all
        body = (SAMPLES / "mailersend" / "webhook_test.json").read_bytes()
        headers = mailersend_headers(body, secret="a test secret")
        for path in ("/api/webhooks/mailersend", "/api/webhooks"):
            response = await client.post(path, content=body, headers=headers)
            assert response.json() == {"received": True}
        assert await stored(fake_redis) == 0


class TestMandrill:
    async def test_the_test_batch_in_one_request(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        batch = list(samples("mandrill").values())
        body, headers = mandrill_request(batch)
        response = await client.post("/api/webhooks/mandrill", content=body, headers=headers)
        assert response.json() == {"received": True}
        found = await events(client)
        assert sorted(e["type"] for e in found) == sorted(
            [
                "email.deferred", "email.bounce", "email.bounce", "email.open", "email.click",
                "email.complaint", "email.unsubscribe", "email.rejected",
            ]
        )  # fmt: skip
        assert {e["metadata"]["user_id"] for e in found} == {111}
        counts = await fake_redis.hgetall(keys.INBOUND_COUNTS)
        assert counts[b"mandrill:ignored:send"] == b"1"
        assert counts[b"mandrill:ignored:blacklist"] == b"1"
        assert counts[b"mandrill:ignored:whitelist"] == b"1"

    async def test_detected_on_the_shared_url(self, client: httpx.AsyncClient) -> None:
        # Whichever URL Mandrill posts to, MANDRILL_WEBHOOK_URL is the one it signs.
        body, headers = mandrill_request([sample("mandrill", "click.json")], url=MANDRILL_URL)
        assert (await client.post("/api/webhooks", content=body, headers=headers)).is_success
        [event] = await events(client)
        assert (event["provider"], event["click"]) == ("mandrill", {"url": "http://mandrill.com"})

    @pytest.mark.parametrize(
        ("url", "key"),
        [
            (MANDRILL_URL + "/", MANDRILL_KEY),
            (MANDRILL_URL.replace("https:", "http:"), MANDRILL_KEY),
            (MANDRILL_URL, "another-key"),
            (MANDRILL_URL, "test-webhook"),
        ],
        ids=["trailing-slash", "http", "wrong-key", "probe-key"],
    )
    async def test_refused(
        self, client: httpx.AsyncClient, fake_redis: Redis, url: str, key: str
    ) -> None:
        body, headers = mandrill_request([sample("mandrill", "open.json")], url=url, key=key)
        assert_refused(await client.post("/api/webhooks/mandrill", content=body, headers=headers))
        assert await stored(fake_redis) == 0

    async def test_tampered(self, client: httpx.AsyncClient, fake_redis: Redis) -> None:
        body, headers = mandrill_request([sample("mandrill", "open.json")])
        tampered = body.replace(b"example.webhook", b"victim.webhook")
        response = await client.post("/api/webhooks/mandrill", content=tampered, headers=headers)
        assert_refused(response)
        assert await stored(fake_redis) == 0

    async def test_a_replay_is_stored_once(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body, headers = mandrill_request([sample("mandrill", "open.json")])
        for _ in range(3):
            response = await client.post("/api/webhooks/mandrill", content=body, headers=headers)
            assert response.is_success
        assert await stored(fake_redis) == 1

    @pytest.mark.parametrize("configured", [True, False], ids=["key-set", "no-key-yet"])
    async def test_adding_the_webhook_in_mandrill(
        self,
        make_client: MakeClient,
        signed_config: Callable[..., Config],
        make_config: Callable[..., Config],
        fake_redis: Redis,
        configured: bool,
    ) -> None:
        # Mandrill checks the URL with HEAD, then, unless that answered 200, posts an empty
        # batch signed with the key "test-webhook"; the user learns the real key only after.
        client = await make_client(signed_config() if configured else make_config())
        for path in ("/api/webhooks/mandrill", "/api/webhooks"):
            head = await client.head(path)
            assert (head.status_code, head.content) == (200, b"")
            body, headers = mandrill_request([], key="test-webhook")
            response = await client.post(path, content=body, headers=headers)
            assert response.json() == {"received": True}
        assert await stored(fake_redis) == 0
        # Nothing but the default account, recorded when the app started.
        assert sorted(await fake_redis.keys("mh:*")) == [b"mh:account:acc_default", b"mh:accounts"]

    async def test_json_is_415(self, client: httpx.AsyncClient, fake_redis: Redis) -> None:
        body, headers = mandrill_request([sample("mandrill", "open.json")])
        headers["content-type"] = "application/json"
        response = await client.post("/api/webhooks/mandrill", content=body, headers=headers)
        assert_error(response, 415, "unsupported_media_type")
        assert response.json()["error"]["message"] == (
            "mandrill events are not sent as application/json"
        )
        assert await stored(fake_redis) == 0

    async def test_a_broken_batch_is_422_naming_the_field(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body, headers = mandrill_request([{"event": "open", "ts": 1}])
        response = await client.post("/api/webhooks/mandrill", content=body, headers=headers)
        assert_error(response, 422, "invalid_payload", "mandrill_events[0].msg._id")
        assert await stored(fake_redis) == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "email_id", "event", "event-data", "signature", "data", "x"])
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
SAMPLE_BODIES = [
    path.read_bytes() for path in sorted(SAMPLES.glob("*/*.json")) if path.stat().st_size < 20_000
]


@st.composite
def inbound_requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    path = draw(st.sampled_from(["", "/resend", "/sendgrid", "/mailgun"]))
    body = draw(
        st.binary(max_size=300)
        | JSON_VALUES.map(lambda value: json.dumps(value).encode())
        | st.sampled_from(SAMPLE_BODIES)
        | st.tuples(st.sampled_from(SAMPLE_BODIES), st.integers(0, 400), st.binary(max_size=8)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
        )
    )
    headers = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "svix-id",
                    "svix-timestamp",
                    "svix-signature",
                    "x-webhook-signature",
                    "x-twilio-email-event-webhook-signature",
                    "x-twilio-email-event-webhook-timestamp",
                    "content-type",
                ]
            ),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
            max_size=4,
        )
    )
    return f"/api/webhooks{path}", body, headers


ASCII = st.characters(min_codepoint=32, max_codepoint=126)
FORM_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b",
    "application/json",
    "text/plain",
]


def mutated(bodies: list[bytes]) -> st.SearchStrategy[bytes]:
    """One of `bodies` with a few bytes overwritten somewhere."""
    return st.tuples(st.sampled_from(bodies), st.integers(0, 400), st.binary(max_size=8)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
    )


def header_sets(
    names: list[str], values: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(names), values, max_size=len(names))


MANDRILL_BODIES = [mandrill_request([event])[0] for event in samples("mandrill").values()]
MAILERSEND_BODIES = [json.dumps(event).encode() for event in samples("mailersend").values()]
LEGACY_FORMS = [
    encode(mailgun_legacy_fields(legacy(f"legacy/{path.name}"), NOW))[0]
    for path in sorted((SAMPLES / "mailgun" / "legacy").glob("*.json"))
    for encode in (urlencoded, multipart)
]
FORM_PAIRS = st.lists(
    st.tuples(
        st.sampled_from(["event", "timestamp", "token", "signature", "Message-Id", "tag", "x"])
        | st.text(max_size=6),
        st.text(max_size=20) | st.sampled_from(["delivered", "opened", "dropped", "1", "[]"]),
    ),
    max_size=8,
)


@st.composite
def mandrill_requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    body = draw(
        st.binary(max_size=300)
        | JSON_VALUES.map(lambda value: mandrill_request([value])[0])
        | JSON_VALUES.map(lambda value: mandrill_request(json.dumps(value))[0])
        | st.sampled_from(MANDRILL_BODIES)
        | mutated(MANDRILL_BODIES)
    )
    headers = draw(
        header_sets(
            ["x-mandrill-signature", "content-type"],
            st.sampled_from(FORM_TYPES) | st.text(alphabet=ASCII, max_size=40),
        )
    )
    return "/api/webhooks/mandrill", body, headers


@st.composite
def mailersend_requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    body = draw(
        st.binary(max_size=300)
        | JSON_VALUES.map(lambda value: json.dumps(value).encode())
        | JSON_VALUES.map(
            lambda value: json.dumps({"type": "activity.opened", "data": value}).encode()
        )
        | st.sampled_from(MAILERSEND_BODIES)
        | mutated(MAILERSEND_BODIES)
    )
    headers = draw(
        header_sets(
            ["signature", "content-type"],
            st.sampled_from(["application/json", "0" * 64]) | st.text(alphabet=ASCII, max_size=70),
        )
    )
    return "/api/webhooks/mailersend", body, headers


@st.composite
def mailgun_form_requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    body = draw(
        st.binary(max_size=300)
        | FORM_PAIRS.map(lambda pairs: urlencoded(pairs)[0])
        | FORM_PAIRS.map(lambda pairs: multipart(pairs)[0])
        | st.sampled_from(LEGACY_FORMS)
        | mutated(LEGACY_FORMS)
    )
    headers = {"content-type": draw(st.sampled_from(FORM_TYPES))}
    path = draw(st.sampled_from(["/api/webhooks", "/api/webhooks/mailgun"]))
    return path, body, headers


def assert_never_a_500(
    requests: st.SearchStrategy[tuple[str, bytes, dict[str, str]]],
    *,
    signed: bool,
    max_examples: int,
) -> None:
    """Whatever `requests` draws is answered with a JSON error or 200, never a 500."""
    signer = SendgridSigner()
    config = Config(
        api_keys=("test-api-key-0123456789",),
        allow_unsigned_inbound=not signed,
        provider_secrets={
            "generic": INBOUND_SECRET,
            "resend": RESEND_SECRET,
            "sendgrid": signer.public_key,
            "mailgun": MAILGUN_KEY,
            "mailersend": MAILERSEND_SECRET,
            "mandrill": MANDRILL_KEY,
        }
        if signed
        else {},
        provider_urls={"mandrill": MANDRILL_URL},
    )

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests)
    def check(request: tuple[str, bytes, dict[str, str]]) -> None:
        path, body, headers = request

        response = post_on_fresh_app(config, path, body, headers)
        assert response.status_code in (200, 401, 413, 415, 422), response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()

    check()


SIGNED = pytest.mark.parametrize("signed", [False, True], ids=["unsigned-allowed", "signed"])


class TestArbitraryInput:
    @SIGNED
    def test_never_a_500(self, signed: bool) -> None:
        assert_never_a_500(inbound_requests(), signed=signed, max_examples=150)

    @SIGNED
    def test_mandrill_never_a_500(self, signed: bool) -> None:
        assert_never_a_500(mandrill_requests(), signed=signed, max_examples=100)

    @SIGNED
    def test_mailersend_never_a_500(self, signed: bool) -> None:
        assert_never_a_500(mailersend_requests(), signed=signed, max_examples=100)

    @SIGNED
    def test_mailgun_legacy_never_a_500(self, signed: bool) -> None:
        assert_never_a_500(mailgun_form_requests(), signed=signed, max_examples=100)


def test_unsigned_inbound_is_warned_about_at_start_up(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    create_app(make_config(allow_unsigned_inbound=True, provider_secrets={"resend": RESEND_SECRET}))
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "ALLOW_UNSIGNED_INBOUND=true" in warning.getMessage()
    assert "resend" in warning.getMessage()
    assert RESEND_SECRET not in caplog.text
    caplog.clear()
    create_app(make_config())
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.redis
class TestRedisFull:
    async def test_ingest_stops_short_of_full_so_the_worker_can_still_write(
        self,
        make_client: MakeClient,
        signed_config: Callable[..., Config],
        real_redis: Redis,
    ) -> None:
        # The stream is never trimmed past undelivered events, so a long worker outage can
        # fill Redis. Ingest must stop first: the worker needs room to deliver the backlog.
        now = [FIXED_NOW]
        client = await make_client(signed_config(), redis=real_redis, clock=lambda: now[0])
        body = json.dumps(SEED_EVENT).encode()
        # A backlog of 20 MB, so that 5 % of it is room enough for the worker's connection.
        await real_redis.mset({f"backlog:{n}": b"x" * 10_000 for n in range(2000)})
        used = int((await real_redis.info("memory"))["used_memory"])
        await real_redis.config_set("maxmemory-policy", "noeviction")
        await real_redis.config_set("maxmemory", int(used / 0.95))  # 95 % full
        try:
            response = await client.post(
                "/api/webhooks", content=body, headers=generic_headers(body)
            )
            worker = DeliveryStore(real_redis)
            claimed = await worker.claim(
                delivery_id="dlv_1-0_1",
                webhook_id=1,
                event_id="evt_1-0",
                event_type="email.bounce",
                owner="worker",
                now_ms=1,
                lease_ms=31_000,
            )
        finally:
            await real_redis.config_set("maxmemory", 0)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "store_full"
        assert await stored(real_redis) == 0
        assert await real_redis.keys("mh:seen:*") == []  # not marked seen either
        assert claimed.claim is Claim.NEW  # the worker's writes still go through
        # Memory is read again a second later: the provider's retry then lands.
        now[0] += timedelta(seconds=1)
        retry = await client.post("/api/webhooks", content=body, headers=generic_headers(body))
        assert retry.status_code == 200
        assert await stored(real_redis) == 1

    async def test_a_redis_that_refuses_writes_is_a_503_that_stores_nothing(
        self,
        make_client: MakeClient,
        signed_config: Callable[..., Config],
        real_redis: Redis,
    ) -> None:
        # Filled between two readings of its memory: Redis refuses the append itself.
        client = await make_client(signed_config(), redis=real_redis)
        first = json.dumps({**SEED_EVENT, "email_id": "msg_first"}).encode()
        assert (
            await client.post("/api/webhooks", content=first, headers=generic_headers(first))
        ).status_code == 200
        body = json.dumps(SEED_EVENT).encode()
        await real_redis.config_set("maxmemory-policy", "noeviction")
        await real_redis.config_set("maxmemory", 1)
        try:
            response = await client.post(
                "/api/webhooks", content=body, headers=generic_headers(body)
            )
        finally:
            await real_redis.config_set("maxmemory", 0)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "store_full"
        assert await stored(real_redis) == 1
        assert len(await real_redis.keys("mh:seen:*")) == 1  # the first event's only


@pytest.mark.redis
class TestRedisGone:
    """Ingest answers 503 within INGEST_TIMEOUT when Redis is down or silent, rather than
    holding the provider's connection while commands are retried; and recovers by itself."""

    async def post_timed(self, client: httpx.AsyncClient, n: int) -> tuple[int, float]:
        body = json.dumps({**SEED_EVENT, "email_id": f"msg_gone_{n}"}).encode()
        started = time.monotonic()
        response = await client.post(
            "/api/webhooks", content=body, headers={"content-type": "application/json"}
        )
        return response.status_code, time.monotonic() - started

    @pytest.fixture
    async def api(
        self, make_client: MakeClient, make_config: Callable[..., Config], durable_redis: Any
    ) -> AsyncIterator[tuple[httpx.AsyncClient, Config]]:
        """The app on its own reconnecting client to a Redis of its own, one event stored."""
        config = make_config(
            redis_url=durable_redis.url, allow_unsigned_inbound=True, ingest_timeout=1.0
        )
        redis = connect(config)
        try:
            client = await make_client(config, redis=redis, clock=system_clock)
            assert (await self.post_timed(client, 0))[0] == 200
            yield client, config
        finally:
            await redis.aclose()

    async def test_a_stopped_redis_is_a_503_within_the_deadline(
        self, api: tuple[httpx.AsyncClient, Config], durable_redis: Any
    ) -> None:
        client, config = api
        durable_redis.stop()
        answers = await asyncio.gather(*(self.post_timed(client, n) for n in range(1, 51)))
        assert {status for status, _ in answers} == {503}
        assert max(seconds for _, seconds in answers) < config.ingest_timeout + 0.5
        durable_redis.start()
        status, _ = await self.post_timed(client, 51)
        assert status == 200  # no restart of the web process needed

    async def test_a_silent_redis_is_a_503_within_the_deadline(
        self, api: tuple[httpx.AsyncClient, Config], durable_redis: Any
    ) -> None:
        client, config = api
        durable_redis.process.send_signal(signal.SIGSTOP)  # alive, answering nothing
        try:
            answers = await asyncio.gather(*(self.post_timed(client, n) for n in range(1, 21)))
        finally:
            durable_redis.process.send_signal(signal.SIGCONT)
        assert {status for status, _ in answers} == {503}
        assert max(seconds for _, seconds in answers) < config.ingest_timeout + 0.5
