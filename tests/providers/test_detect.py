"""Detection over the registry, and every provider against arbitrary bytes and every real sample
under tests/fixtures/providers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.event_types import EVENT_TYPES, QUALIFIED_PREFIX
from service.core.models import Event
from service.core.normalized import Ignored, Normalized
from service.providers import mailgun
from service.providers.base import Provider
from service.providers.detect import detect
from service.providers.registry import BY_NAME, PROVIDERS
from tests import FIXTURES
from tests.signers import (
    FORM,
    PostalSigner,
    SendgridSigner,
    SnsSigner,
    basic_auth,
    mailersend_headers,
    mailgun_body,
    mailgun_legacy_fields,
    mandrill_request,
    multipart,
    resend_headers,
    sns_request,
    urlencoded,
)

SAMPLES_ROOT = FIXTURES / "providers"
NOW = 1_772_532_000
MAILGUN = b'{"signature": {"timestamp": "1", "token": "t", "signature": "s"}, "event-data": {}}'
POSTAL = PostalSigner()
SNS = SnsSigner()


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
            ({"signature": "a" * 64}, b'{"type": "activity.sent"}', "mailersend"),
            ({"signature": "a" * 64}, b"[]", "sendgrid"),
            ({"signature": "a" * 63}, b"{}", "generic"),
            ({"x-mandrill-signature": "x"}, b"mandrill_events=%5B%5D", "mandrill"),
            ({"content-type": FORM}, b"mandrill_events=%5B%5D", "mandrill"),
            ({}, b"mandrill_events=%5B%5D", "generic"),
            ({"content-type": FORM}, b"timestamp=1&token=t&signature=s", "mailgun"),
            ({"content-type": FORM}, b"timestamp=1&token=t", "generic"),
            ({"content-type": "multipart/form-data; boundary=b"}, b"--b\r\n", "generic"),
            ({"content-type": FORM}, b"\xff", "generic"),
            ({"x-amz-sns-message-type": "Notification"}, b"{}", "ses"),
            ({"x-amz-sns-message-type": "Notification"}, b"[]", "ses"),
            ({"x-amz-sns-message-type": " "}, b"{}", "generic"),
            ({"x-amz-sns-message-type": "Notification", "svix-id": "msg_1"}, b"{}", "resend"),
            ({"x-postal-signature": "AAAA"}, b"{}", "postal"),
            ({"x-postal-signature-256": "AAAA"}, b"[]", "postal"),
            ({"x-postal-signature-kid": "ab"}, b"{}", "generic"),
        ],
    )
    def test_table(self, headers: dict[str, str], body: bytes, provider: str) -> None:
        assert detect(headers, body).name == provider

    @pytest.mark.parametrize(
        ("folder", "provider"),
        [
            ("resend", "generic"),
            ("sendgrid", "sendgrid"),
            ("mailgun", "generic"),
            ("mailersend", "generic"),
            ("mandrill", "generic"),
            ("amazon_ses", "generic"),
            ("postal", "generic"),
        ],
    )
    def test_samples_by_body_alone(self, folder: str, provider: str) -> None:
        # Resend, MailerSend, SNS and Postal are known by their headers only; Mailgun's samples
        # are bare `event-data`, Mandrill's the events of a batch, outside their form.
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
    b"a=1&b",
    b"%ff=1",
    b"mandrill_events=%ff",
    b"mandrill_events=" + b"%5B" * 10_000,
    b"mandrill_events=%5B%7B%22event%22%3A%22open%22%7D%5D",
    b"mandrill_events=1&mandrill_events=2",
    b"&" * 5000,
    b"--",
    b"--b\r\n",
    b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
    b'--b\r\nContent-Disposition: form-data; name="event"\r\n\r\nopened\r\n--b',
    b'--b\r\nContent-Disposition: form-data; name="a"; filename="f"\r\n\r\n\xff\r\n--b--',
    b'--b\r\nContent-Disposition: form-data; name="\xff"\r\n\r\nx\r\n--b--',
    b'--b\r\nContent-Disposition: form-data; name="a"\r\nContent-Type: text/plain; '
    b"charset=nope\r\n\r\nx\r\n--b--",
    b"token=t&timestamp=1&signature=b&event=opened",
    b"event=delivered&Message-Id=x&timestamp=99999999999999999999&token=t&signature=s",
    b"event=delivered&Message-Id=x&timestamp=%D9%A1&token=t&signature=s",
    b"event=delivered&Message-Id=x&timestamp=1&message-headers=" + b"%5B" * 10_000,
    b'{"type": "activity.delivered", "data": {"id": "a"}}',
    b'{"type": "activity.opened", "data": {"id": "a", "message_id": "m", "meta": 7}}',
    b'{"type": "webhook.test", "data": 1}',
]

# Headers that get past the presence checks, so each verify really reads the body.
VERIFY_INPUTS: dict[str, tuple[dict[str, str], str]] = {
    "generic": ({"x-webhook-signature": "0" * 64}, "secret"),
    "resend": (
        {"svix-id": "msg_1", "svix-timestamp": str(NOW), "svix-signature": "v1,AAAA"},
        "whsec_AAAA",
    ),
    "sendgrid": (
        {
            "x-twilio-email-event-webhook-signature": "MEUCIQ==",
            "x-twilio-email-event-webhook-timestamp": str(NOW),
        },
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3G"
        "Rqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==",
    ),
    "mailgun": ({}, "key"),
    # Basic auth reads no body: wrong credentials, so each refuses whatever the body.
    "postmark": (basic_auth("user", "wrong"), "user:password"),
    "sparkpost": (basic_auth("user", "wrong"), "user:password"),
    "mailjet": (basic_auth("user", "wrong"), "user:password"),
    "brevo": (basic_auth("user", "wrong"), "user:password"),
    "mailersend": ({"signature": "0" * 64}, "secret"),
    "mandrill": ({"x-mandrill-signature": "AAAA"}, "key"),
    "ses": ({"x-amz-sns-message-type": "Notification"}, ""),
    "postal": ({"x-postal-signature-256": "AAAA"}, POSTAL.public_key),
}
# Folders of samples from providers that are not registered yet: detected as generic.
UNREGISTERED: tuple[str, ...] = ()
# Sample folders named otherwise than their provider.
FOLDERS = {"ses": "amazon_ses"}
CANONICAL_TYPES = {QUALIFIED_PREFIX + name for name in EVENT_TYPES}
RECEIVED_AT = "2026-01-01T00:00:00Z"


def provider_id(provider: Provider) -> str:
    return provider.name


def real_requests() -> list[tuple[str, str, dict[str, str], bytes]]:
    """(folder, sample, headers, body) for every sample under fixtures/providers, sent as its
    provider sends it: Resend with Svix headers, Mailgun's `event-data` inside a signature
    block, SendGrid's batch signed and unsigned, SES events inside a signed SNS message (SNS's
    own samples with their headers), Postal's signed, the others as they are."""
    signer = SendgridSigner()
    found = []
    for folder in sorted(path for path in SAMPLES_ROOT.iterdir() if path.is_dir()):
        for path in sorted(folder.glob("*.json")):
            if "signature" in path.name:
                continue  # test vectors, not requests
            body = path.read_bytes()
            if folder.name == "resend":
                found.append((folder.name, path.name, resend_headers(body, NOW), body))
            elif folder.name == "mailgun":
                found.append((folder.name, path.name, {}, mailgun_body(json.loads(body), NOW)))
            elif folder.name == "sendgrid":
                found.append((folder.name, path.name, signer.headers(body, NOW), body))
                found.append((folder.name, path.name + " unsigned", {}, body))
            elif folder.name == "mailersend":
                found.append((folder.name, path.name, mailersend_headers(body), body))
            elif folder.name == "mandrill":
                form, headers = mandrill_request([json.loads(body)])
                found.append((folder.name, path.name, headers, form))
                found.append((folder.name, path.name + " unsigned", {"content-type": FORM}, form))
            elif folder.name == "amazon_ses":
                found.append((folder.name, path.name, *sns_sample(path)))
            elif folder.name == "postal":
                found.append((folder.name, path.name, POSTAL.headers(body), body))
            else:
                found.append((folder.name, path.name, {}, body))
    for path in sorted((SAMPLES_ROOT / "mailgun" / "legacy").glob("*.json")):
        # anymail's samples leave out fields their test does not need, Message-Id among them.
        sample = {"Message-Id": "<legacy@example.com>", **json.loads(path.read_bytes())}
        fields = mailgun_legacy_fields(sample, NOW)
        for encode in (urlencoded, multipart):
            form, headers = encode(fields)
            found.append(("mailgun", f"legacy/{path.name} {encode.__name__}", headers, form))
    return found


