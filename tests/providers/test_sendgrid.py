from __future__ import annotations

import base64
import json
from typing import Any, Literal

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import sendgrid
from tests import FIXTURES

SAMPLES = FIXTURES / "providers" / "sendgrid"
VECTOR = json.loads((SAMPLES / "signature_vector.json").read_text())
VECTOR_BODY = VECTOR["raw_body"].encode()
VECTOR_KEY = VECTOR["public_key_b64_der_spki"]
VECTOR_HEADERS = {name.lower(): value for name, value in VECTOR["headers"].items()}
VECTOR_TIME = int(VECTOR_HEADERS["x-twilio-email-event-webhook-timestamp"])
# From the vector's note: a valid P-256 key that did not make the signature.
OTHER_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8RE"
    "ntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
)
NOW = 1_772_532_000
MESSAGE_ID = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"


def der_b64(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = der_b64(PRIVATE.public_key())


def signed_headers(body: bytes, timestamp: int = NOW) -> dict[str, str]:
    """Signed here with `cryptography` directly, independently of the code under test."""
    signature = PRIVATE.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": str(timestamp),
    }


def normalize(body: bytes) -> list[Event | Ignored]:
    return sendgrid.normalize(body, {}, received_at="2026-03-03T10:00:00Z")


def batch(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def delivered(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((SAMPLES / "delivered.json").read_bytes())[0]
    event.update(changes)
    return {key: value for key, value in event.items() if value is not None}


class TestVerify:
    def test_published_vector_without_freshness(self) -> None:
        sendgrid.verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_KEY, now=NOW, tolerance=None)

    def test_published_vector_at_its_own_time(self) -> None:
        sendgrid.verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_KEY, now=VECTOR_TIME + 300)

    def test_published_vector_is_stale_today(self) -> None:
        with pytest.raises(InvalidSignature, match="too old"):
            sendgrid.verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_KEY, now=NOW)

    @pytest.mark.parametrize(
        ("body", "headers", "key"),
        [
            (VECTOR_BODY, VECTOR_HEADERS, OTHER_KEY),
            (VECTOR_BODY.removesuffix(b"\r\n"), VECTOR_HEADERS, VECTOR_KEY),
            (VECTOR_BODY.replace(b"dropped", b"delivered"), VECTOR_HEADERS, VECTOR_KEY),
            (
                VECTOR_BODY,
                {**VECTOR_HEADERS, "x-twilio-email-event-webhook-timestamp": str(VECTOR_TIME + 1)},
                VECTOR_KEY,
            ),
        ],
        ids=["wrong-key", "no-crlf", "tampered", "other-timestamp"],
    )
    def test_published_vector_refuses_changes(
        self, body: bytes, headers: dict[str, str], key: str
    ) -> None:
        with pytest.raises(InvalidSignature, match="does not match"):
            sendgrid.verify(body, headers, key, now=NOW, tolerance=None)

    def test_own_signature(self) -> None:
        body = batch(delivered())
        sendgrid.verify(body, signed_headers(body), PUBLIC, now=NOW)

    @pytest.mark.parametrize(("offset", "message"), [(-301, "too old"), (301, "in the future")])
    def test_outside_tolerance(self, offset: int, message: str) -> None:
        body = batch(delivered())
        with pytest.raises(InvalidSignature, match=message):
            sendgrid.verify(body, signed_headers(body, NOW + offset), PUBLIC, now=NOW)

    @pytest.mark.parametrize(
        "name",
        ["x-twilio-email-event-webhook-signature", "x-twilio-email-event-webhook-timestamp"],
    )
    def test_missing_header(self, name: str) -> None:
        headers = dict(VECTOR_HEADERS)
        del headers[name]
        with pytest.raises(InvalidSignature, match=f"missing {name}"):
            sendgrid.verify(VECTOR_BODY, headers, VECTOR_KEY, now=NOW, tolerance=None)

    @pytest.mark.parametrize(
        ("signature", "message"),
        [
            ("not base64!!", "not base64"),
            (base64.b64encode(b"not a DER signature").decode(), "does not match"),
            ("", "missing"),
        ],
    )
    def test_malformed_signature(self, signature: str, message: str) -> None:
        headers = {**VECTOR_HEADERS, "x-twilio-email-event-webhook-signature": signature}
        with pytest.raises(InvalidSignature, match=message):
            sendgrid.verify(VECTOR_BODY, headers, VECTOR_KEY, now=NOW, tolerance=None)

    @pytest.mark.parametrize(
        ("key", "message"),
        [
            ("", "not base64 DER"),
            ("not base64!!", "not base64 DER"),
            (base64.b64encode(b"not DER").decode(), "not base64 DER"),
            ("-----BEGIN PUBLIC KEY-----", "not base64 DER"),
            (der_b64(rsa.generate_private_key(65537, 2048).public_key()), "not an ECDSA P-256"),
            (der_b64(ec.generate_private_key(ec.SECP384R1()).public_key()), "not an ECDSA P-256"),
        ],
        ids=["empty", "not-base64", "not-der", "pem", "rsa", "p384"],
    )
    def test_unusable_key(self, key: str, message: str) -> None:
        with pytest.raises(InvalidSignature, match=message):
            sendgrid.verify(VECTOR_BODY, VECTOR_HEADERS, key, now=NOW, tolerance=None)


