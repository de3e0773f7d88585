from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import generic

SECRET = "whsec_generic-test-secret"
RECEIVED_AT = "2026-03-03T10:00:00Z"


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def normalize(payload: dict[str, Any]) -> list[Event | Ignored]:
    return generic.normalize(json.dumps(payload).encode(), {}, received_at=RECEIVED_AT)


class TestVerify:
    BODY = b'{"type": "email.delivered", "email_id": "msg_abc"}'

    @pytest.mark.parametrize("signature", [sign(BODY), sign(BODY).upper()])
    def test_accepts_the_hex_hmac_in_either_case(self, signature: str) -> None:
        generic.verify(self.BODY, {"x-webhook-signature": signature}, SECRET, now=0.0)

    def test_secret_is_keyed_as_utf8(self) -> None:
        headers = {"x-webhook-signature": sign(self.BODY, "sécret")}
        generic.verify(self.BODY, headers, "sécret", now=0.0)

    @pytest.mark.parametrize(
        ("body", "signature", "message"),
        [
            (BODY, sign(BODY, "another-secret"), "does not match"),
            (BODY + b" ", sign(BODY), "does not match"),
            (BODY.replace(b"delivered", b"bounced"), sign(BODY), "does not match"),
            (BODY, sign(BODY)[:-2], "not a hex"),
            (BODY, sign(BODY) + "00", "not a hex"),
            (BODY, "sha256=" + sign(BODY), "not a hex"),
            (BODY, "z" * 64, "not a hex"),
            (BODY, "é" * 64, "not a hex"),
        ],
        ids=["forged", "trailing-space", "tampered", "short", "long", "prefixed", "z", "unicode"],
    )
    def test_refuses_wrong_or_malformed_signatures(
        self, body: bytes, signature: str, message: str
    ) -> None:
        with pytest.raises(InvalidSignature, match=message):
            generic.verify(body, {"x-webhook-signature": signature}, SECRET, now=0.0)

    @pytest.mark.parametrize("headers", [{}, {"x-webhook-signature": ""}, {"x-signature": "ab"}])
    def test_missing_header(self, headers: dict[str, str]) -> None:
        with pytest.raises(InvalidSignature, match="missing x-webhook-signature"):
            generic.verify(self.BODY, headers, SECRET, now=0.0)


class TestProvider:
    PROVIDER = generic.PROVIDER

    def test_verifies_the_body_hmac(self) -> None:
        body = TestVerify.BODY
        self.PROVIDER.verify(body, {"x-webhook-signature": sign(body)}, SECRET, now=0.0)
        with pytest.raises(InvalidSignature, match="does not match"):
            self.PROVIDER.verify(body + b" ", {"x-webhook-signature": sign(body)}, SECRET, now=0.0)

    @pytest.mark.parametrize("body", [b"", b"[]", b"not json", TestVerify.BODY])
    def test_the_fallback_detects_anything(self, body: bytes) -> None:
        assert self.PROVIDER.detects({}, body)

    def test_any_secret_and_no_replay_token(self) -> None:
        self.PROVIDER.check_secret("x")
        assert self.PROVIDER.replay_token(TestVerify.BODY) is None