def sns_sample(path: Path) -> tuple[dict[str, str], bytes]:
    """SNS's own samples with the headers they came with; an SES event in a message."""
    if path.name.startswith("sns_"):
        lines = path.with_suffix(".http_headers.txt").read_text().splitlines()[1:]
        headers = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
        return headers, path.read_bytes()
    message = SNS.notification(path.read_text(), datetime.fromtimestamp(NOW, UTC))
    body, headers = sns_request(message)
    return headers, body


REAL_REQUESTS = real_requests()
REAL_BODIES = list(dict.fromkeys(body for _, _, _, body in REAL_REQUESTS))


def owner(folder: str) -> str | None:
    """The provider a sample folder belongs to, or None for one not registered yet."""
    if folder in UNREGISTERED:
        return None
    names = {folder: name for name, folder in FOLDERS.items()}
    return BY_NAME[names.get(folder, folder)].name


class TestRealRequests:
    def test_every_folder_is_known(self) -> None:
        folders = {folder for folder, _, _, _ in REAL_REQUESTS}
        registered = {FOLDERS.get(p.name, p.name) for p in PROVIDERS if p.name != "generic"}
        assert folders == {*registered, *UNREGISTERED}

    @pytest.mark.parametrize(
        ("folder", "headers", "body"),
        [(folder, headers, body) for folder, _, headers, body in REAL_REQUESTS],
        ids=[f"{folder}/{name}" for folder, name, _, _ in REAL_REQUESTS],
    )
    def test_detect_picks_the_sender(
        self, folder: str, headers: dict[str, str], body: bytes
    ) -> None:
        assert detect(headers, body).name == (owner(folder) or "generic")

    @pytest.mark.parametrize(
        ("folder", "headers", "body"),
        [(folder, headers, body) for folder, _, headers, body in REAL_REQUESTS],
        ids=[f"{folder}/{name}" for folder, name, _, _ in REAL_REQUESTS],
    )
    def test_only_the_sender_finds_events_in_the_body(
        self, folder: str, headers: dict[str, str], body: bytes
    ) -> None:
        # Another provider refuses the body, or at most ignores it as an event type of its own
        # it has no mapping for (unknown types are accepted by design: a 4xx is retried).
        results = {p.name: normalized(p, body, headers) for p in PROVIDERS}
        expected = owner(folder)
        assert expected is None or results[expected] is not None
        storing = {
            name
            for name, result in results.items()
            if result and any(isinstance(item, Event) for item in result)
        }
        assert storing <= ({expected} if expected else set())


