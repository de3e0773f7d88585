from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import postal
from service.providers.registry import BY_NAME
from tests import FIXTURES
from tests.signers import PostalSigner

SAMPLES = FIXTURES / "providers" / "postal"
SIGNER = PostalSigner()
OTHER = PostalSigner()
SENT_AT = 1477945177.12994  # every sample's `timestamp`
MESSAGE_ID = "5817a64332f44_4ec93ff59e79d154565eb@app34.mail"
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_6) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/54.0.2840.98 Safari/537.36"
)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return loaded


def normalize(body: bytes) -> list[Event | Ignored]:
    return postal.normalize(body, {}, received_at="2026-03-03T10:00:00Z")


class TestVerify:
    body = (SAMPLES / "message_sent.json").read_bytes()

    @pytest.mark.parametrize(
        ("sha1", "sha256"), [(True, True), (False, True), (True, False)], ids=["both", "256", "1"]
    )
    def test_either_header(self, sha1: bool, sha256: bool) -> None:
        headers = SIGNER.headers(self.body, sha1=sha1, sha256=sha256)
        postal.verify(self.body, headers, SIGNER.public_key, now=SENT_AT)

    @pytest.mark.parametrize(
        "key",
        [
            SIGNER.public_key,
            SIGNER.public_key_pem,
            f"v=DKIM1; t=s; h=sha256; p={SIGNER.public_key};",
            f'"v=DKIM1; t=s; h=sha256; p={SIGNER.public_key}"',
        ],
        ids=["b64", "pem", "dkim-record", "quoted-dkim-record"],
    )
    def test_key_formats(self, key: str) -> None:
        postal.verify(self.body, SIGNER.headers(self.body), key, now=SENT_AT)

    def test_a_pem_with_escaped_newlines(self) -> None:
        key = SIGNER.public_key_pem.replace("\n", "\\n")
        postal.verify(self.body, SIGNER.headers(self.body), key, now=SENT_AT)

    def test_the_sha256_signature_wins(self) -> None:
        # A valid SHA1 signature cannot stand in for a broken SHA256 one.
        headers = SIGNER.headers(self.body)
        headers["x-postal-signature-256"] = OTHER.headers(self.body)["x-postal-signature-256"]
        with pytest.raises(InvalidSignature, match="x-postal-signature-256 does not match"):
            postal.verify(self.body, headers, SIGNER.public_key, now=SENT_AT)

    @pytest.mark.parametrize(
        ("body", "headers", "message"),
        [
            (body + b" ", SIGNER.headers(body), "does not match"),
            (body.replace(b"test@example.com", b"x@example.com"), SIGNER.headers(body), "match"),
            (body, OTHER.headers(body), "does not match"),
            (body, SIGNER.headers(body, sha256=False) | {"x-postal-signature": "!!"}, "base64"),
            (body, {}, "missing x-postal-signature-256 and x-postal-signature"),
            (body, {"x-postal-signature-256": " "}, "missing"),
        ],
        ids=["appended", "tampered", "other-key", "not-base64", "unsigned", "blank"],
    )
    def test_refused(self, body: bytes, headers: dict[str, str], message: str) -> None:
        with pytest.raises(InvalidSignature, match=message):
            postal.verify(body, headers, SIGNER.public_key, now=SENT_AT)

    @pytest.mark.parametrize(
        ("offset", "message"), [(12 * 3600 + 1, "too old"), (-12 * 3600 - 1, "in the future")]
    )
    def test_outside_twelve_hours(self, offset: float, message: str) -> None:
        headers = SIGNER.headers(self.body)
        postal.verify(self.body, headers, SIGNER.public_key, now=SENT_AT + 12 * 3600)
        with pytest.raises(InvalidSignature, match=f"timestamp is {message}"):
            postal.verify(self.body, headers, SIGNER.public_key, now=SENT_AT + offset)

    def test_without_freshness(self) -> None:
        postal.verify(
            self.body, SIGNER.headers(self.body), SIGNER.public_key, now=0, tolerance=None
        )

    @pytest.mark.parametrize("body", [b"not json", b"{}", b'{"event": "MessageSent"}'])
    def test_a_signed_body_without_a_timestamp(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload):
            postal.verify(body, SIGNER.headers(body), SIGNER.public_key, now=SENT_AT)