class TestNormalize:
    @pytest.mark.parametrize(
        ("given", "canonical"),
        [
            ("email.open", "email.open"),
            ("email.opened", "email.open"),
            ("opened", "email.open"),
            ("email.click", "email.click"),
            ("clicked", "email.click"),
            ("email.bounce", "email.bounce"),
            ("email.bounced", "email.bounce"),
            ("email.unsubscribe", "email.unsubscribe"),
            ("unsubscribed", "email.unsubscribe"),
            ("delivered", "email.delivered"),
            ("email.delivered", "email.delivered"),
            ("complaint", "email.complaint"),
            ("email.complained", "email.complaint"),
            ("deferred", "email.deferred"),
            ("email.deferred", "email.deferred"),
            ("rejected", "email.rejected"),
            ("email.rejected", "email.rejected"),
            (" Email.Opened ", "email.open"),
        ],
    )
    def test_type_aliases(self, given: str, canonical: str) -> None:
        [event] = normalize({"type": given, "email_id": "msg_abc"})
        assert isinstance(event, Event)
        assert event.type == canonical

    def test_minimal_body(self) -> None:
        body = b'{"type": "email.delivered", "email_id": "msg_abc"}'
        assert generic.normalize(body, {}, received_at=RECEIVED_AT) == [
            Event(
                type="email.delivered",
                email_id="msg_abc",
                occurred_at=RECEIVED_AT,
                provider="generic",
                provider_event_id=hashlib.sha256(body).hexdigest(),
            )
        ]

    def test_every_field(self) -> None:
        [event] = normalize(
            {
                "type": "email.bounce",
                "email_id": "msg_abc",
                "recipient": "user@example.com",
                "timestamp": "2026-03-03T09:15:00.123+01:00",
                "bounce": {"kind": "hard", "reason": "550 no such user"},
                "click": {"url": "https://example.com/x"},
                "metadata": {"campaign": "spring", "n": 3},
                "unknown_extra": [1, 2, 3],
            }
        )
        assert isinstance(event, Event)
        assert event.recipient == "user@example.com"
        assert event.occurred_at == "2026-03-03T08:15:00.123Z"
        assert event.bounce == Bounce(kind="hard", reason="550 no such user")
        assert event.click == Click(url="https://example.com/x")
        assert event.metadata == {"campaign": "spring", "n": 3}

    def test_the_fields_of_the_richer_events(self) -> None:
        [event] = normalize(
            {
                "type": "deferred",
                "email_id": "msg_abc",
                "timestamp": 1772525700,
                "user_agent": "Mail/1.0",
                "mta_response": "421 4.7.0 try again later",
                "reason": "greylisted",
                "bounce": {"kind": "undetermined"},
            }
        )
        assert event == Event(
            type="email.deferred",
            email_id="msg_abc",
            occurred_at="2026-03-03T08:15:00Z",
            provider="generic",
            provider_event_id=event.provider_event_id,
            bounce=Bounce(kind="undetermined"),
            user_agent="Mail/1.0",
            mta_response="421 4.7.0 try again later",
            reason="greylisted",
        )

    @pytest.mark.parametrize(
        ("timestamp", "expected"),
        [
            ("2026-03-03T08:15:00Z", "2026-03-03T08:15:00Z"),
            ("2026-03-03T08:15:00", "2026-03-03T08:15:00Z"),
            ("2026-03-03T03:15:00-05:00", "2026-03-03T08:15:00Z"),
            ("2026-03-03T08:15:00.000Z", "2026-03-03T08:15:00.000Z"),
            ("2026-03-03T08:15:00.9999999Z", "2026-03-03T08:15:00.999Z"),
            (1772525700, "2026-03-03T08:15:00Z"),
            (1772525700.5, "2026-03-03T08:15:00.500Z"),
        ],
    )
    def test_timestamp_becomes_utc_z(self, timestamp: str | float, expected: str) -> None:
        [event] = normalize({"type": "open", "email_id": "m", "timestamp": timestamp})
        assert isinstance(event, Event)
        assert event.occurred_at == expected

    def test_empty_metadata_is_none(self) -> None:
        [event] = normalize({"type": "open", "email_id": "m", "metadata": {}})
        assert isinstance(event, Event)
        assert event.metadata is None

    def test_provider_event_id_is_the_body_hash(self) -> None:
        first = generic.normalize(b'{"type":"open","email_id":"m"}', {}, received_at=RECEIVED_AT)
        again = generic.normalize(b'{"type":"open","email_id":"m"}', {}, received_at=RECEIVED_AT)
        other = generic.normalize(b'{"type":"open","email_id":"n"}', {}, received_at=RECEIVED_AT)
        assert first == again
        assert isinstance(first[0], Event)
        assert isinstance(other[0], Event)
        assert first[0].provider_event_id != other[0].provider_event_id

    @pytest.mark.parametrize("kind", ["email.sent", "processed", "email.delayed", "resubscribe"])
    def test_unknown_type_is_ignored_not_refused(self, kind: str) -> None:
        assert normalize({"type": kind, "email_id": "m"}) == [
            Ignored(provider="generic", provider_type=kind)
        ]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (b'{"email_id": "m"}', "type"),
            (b'{"type": "open"}', "email_id"),
            (b'{"type": "open", "email_id": ""}', "email_id"),
            (b'{"type": "", "email_id": "m"}', "type"),
            (b'{"type": "open", "email_id": 5}', "email_id"),
            (b'{"type": "open", "email_id": "m", "timestamp": "yesterday"}', "timestamp"),
            (b'{"type": "open", "email_id": "m", "timestamp": true}', "timestamp"),
            (
                b'{"type": "open", "email_id": "m", "timestamp": "0001-01-01T00:00+01:00"}',
                "timestamp",
            ),
            (b'{"type": "open", "email_id": "m", "timestamp": "10000-01-01T00:00Z"}', "timestamp"),
            (b'{"type": "open", "email_id": "m", "timestamp": 1e300}', "timestamp"),
            (b'{"type": "bounce", "email_id": "m", "bounce": {"kind": "medium"}}', "bounce.kind"),
            (b'{"type": "click", "email_id": "m", "click": {}}', "click.url"),
            (b'{"type": "open", "email_id": "m", "metadata": [1]}', "metadata"),
            (b'{"type": "open", "email_id": "m", "user_agent": 1}', "user_agent"),
            (b'{"type": "deferred", "email_id": "m", "reason": {}}', "reason"),
        ],
    )
    def test_invalid_fields_are_named(self, body: bytes, field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            generic.normalize(body, {}, received_at=RECEIVED_AT)
        assert info.value.field == field
        assert info.value.message

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"", "not valid JSON"),
            (b"{", "not valid JSON"),
            (b"type=open", "not valid JSON"),
            (b"[]", "Expected `object`, got `array`"),
            (b'"open"', "Expected `object`, got `str`"),
        ],
    )
    def test_wrong_shape(self, body: bytes, message: str) -> None:
        with pytest.raises(InvalidPayload, match=message):
            generic.normalize(body, {}, received_at=RECEIVED_AT)
