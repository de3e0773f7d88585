from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import pytest

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Event
from service.core.normalized import Ignored
from service.providers import generic, mailgun, resend, sendgrid
from service.providers.detect import detect

SAMPLES_ROOT = Path(__file__).parent / "fixtures" / "providers"
NOW = 1_772_532_000
MAILGUN = b'{"signature": {"timestamp": "1", "token": "t", "signature": "s"}, "event-data": {}}'


class TestDetect:
    @pytest.mark.parametrize(
        ("headers", "body", "provider"),
        [
            ({"svix-id": "msg_1"}, b'{"type": "email.opened"}', "resend"),
            ({"svix-id": "msg_1"}, b"[]", "resend"),
            ({"x-twilio-email-event-webhook-signature": "MEU="}, b"{}", "sendgrid"),
            ({}, b'[{"event": "open"}]', "sendgrid"),
            ({}, b' \r\n\t[{"event": "open"}]', "sendgrid"),
            ({}, b"[", "sendgrid"),
            ({}, MAILGUN, "mailgun"),
            ({}, b'\n {"event-data": {"event": "opened"}, "signature": {}}', "mailgun"),
            ({}, b'{"signature": {}}', "generic"),
            ({}, b'{"event-data": {}}', "generic"),
            ({}, b'{"data": {"signature": 1, "event-data": 2}}', "generic"),
            ({}, b'{"note": "\\"signature\\" \\"event-data\\""}', "generic"),
            ({}, b'{"signature": {}, "event-data": {}', "generic"),
            ({}, b'{"type": "email.delivered", "email_id": "msg_abc"}', "generic"),
            ({}, b"", "generic"),
            ({"svix-id": ""}, b"{}", "generic"),
            ({"x-webhook-signature": "ab"}, b"{}", "generic"),
        ],
    )
    def test_table(self, headers: dict[str, str], body: bytes, provider: str) -> None:
        assert detect(headers, body).name == provider

    @pytest.mark.parametrize(
        ("folder", "provider"),
        [("resend", "generic"), ("sendgrid", "sendgrid"), ("mailgun", "generic")],
    )
    def test_samples_by_body_alone(self, folder: str, provider: str) -> None:
        # Resend is known by its headers only; Mailgun's samples are bare `event-data`.
        samples = [p for p in (SAMPLES_ROOT / folder).glob("*.json") if "signature" not in p.name]
        assert samples
        assert {detect({}, path.read_bytes()).name for path in samples} == {provider}


NASTY_BODIES = [
    b"",
    b" ",
    b"\x00",
    b"\x00\xff",
    b"\xef\xbb\xbf{}",
    b"[]",
    b"{}",
    b"null",
    b"true",
    b"0",
    b'""',
    b"[1,2]",
    b"[null]",
    b"[[]]",
    b"[{}]",
    b"[" * 10_000,
    b"[" * 10_000 + b"]" * 10_000,
    b"{" * 10_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b"[" + b"9" * 100_000 + b"]",
    b"[1e999]",
    b"-" * 1000,
    b'{"type": "\xff", "email_id": "\xfe"}',
    b'{"type": "open", "email_id": "\\ud800"}',
    b'{"type": "open", "email_id": "m", "timestamp": 1e999}',
    b'{"type": "open", "email_id": "m", "timestamp": -99999999999999999999}',
    b'{"type": "open", "email_id": "m", "metadata": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    b'{"type": "email.opened", "created_at": "\xff", "data": {"email_id": "e"}}',
    b'{"type": "email.opened", "created_at": "2024-01-01T00:00:00Z", "data": "\xff"}',
    b'{"type": "email.opened", "created_at": "0001-01-01T00:00+01:00", "data": {"email_id": "e"}}',
    b'{"type": "contact.updated", "created_at": "2024-01-01T00:00Z", "data": {"unsubscribed": 1}}',
    b'[{"event": "\xff", "timestamp": 1}]',
    b'[{"event": "open", "timestamp": 1e308, "sg_message_id": "m"}]',
    b'[{"event": "open", "timestamp": "9999999999999", "sg_message_id": "m"}]',
    b'[{"event": "open", "timestamp": 1, "sg_message_id": "m", "x": ' + b"[" * 10_000 + b"}]",
    b'{"signature": {"timestamp": "\xff", "token": "t", "signature": "s"}, "event-data": {}}',
    b'{"signature": {"timestamp": "1", "token": "t", "signature": "\xff"}, "event-data": {}}',
    b'{"signature": ' + b"[" * 10_000 + b', "event-data": {}}',
    b'{"signature": {"timestamp": "1", "token": "t", "signature": "s"}, "event-data": 7}',
    b'{"signature": {"timestamp": 99999999999999999999, "token": "t", "signature": "s"}}',
    MAILGUN.replace(b"{}", b'{"event": "failed", "timestamp": -1e20}'),
    b'{"a": 1, "a": 2}',
    "ünïcödé ✓".encode(),
]