class TestPublicKey:
    def test_the_same_key_from_either_format(self) -> None:
        assert (
            postal.public_key(SIGNER.public_key).public_numbers()
            == postal.public_key(SIGNER.public_key_pem).public_numbers()
        )

    def test_pkcs1_pem(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        assert postal.public_key(pem.decode()).public_numbers() == key.public_numbers()

    @pytest.mark.parametrize(
        ("secret", "message"),
        [
            ("not a key", "not PEM or base64 DER"),
            ("AAAA", "not PEM or base64 DER"),
            ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not PEM"),
            (
                base64.b64encode(
                    ec.generate_private_key(ec.SECP256R1())
                    .public_key()
                    .public_bytes(
                        serialization.Encoding.DER,
                        serialization.PublicFormat.SubjectPublicKeyInfo,
                    )
                ).decode(),
                "not an RSA key",
            ),
        ],
        ids=["text", "short", "bad-pem", "ec-key"],
    )
    def test_refused_at_start_up(self, secret: str, message: str) -> None:
        with pytest.raises(InvalidSignature, match=message) as info:
            BY_NAME["postal"].check_secret(secret)
        assert secret not in str(info.value)


def event(type_: str, uuid_suffix: str, **fields: Any) -> Event:
    defaults: dict[str, Any] = {
        "email_id": MESSAGE_ID,
        "occurred_at": "2016-10-31T20:19:37.129Z",
        "provider": "postal",
        "recipient": "test@example.com",
        "provider_event_id": "820b47a4-4dfd-42e4-ae6a-1e5bed5a" + uuid_suffix,
        "metadata": {"tags": ["welcome"]},
    }
    return Event(type=type_, **{**defaults, **fields})


EXPECTED: dict[str, list[Event | Ignored]] = {
    "message_sent.json": [
        event(
            "email.delivered",
            "33fd",
            mta_response="250 2.0.0 OK 1477944899 ly2si31746747wjb.95 - gsmtp",
        )
    ],
    "message_delayed.json": [
        event(
            "email.deferred",
            "3301",
            reason=(
                "Temporary SMTP delivery error when sending to aspmx.l.google.com "
                "(2a00:1450:400c:c0b::1b)"
            ),
            mta_response="451 4.7.1 Greylisting in action, please come back later",
        )
    ],
    "message_delivery_failed.json": [
        event(
            "email.bounce",
            "3302",
            bounce=Bounce(
                kind="hard",
                reason=(
                    "Permanent SMTP delivery error when sending to aspmx.l.google.com "
                    "(2a00:1450:400c:c0b::1b)"
                ),
            ),
            mta_response="550 5.1.1 The email account that you tried to reach does not exist.",
        )
    ],
    "message_delivery_failed_max_attempts.json": [
        event(
            "email.bounce",
            "3303",
            bounce=Bounce(
                kind="soft",
                reason=sample("message_delivery_failed_max_attempts.json")["payload"]["details"],
            ),
        )
    ],
    "message_held.json": [
        event(
            "email.rejected",
            "3304",
            reason=(
                "Recipient (test@example.com) is on the suppression list "
                "(reason: too many hard fails)"
            ),
        )
    ],
    "message_bounced.json": [event("email.bounce", "3305", bounce=Bounce(kind="undetermined"))],
    "message_link_clicked.json": [
        event("email.click", "3306", click=Click(url="https://atech.media"), user_agent=USER_AGENT)
    ],
    "message_loaded.json": [event("email.open", "3307", user_agent=USER_AGENT)],
    "domain_dns_error.json": [Ignored(provider="postal", provider_type="DomainDNSError")],
    "send_limit_approaching.json": [
        Ignored(provider="postal", provider_type="SendLimitApproaching")
    ],
}


class TestNormalize:
    def test_every_sample_is_expected(self) -> None:
        assert {p.name for p in SAMPLES.glob("*.json")} == set(EXPECTED)

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_sample(self, name: str) -> None:
        assert normalize((SAMPLES / name).read_bytes()) == EXPECTED[name]

    def test_a_hard_fail_of_postals_own_is_rejected(self) -> None:
        failed = sample("message_delivery_failed.json")
        failed["payload"]["output"] = ""
        failed["payload"]["details"] = (
            "Message is likely spam. Threshold is 5 and the message scored 7.2."
        )
        [found] = normalize(json.dumps(failed).encode())
        assert isinstance(found, Event)
        assert (found.type, found.reason, found.bounce) == (
            "email.rejected",
            failed["payload"]["details"],
            None,
        )

    def test_a_sent_message_without_output_keeps_the_details(self) -> None:
        sent = sample("message_sent.json")
        sent["payload"]["output"] = ""
        [found] = normalize(json.dumps(sent).encode())
        assert isinstance(found, Event)
        assert found.mta_response == sent["payload"]["details"]

    @pytest.mark.parametrize("name", ["message_sent.json", "message_bounced.json"])
    def test_incoming_messages_are_ignored(self, name: str) -> None:
        # Mail Postal received and passed on to an endpoint is not mail we sent.
        body = sample(name)
        message = body["payload"].get("message") or body["payload"]["original_message"]
        message["direction"] = "incoming"
        [found] = normalize(json.dumps(body).encode())
        assert found == Ignored(provider="postal", provider_type=f"{body['event']}.incoming")

    def test_no_tag_no_metadata(self) -> None:
        body = sample("message_loaded.json")
        body["payload"]["message"]["tag"] = None
        [found] = normalize(json.dumps(body).encode())
        assert isinstance(found, Event)
        assert found.metadata is None

    def test_a_message_id_in_angle_brackets(self) -> None:
        body = sample("message_loaded.json")
        body["payload"]["message"]["message_id"] = f"<{MESSAGE_ID}>"
        [found] = normalize(json.dumps(body).encode())
        assert isinstance(found, Event)
        assert found.email_id == MESSAGE_ID

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"event": None}, "event"),
            ({"timestamp": "yesterday"}, "timestamp"),
            ({"payload": {}}, "payload.message"),
            ({"payload": {"message": {"to": "x@example.com"}}}, "payload.message.message_id"),
            ({"payload": {"message": {"message_id": 5}}}, "payload.message.message_id"),
        ],
    )
    def test_invalid_bodies_name_the_field(self, change: dict[str, Any], field: str) -> None:
        body = {**sample("message_sent.json"), **change}
        body = {key: value for key, value in body.items() if value is not None}
        with pytest.raises(InvalidPayload) as info:
            normalize(json.dumps(body).encode())
        assert info.value.field == field