class TestProvider:
    PROVIDER = sendgrid.PROVIDER

    @pytest.mark.parametrize("key", ["", "not base64!!", "-----BEGIN PUBLIC KEY-----"])
    def test_unusable_key_fails_at_start_up(self, key: str) -> None:
        with pytest.raises(InvalidSignature, match="SendGrid verification key"):
            self.PROVIDER.check_secret(key)

    def test_usable_key(self) -> None:
        self.PROVIDER.check_secret(VECTOR_KEY)

    def test_verifies_with_the_five_minute_tolerance(self) -> None:
        self.PROVIDER.verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_KEY, now=VECTOR_TIME + 300)
        with pytest.raises(InvalidSignature, match="too old"):
            self.PROVIDER.verify(VECTOR_BODY, VECTOR_HEADERS, VECTOR_KEY, now=VECTOR_TIME + 301)

    @pytest.mark.parametrize(
        ("headers", "body", "detected"),
        [
            ({"x-twilio-email-event-webhook-signature": "MEU="}, b"{}", True),
            ({}, b"\n [", True),
            ({}, b"{}", False),
            ({"x-twilio-email-event-webhook-signature": ""}, b"{}", False),
        ],
    )
    def test_detects(self, headers: dict[str, str], body: bytes, detected: bool) -> None:
        assert self.PROVIDER.detects(headers, body) is detected

    def test_no_replay_token(self) -> None:
        assert self.PROVIDER.replay_token(VECTOR_BODY) is None


IE6 = "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)"
SAMPLE_EVENTS = [
    ("delivered.json", "email.delivered", "rWVYmVk90MjZJ9iohOBa3w==", {"mta_response": "250 OK"}),
    ("open.json", "email.open", "FOTFFO0ecsBE-zxFXfs6WA==", {"user_agent": IE6}),
    ("unsubscribe.json", "email.unsubscribe", "zz_BjPgU_5pS-J8vlfB1sg==", {}),
    ("group_unsubscribe.json", "email.unsubscribe", "ahSCB7xYcXFb-hEaawsPRw==", {}),
    (
        "bounce_hard.json",
        "email.bounce",
        "6g4ZI7SA-xmRDv57GoPIPw==",
        {
            "bounce": Bounce(kind="hard", reason="500 unknown recipient"),
            "mta_response": "500 unknown recipient",
        },
    ),
    (
        "bounce_soft_blocked.json",
        "email.bounce",
        "6g4ZI7SA-xmRDv57GoPIPw==",
        {
            "bounce": Bounce(kind="soft", reason="500 unknown recipient"),
            "mta_response": "500 unknown recipient",
        },
    ),
    (
        "deferred.json",
        "email.deferred",
        "t7LEShmowp86DTdUW8M-GQ==",
        {"mta_response": "400 try again later", "reason": "400 try again later"},
    ),
    ("dropped.json", "email.rejected", "zmzJhfJgAfUSOW80yEbPyw==", {"reason": "Bounced Address"}),
]