# Headers that get past the presence checks, so each verify really reads the body.
PROVIDERS: list[tuple[ModuleType, dict[str, str], str]] = [
    (generic, {"x-webhook-signature": "0" * 64}, "secret"),
    (
        resend,
        {"svix-id": "msg_1", "svix-timestamp": str(NOW), "svix-signature": "v1,AAAA"},
        "whsec_AAAA",
    ),
    (
        sendgrid,
        {
            "x-twilio-email-event-webhook-signature": "MEUCIQ==",
            "x-twilio-email-event-webhook-timestamp": str(NOW),
        },
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3G"
        "Rqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==",
    ),
    (mailgun, {}, "key"),
]


def normalized(module: ModuleType, body: bytes) -> object:
    """What `module.normalize` returns, or None when it refuses with InvalidPayload."""
    try:
        result: object = module.normalize(body, {}, received_at="2026-01-01T00:00:00Z")
    except InvalidPayload:
        return None
    return result


class TestArbitraryBytes:
    @pytest.mark.parametrize("body", NASTY_BODIES)
    def test_detect_never_raises(self, body: bytes) -> None:
        assert detect({}, body).name in {"generic", "resend", "sendgrid", "mailgun"}

    @pytest.mark.parametrize("body", NASTY_BODIES)
    @pytest.mark.parametrize(("module", "headers", "secret"), PROVIDERS)
    def test_verify_only_refuses(
        self, module: ModuleType, headers: Mapping[str, str], secret: str, body: bytes
    ) -> None:
        with pytest.raises((InvalidPayload, InvalidSignature)):
            module.verify(body, headers, secret, now=NOW)

    @pytest.mark.parametrize("body", NASTY_BODIES)
    @pytest.mark.parametrize("module", [generic, resend, sendgrid, mailgun])
    def test_normalize_refuses_or_returns_events(self, module: ModuleType, body: bytes) -> None:
        result = normalized(module, body)
        if result is not None:
            assert isinstance(result, list)
            assert all(isinstance(item, Event | Ignored) for item in result)

    @pytest.mark.parametrize("body", NASTY_BODIES)
    def test_mailgun_signature_token_returns_a_token_or_refuses(self, body: bytes) -> None:
        try:
            token = mailgun.signature_token(body)
        except (InvalidPayload, InvalidSignature):
            return
        assert token == "t"  # every nasty body with a well-formed signature block uses "t"

    @pytest.mark.parametrize("module", [generic, resend, sendgrid, mailgun])
    def test_nasty_bodies_are_refused_by_normalize(self, module: ModuleType) -> None:
        accepted = [body for body in NASTY_BODIES if normalized(module, body) is not None]
        # Only an empty SendGrid batch is a valid body among them.
        assert accepted == ([b"[]"] if module is sendgrid else [])