class TestProvider:
    provider = BY_NAME["postal"]

    @pytest.mark.parametrize(
        ("headers", "detected"),
        [
            ({"x-postal-signature": "AAAA"}, True),
            ({"x-postal-signature-256": "AAAA"}, True),
            ({"x-postal-signature-kid": "ab"}, False),
            ({}, False),
        ],
    )
    def test_detected_by_its_signature_headers(
        self, headers: dict[str, str], detected: bool
    ) -> None:
        assert self.provider.detects(headers, b"{}") is detected

    def test_verify_with_its_tolerance(self) -> None:
        body = (SAMPLES / "message_sent.json").read_bytes()
        self.provider.verify(body, SIGNER.headers(body), SIGNER.public_key, now=SENT_AT + 3600)
        assert self.provider.tolerance_seconds == 12 * 3600


def test_the_signer_signs_as_postal() -> None:
    """The test signer's headers, checked with `cryptography` directly."""
    body = b'{"event": "MessageSent"}'
    headers = SIGNER.headers(body)
    key = load_pem_public_key(SIGNER.public_key_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    for name, algorithm in (
        ("x-postal-signature", hashes.SHA1()),  # noqa: S303
        ("x-postal-signature-256", hashes.SHA256()),
    ):
        key.verify(base64.b64decode(headers[name]), body, padding.PKCS1v15(), algorithm)
