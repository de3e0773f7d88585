from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import mailersend
from tests import FIXTURES
from tests.signers import MAILERSEND_SECRET, mailersend_headers

SAMPLES = FIXTURES / "providers" / "mailersend"
NOW = 1_772_532_000
RECEIVED_AT = "2026-03-03T10:00:00Z"


def sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def payload(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(sample(name))
    return loaded


def normalize(body: bytes | dict[str, Any]) -> list[Event | Ignored]:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return mailersend.normalize(raw, {}, received_at=RECEIVED_AT)


class TestVerify:
    BODY = sample("v2_delivered")

    def test_signed_as_documented(self) -> None:
        mailersend.verify(self.BODY, mailersend_headers(self.BODY), MAILERSEND_SECRET, now=NOW)

    def test_a_signature_computed_by_hand(self) -> None:
        # MailerSend escapes every "/" in its bodies; the signature covers the bytes as sent.
        body = b'{"type":"activity.clicked","data":{"url":"https:\\/\\/example.com"}}'
        digest = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        mailersend.verify(body, {"signature": digest.upper()}, "s3cret", now=NOW)

    def test_any_time_is_accepted(self) -> None:
        # Nothing signed carries a time: only de-duplication stops a replay.
        headers = mailersend_headers(self.BODY)
        mailersend.verify(self.BODY, headers, MAILERSEND_SECRET, now=NOW + 10 * 365 * 86400)

    def test_tampered_body(self) -> None:
        tampered = self.BODY.replace(b"recipient@", b"attacker@")
        assert tampered != self.BODY
        with pytest.raises(InvalidSignature, match="does not match"):
            mailersend.verify(tampered, mailersend_headers(self.BODY), MAILERSEND_SECRET, now=NOW)

    def test_wrong_secret(self) -> None:
        headers = mailersend_headers(self.BODY, secret="another-secret")
        with pytest.raises(InvalidSignature, match="does not match"):
            mailersend.verify(self.BODY, headers, MAILERSEND_SECRET, now=NOW)

    @pytest.mark.parametrize(
        ("headers", "message"),
        [
            ({}, "missing signature header"),
            ({"signature": ""}, "missing signature header"),
            ({"signature": "sha256=" + "0" * 64}, "not a hex"),
            ({"signature": "0" * 64}, "does not match"),
        ],
    )
    def test_missing_or_malformed(self, headers: dict[str, str], message: str) -> None:
        with pytest.raises(InvalidSignature, match=message):
            mailersend.verify(self.BODY, headers, MAILERSEND_SECRET, now=NOW)


class TestProvider:
    PROVIDER = mailersend.PROVIDER

    @pytest.mark.parametrize(
        ("headers", "body", "detected"),
        [
            (mailersend_headers(b"{}"), b" {}", True),
            ({"signature": "A" * 64}, b'{"type": "activity.sent"}', True),
            ({"signature": "A" * 64}, b"[]", False),
            ({"signature": "v1,abc"}, b"{}", False),
            ({"x-webhook-signature": "a" * 64}, b"{}", False),
            ({}, sample("v2_delivered"), False),
        ],
    )
    def test_detects(self, headers: dict[str, str], body: bytes, detected: bool) -> None:
        assert self.PROVIDER.detects(headers, body) is detected

    @pytest.mark.parametrize(
        ("body", "probe"),
        [
            (sample("webhook_test"), True),
            (b'{"type": "webhook.test"}', True),
            (b'{"type": "webhook.test", "data": {"id": "x"}}', False),
            (sample("v2_delivered"), False),
            (b'{"type": "activity.sent", "note": "webhook.test"}', False),
            (b"webhook.test", False),
        ],
    )
    def test_the_dashboard_ping_is_a_probe(self, body: bytes, probe: bool) -> None:
        assert self.PROVIDER.is_probe(body, {}) is probe

    def test_json_any_secret_no_replay_token(self) -> None:
        assert self.PROVIDER.accepts_media_type("application/json")
        assert not self.PROVIDER.accepts_media_type("application/x-www-form-urlencoded")
        self.PROVIDER.check_secret("anything")
        assert self.PROVIDER.replay_token(sample("v2_delivered")) is None
        assert self.PROVIDER.url_variable is None


V1_MESSAGE = "63fd1c1d5f010335ed07066b"
V2_MESSAGE = "6aa59d2fbf35297925087058"
V2_BOUNCED = "6892766ae78995a317577aa1"


def event(**fields: Any) -> Event:
    fields.setdefault("provider", "mailersend")
    return Event(**fields)


SAMPLE_EVENTS = [
    (
        "v1_delivered",
        event(
            type="email.delivered",
            email_id=V1_MESSAGE,
            occurred_at="2023-02-27T21:09:51.865Z",
            recipient="recipient@example.com",
            provider_event_id="63fd1c1fcfbe46145d003a7b",
        ),
    ),
    (
        "v1_hard_bounced",
        event(
            type="email.bounce",
            email_id="63fd25194d5edba3da09e044",
            occurred_at="2023-02-27T21:48:13.593Z",
            recipient="invalid@example.com",
            provider_event_id="63fd251d5c00f8e52001fce6",
            bounce=Bounce(kind="hard", reason="Host or domain name not found"),
        ),
    ),
    (
        "v1_soft_bounced",
        event(
            type="email.bounce",
            email_id="62fb66bef54a112e920b5493",
            occurred_at="2022-08-08T13:51:52.747Z",
            recipient="notauser@example.com",
            provider_event_id="62f114f8165fe0d8db0288e5",
            bounce=Bounce(kind="soft", reason="Unknown reason"),
        ),
    ),
    (
        "v1_spam_complaint",
        event(
            type="email.complaint",
            email_id="62fb66bef54a112e920b5493",
            occurred_at="2022-08-08T13:51:52.747Z",
            recipient="recipient@example.com",
            provider_event_id="62f114f8165fe0d8db0288e5",
        ),
    ),
    (
        "v1_unsubscribed",
        event(
            type="email.unsubscribe",
            email_id=V1_MESSAGE,
            occurred_at="2023-02-27T21:33:54.791Z",
            recipient="recipient@example.com",
            provider_event_id="63fd21c23f2bdd360e07d6b2",
        ),
    ),
    (
        "v1_opened",
        event(
            type="email.open",
            email_id=V1_MESSAGE,
            occurred_at="2023-02-27T21:17:57.025Z",
            recipient="recipient@example.com",
            provider_event_id="63fd1e05532bd6cc700a793b",
        ),
    ),
    (
        "v1_clicked",
        event(
            type="email.click",
            email_id=V1_MESSAGE,
            occurred_at="2023-02-27T21:14:11.691Z",
            recipient="recipient@example.com",
            provider_event_id="63fd1d23afa3c770b00da7d3",
            click=Click(url="https://example.com/test"),
        ),
    ),
    (
        "v2_delivered",
        event(
            type="email.delivered",
            email_id=V2_MESSAGE,
            occurred_at="2026-09-12T18:43:00.000Z",
            recipient="recipient@example.com",
            provider_event_id="6aa59d4a531434d718ec48a0",
        ),
    ),
    (
        "v2_hard_bounced",
        event(
            type="email.bounce",
            email_id=V2_BOUNCED,
            occurred_at="2025-08-05T21:24:02.000Z",
            recipient="invalid@example.com",
            provider_event_id="6892766a5b66e2daf3dc9158",
            bounce=Bounce(kind="hard", reason="Host or domain name not found"),
            mta_response="550",
        ),
    ),
    (
        "v2_soft_bounced",
        event(
            type="email.bounce",
            email_id=V2_BOUNCED,
            occurred_at="2025-08-05T21:24:02.000Z",
            recipient="notauser@example.com",
            provider_event_id="6892766a5b66e2daf3dc9157",
            bounce=Bounce(kind="soft", reason="Mailbox full"),
            mta_response="452",
        ),
    ),
    (
        "v2_deferred",
        event(
            type="email.deferred",
            email_id=V2_BOUNCED,
            occurred_at="2025-08-05T21:23:58.000Z",
            recipient="recipient@example.com",
            provider_event_id="6892766a5b66e2daf3dc9159",
        ),
    ),
    (
        "v2_spam_complaint",
        event(
            type="email.complaint",
            email_id=V2_BOUNCED,
            occurred_at="2025-08-05T21:36:40.000Z",
            recipient="recipient@example.com",
            provider_event_id="6892766a5b66e2daf3dc915d",
        ),
    ),
    (
        "v2_unsubscribed",
        event(
            type="email.unsubscribe",
            email_id=V2_BOUNCED,
            occurred_at="2025-08-05T21:35:20.000Z",
            recipient="recipient@example.com",
            provider_event_id="6892766a5b66e2daf3dc915c",
            metadata={"tags": ["test", "test2"]},
        ),
    ),
    (
        "v2_opened",
        event(
            type="email.open",
            email_id=V2_MESSAGE,
            occurred_at="2026-09-12T18:45:01.000Z",
            recipient="recipient@example.com",
            provider_event_id="6aa59dad05e8ec525fe6ef95",
            user_agent="Mozilla/5.0 (via ggpht.com GoogleImageProxy)",
        ),
    ),
    (
        "v2_clicked",
        event(
            type="email.click",
            email_id=V2_MESSAGE,
            occurred_at="2026-09-12T18:45:05.000Z",
            recipient="recipient@example.com",
            provider_event_id="6aa59db1c8ba039cd6d68435",
            click=Click(url="https://example.com/test"),
            user_agent="Mozilla/5.0 (Macintosh) AppleWebKit/537.36",
        ),
    ),
    (
        "v2_suppressed",
        event(
            type="email.rejected",
            email_id=V2_BOUNCED,
            occurred_at="2025-08-05T21:23:54.000Z",
            recipient="recipient@example.com",
            provider_event_id="6892766a5b66e2daf3dc915f",
            reason="on_hold",
        ),
    ),
]


class TestNormalize:
    @pytest.mark.parametrize(("name", "expected"), SAMPLE_EVENTS, ids=[n for n, _ in SAMPLE_EVENTS])
    def test_samples(self, name: str, expected: Event) -> None:
        assert normalize(sample(name)) == [expected]

    @pytest.mark.parametrize(
        ("name", "provider_type"),
        [
            ("v1_sent", "activity.sent"),
            ("v2_sent", "activity.sent"),
            ("v2_docs_sent", "activity.sent"),
            ("webhook_test", "webhook.test"),
        ],
    )
    def test_samples_without_a_canonical_type_are_ignored(
        self, name: str, provider_type: str
    ) -> None:
        assert normalize(sample(name)) == [
            Ignored(provider="mailersend", provider_type=provider_type)
        ]

    def test_tags_of_both_versions_are_metadata(self) -> None:
        v1 = payload("v1_sent")
        v1["type"] = "activity.delivered"
        v2 = payload("v2_sent")
        v2["type"] = "activity.delivered"
        [first], [second] = normalize(v1), normalize(v2)
        assert isinstance(first, Event)
        assert isinstance(second, Event)
        assert first.metadata == second.metadata == {"tags": ["tag1", "Tag 2"]}

    def test_the_docs_2_0_shape_names_the_recipient_email(self) -> None:
        body = payload("v2_docs_sent")
        body["type"] = "activity.delivered"
        assert normalize(body) == [
            event(
                type="email.delivered",
                email_id="6892766ae78995a317577aa1",
                occurred_at="2025-08-05T21:23:54.000Z",
                recipient="test@mailersend.com",
                provider_event_id="6892766a5b66e2daf3dc9155",
                metadata={"tags": ["test", "test2"]},
            )
        ]

    @pytest.mark.parametrize(
        ("provider_type", "canonical"),
        [("activity.opened_unique", "email.open"), ("activity.clicked_unique", "email.click")],
    )
    def test_unique_opens_and_clicks(self, provider_type: str, canonical: str) -> None:
        body = payload("v2_clicked")
        body["type"] = provider_type
        [normalized] = normalize(body)
        assert isinstance(normalized, Event)
        assert normalized.type == canonical

    def test_without_a_time_the_receipt_time(self) -> None:
        body = payload("v2_delivered")
        del body["created_at"]
        [normalized] = normalize(body)
        assert isinstance(normalized, Event)
        assert normalized.occurred_at == RECEIVED_AT

    def test_message_id_falls_back_to_the_email_id(self) -> None:
        body = payload("v2_delivered")
        del body["data"]["message_id"]
        [normalized] = normalize(body)
        assert isinstance(normalized, Event)
        assert normalized.email_id == "6aa59d3037403a10c4d4d18e"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"data": {}}, "type"),
            ({"type": "activity.delivered"}, "data"),
            ({"type": "activity.delivered", "data": []}, "data"),
            ({"type": "activity.delivered", "data": {"message_id": "m"}}, "data.id"),
            ({"type": "activity.delivered", "data": {"id": "a"}}, "data.message_id"),
            (
                {"type": "activity.delivered", "data": {"id": "a", "message_id": "m", "meta": 1}},
                "data.meta",
            ),
            (
                {
                    "type": "activity.delivered",
                    "data": {"id": "a", "message_id": "m"},
                    "created_at": "x",
                },
                "data.created_at",
            ),
        ],
    )
    def test_invalid_fields_are_named(self, body: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(body)
        assert info.value.field == field

    @pytest.mark.parametrize("body", [b"", b"[]", b"null", b"type=activity.sent"])
    def test_wrong_shape(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload, match="mailersend"):
            normalize(body)