class TestNormalize:
    @pytest.mark.parametrize(("name", "kind", "event_id", "fields"), SAMPLE_EVENTS)
    def test_samples(self, name: str, kind: str, event_id: str, fields: dict[str, Any]) -> None:
        assert normalize((SAMPLES / name).read_bytes()) == [
            Event(
                type=kind,
                email_id=MESSAGE_ID,
                occurred_at="2017-12-15T00:59:29Z",
                provider="sendgrid",
                recipient="alex@example.com",
                provider_event_id=event_id,
                metadata={"category": "cat facts"},
                **fields,
            )
        ]

    def test_spamreport_sample_has_no_metadata(self) -> None:
        assert normalize((SAMPLES / "spamreport.json").read_bytes()) == [
            Event(
                type="email.complaint",
                email_id=MESSAGE_ID,
                occurred_at="2017-12-15T00:59:29Z",
                provider="sendgrid",
                recipient="alex@example.com",
                provider_event_id="37nvH5QBz858KGVYCM4uOA==",
            )
        ]

    def test_click_sample_collects_custom_args_and_categories(self) -> None:
        assert normalize((SAMPLES / "click.json").read_bytes()) == [
            Event(
                type="email.click",
                email_id="sendgrid_internal_message_id",
                occurred_at="2009-08-11T00:00:00Z",
                provider="sendgrid",
                recipient="email@example.com",
                provider_event_id="sendgrid_internal_event_id",
                click=Click(url="http://example.com/blog/news.html"),
                metadata={
                    "unique_arg_key": "unique_arg_value",
                    "category": ["category1", "category2"],
                },
                user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) "
                "AppleWebKit/537.51.2 (KHTML, like Gecko) Version/7.0 Mobile/11D257 "
                "Safari/9537.53",
            )
        ]

    @pytest.mark.parametrize(
        ("name", "provider_type"),
        [
            ("processed.json", "processed"),
            ("group_resubscribe.json", "group_resubscribe"),
            ("account_status_change.json", "account_status_change"),
        ],
    )
    def test_samples_without_a_canonical_type_are_ignored(
        self, name: str, provider_type: str
    ) -> None:
        assert normalize((SAMPLES / name).read_bytes()) == [
            Ignored(provider="sendgrid", provider_type=provider_type)
        ]

    def test_signature_vector_body(self) -> None:
        [event] = normalize(VECTOR_BODY)
        assert isinstance(event, Event)
        assert event.type == "email.rejected"

    def test_thousand_event_batch(self) -> None:
        events = [delivered(sg_event_id=f"ev{i}", email=f"u{i}@example.com") for i in range(1000)]
        result = normalize(batch(*events))
        assert len(result) == 1000
        assert all(isinstance(event, Event) for event in result)
        assert [e.provider_event_id for e in result if isinstance(e, Event)] == [
            f"ev{i}" for i in range(1000)
        ]
        assert isinstance(result[999], Event)
        assert result[999].recipient == "u999@example.com"

    def test_mixed_batch_keeps_order_and_ignores_unknown_types(self) -> None:
        result = normalize(
            batch(
                delivered(),
                delivered(event="processed"),
                delivered(event="open"),
                delivered(event="brand_new_event"),
                delivered(event="spamreport"),
            )
        )
        assert [type(e).__name__ for e in result] == [
            "Event",
            "Ignored",
            "Event",
            "Ignored",
            "Event",
        ]
        assert result[1] == Ignored(provider="sendgrid", provider_type="processed")
        assert result[3] == Ignored(provider="sendgrid", provider_type="brand_new_event")
        assert isinstance(result[4], Event)
        assert result[4].type == "email.complaint"

    def test_one_malformed_element_refuses_the_batch(self) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(batch(delivered(), delivered(timestamp="soon"), delivered()))
        assert info.value.field == "[1].timestamp"

    @pytest.mark.parametrize(
        ("event", "field"),
        [
            ({"email": "a@example.com", "timestamp": 1}, "[0].event"),
            ({"event": "", "timestamp": 1}, "[0].event"),
            ({"event": "open"}, "[0].timestamp"),
            ({"event": "open", "timestamp": True}, "[0].timestamp"),
            ({"event": "open", "timestamp": 1, "email": ["a"]}, "[0].email"),
            ({"event": "open", "timestamp": 1}, "[0].sg_message_id"),
            ({"event": "open", "timestamp": 10**30, "sg_message_id": "m"}, "[0].timestamp"),
        ],
    )
    def test_invalid_fields_are_named(self, event: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(batch(event))
        assert info.value.field == field

    @pytest.mark.parametrize(
        ("body", "field"),
        [(b"{}", None), (b"[1]", "[0]"), (b"[[]]", "[0]"), (b"[{}, null]", "[1]")],
    )
    def test_wrong_shape(self, body: bytes, field: str | None) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(body)
        assert info.value.field == field

    def test_empty_batch(self) -> None:
        assert normalize(b"[]") == []

    @pytest.mark.parametrize(
        ("changes", "email_id"),
        [
            ({"sg_message_id": " abc.filter0001.0"}, "abc.filter0001.0"),
            ({"sg_message_id": None}, "14c5d75ce93.dfd.64b469@ismtpd-555"),
            ({"sg_message_id": ""}, "14c5d75ce93.dfd.64b469@ismtpd-555"),
            ({"sg_message_id": None, "smtp-id": None}, "rWVYmVk90MjZJ9iohOBa3w=="),
            ({"sg_message_id": "", "smtp-id": ""}, "rWVYmVk90MjZJ9iohOBa3w=="),
        ],
    )
    def test_email_id_fallbacks(self, changes: dict[str, Any], email_id: str) -> None:
        [event] = normalize(batch(delivered(**changes)))
        assert isinstance(event, Event)
        assert event.email_id == email_id

    @pytest.mark.parametrize(
        ("bounce_type", "kind"),
        [
            ("bounce", "hard"),
            ("blocked", "soft"),
            ("expired", "soft"),
            (None, "undetermined"),
            ("brand_new", "undetermined"),
        ],
    )
    def test_bounce_kind(
        self, bounce_type: str | None, kind: Literal["hard", "soft", "undetermined"]
    ) -> None:
        [event] = normalize(batch(delivered(event="bounce", type=bounce_type, reason="550")))
        assert isinstance(event, Event)
        assert event.bounce == Bounce(kind=kind, reason="550")

    @pytest.mark.parametrize(
        ("timestamp", "occurred_at"),
        [
            (1513299569, "2017-12-15T00:59:29Z"),
            ("1513299569", "2017-12-15T00:59:29Z"),
            (1513299569.25, "2017-12-15T00:59:29.250Z"),
        ],
    )
    def test_timestamp_forms(self, timestamp: Any, occurred_at: str) -> None:
        [event] = normalize(batch(delivered(timestamp=timestamp)))
        assert isinstance(event, Event)
        assert event.occurred_at == occurred_at

    def test_custom_args_are_metadata_and_sendgrid_fields_are_not(self) -> None:
        extra = {
            "order_id": "o-17",
            "user": {"id": 5},
            "tls": 1,
            "ip": "1.2.3.4",
            "marketing_campaign_id": 9,
        }
        [event] = normalize(batch(delivered(**extra)))
        assert isinstance(event, Event)
        assert event.metadata == {"category": "cat facts", "order_id": "o-17", "user": {"id": 5}}