def outcome(
    provider: Provider, body: bytes, headers: Mapping[str, str] | None = None
) -> list[Normalized] | InvalidPayload:
    """What `provider.normalize` returns, or the InvalidPayload it raises."""
    try:
        return provider.normalize(body, headers or {}, received_at=RECEIVED_AT)
    except InvalidPayload as exc:
        return exc


def normalized(
    provider: Provider, body: bytes, headers: Mapping[str, str] | None = None
) -> list[Normalized] | None:
    """What `provider.normalize` returns, or None when it refuses."""
    result = outcome(provider, body, headers)
    return None if isinstance(result, InvalidPayload) else result


class TestArbitraryBytes:
    @pytest.mark.parametrize("body", NASTY_BODIES)
    def test_detect_never_raises(self, body: bytes) -> None:
        assert detect({}, body) in PROVIDERS

    @pytest.mark.parametrize("body", NASTY_BODIES)
    @pytest.mark.parametrize("provider", PROVIDERS, ids=provider_id)
    def test_verify_only_refuses(self, provider: Provider, body: bytes) -> None:
        headers, secret = VERIFY_INPUTS[provider.name]
        with pytest.raises((InvalidPayload, InvalidSignature)):
            provider.verify(body, headers, secret, now=NOW)
        with pytest.raises((InvalidPayload, InvalidSignature)):
            provider.verify_request(body, headers, secret, now=NOW, url="https://h.example/x")

    @pytest.mark.parametrize("body", NASTY_BODIES + REAL_BODIES)
    @pytest.mark.parametrize("provider", PROVIDERS, ids=provider_id)
    def test_probe_and_detection_never_raise(self, provider: Provider, body: bytes) -> None:
        for headers in ({}, {"content-type": FORM}, {"signature": "a" * 64}):
            assert provider.is_probe(body, headers) in (True, False)
            assert provider.detects(headers, body) in (True, False)

    @pytest.mark.parametrize("body", NASTY_BODIES)
    @pytest.mark.parametrize("provider", PROVIDERS, ids=provider_id)
    def test_signing_key_url_is_none_or_refuses(self, provider: Provider, body: bytes) -> None:
        headers, secret = VERIFY_INPUTS[provider.name]
        try:
            url = provider.signing_key_url(body, headers, secret, now=NOW)
        except (InvalidPayload, InvalidSignature):
            return
        assert url is None

    @pytest.mark.parametrize("body", NASTY_BODIES + REAL_BODIES)
    @pytest.mark.parametrize("provider", PROVIDERS, ids=provider_id)
    def test_normalize_refuses_with_a_reason_or_returns_its_own_events(
        self, provider: Provider, body: bytes
    ) -> None:
        result = outcome(provider, body)
        if isinstance(result, InvalidPayload):
            # A refusal says whose format the body is not, or starts with the field it names.
            named = bool(result.field) and result.message.startswith(f"{result.field} ")
            assert result.message.startswith(f"{provider.name} ") or named, result.message
            return
        assert isinstance(result, list)
        for item in result:
            assert isinstance(item, Event | Ignored)
            assert item.provider == provider.name
            if isinstance(item, Event):
                assert item.type in CANONICAL_TYPES, item.type
                assert item.email_id
                assert item.occurred_at.endswith("Z")

    @pytest.mark.parametrize("body", NASTY_BODIES)
    def test_mailgun_signature_token_returns_a_token_or_refuses(self, body: bytes) -> None:
        try:
            token = mailgun.signature_token(body)
        except (InvalidPayload, InvalidSignature):
            return
        assert token == "t"  # every nasty body with a well-formed signature block uses "t"

    @pytest.mark.parametrize("provider", PROVIDERS, ids=provider_id)
    def test_nasty_bodies_are_refused_by_normalize(self, provider: Provider) -> None:
        results = {body: normalized(provider, body) for body in NASTY_BODIES}
        accepted = {body: result for body, result in results.items() if result is not None}
        if provider.name == "mailersend":
            # An object whose `type` it has no mapping for is ignored, not refused (a 4xx would
            # be retried), whatever else it holds.
            assert all(
                result and all(isinstance(item, Ignored) for item in result)
                for result in accepted.values()
            )
            return
        # Only an empty batch is a valid body among them, for the providers that batch.
        batching = ("sendgrid", "sparkpost", "mailjet", "brevo")
        assert list(accepted) == ([b"[]"] if provider.name in batching else [])
