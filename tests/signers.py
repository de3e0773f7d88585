"""Test-side signers: build provider requests signed exactly as each provider documents,
independently of the code under test (see tests/fixtures/providers/README.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

RESEND_SECRET = "whsec_" + base64.b64encode(b"resend-test-signing-key-32bytes!").decode()
INBOUND_SECRET = "generic-inbound-secret"
MAILGUN_KEY = "mailgun-signing-key-for-tests"
MAILERSEND_SECRET = "mailersend-signing-secret-for-tests"
MANDRILL_KEY = "mandrill-webhook-key-for-tests"
MANDRILL_URL = "https://hooks.example.com/api/webhooks/mandrill"
FORM = "application/x-www-form-urlencoded"


def basic_auth(user: str, password: str) -> dict[str, str]:
    """`Authorization: Basic base64(user:password)`, as Postmark, SparkPost, Mailjet and Brevo
    send the credentials of a webhook URL such as `https://user:password@host/...`."""
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"content-type": "application/json", "authorization": f"Basic {credentials}"}


def bearer(token: str) -> dict[str, str]:
    """`Authorization: Bearer <token>`, as Brevo sends a webhook's `auth` token."""
    return {"content-type": "application/json", "authorization": f"Bearer {token}"}


def generic_headers(body: bytes, secret: str = INBOUND_SECRET) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-webhook-signature": signature}


def resend_headers(
    body: bytes, timestamp: float, msg_id: str = "msg_test", secret: str = RESEND_SECRET
) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    ts = str(int(timestamp))
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": ts,
        "svix-signature": "v1," + base64.b64encode(digest).decode(),
    }


class SendgridSigner:
    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: float) -> dict[str, str]:
        ts = str(int(timestamp))
        signature = self._key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "content-type": "application/json",
            "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
            "x-twilio-email-event-webhook-timestamp": ts,
        }


def mailgun_body(
    event_data: dict[str, Any],
    timestamp: float,
    token: str | None = None,
    key: str = MAILGUN_KEY,
) -> bytes:
    token = token or secrets.token_hex(25)
    ts = str(int(timestamp))
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    block = {"timestamp": ts, "token": token, "signature": signature}
    return json.dumps({"signature": block, "event-data": event_data}).encode()


def mailersend_headers(body: bytes, secret: str = MAILERSEND_SECRET) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "signature": signature}


def mandrill_request(
    events: list[Any] | str, url: str = MANDRILL_URL, key: str = MANDRILL_KEY
) -> tuple[bytes, dict[str, str]]:
    """A form body `mandrill_events=<JSON>` and its headers, signed over `url` + the field as
    Mandrill documents; `events` given as a string is sent as it is."""
    value = events if isinstance(events, str) else json.dumps(events)
    signed = url + "mandrill_events" + value
    digest = hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()
    body = urllib.parse.urlencode({"mandrill_events": value}).encode()
    return body, {"content-type": FORM, "x-mandrill-signature": base64.b64encode(digest).decode()}


FieldValues = dict[str, "str | list[str]"]


def mailgun_legacy_fields(
    fields: FieldValues, timestamp: float, token: str | None = None, key: str = MAILGUN_KEY
) -> list[tuple[str, str]]:
    """The form's fields in order, signed: the *last* timestamp, token and signature values are
    Mailgun's (earlier ones are custom variables of the same names), set or replaced here."""
    pairs = [
        (name, item)
        for name, value in fields.items()
        for item in (value if isinstance(value, list) else [value])
    ]
    ts = str(int(timestamp))
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    for name, value in (("timestamp", ts), ("token", token), ("signature", signature)):
        last = max((i for i, (n, _) in enumerate(pairs) if n == name), default=None)
        if last is None:
            pairs.append((name, value))
        else:
            pairs[last] = (name, value)
    return pairs


def urlencoded(pairs: list[tuple[str, str]]) -> tuple[bytes, dict[str, str]]:
    return urllib.parse.urlencode(pairs).encode(), {"content-type": FORM}


def multipart(
    pairs: list[tuple[str, str]], files: dict[str, bytes] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of `pairs`, then `files` (name → content) as file parts."""
    boundary = "mailhooks-" + secrets.token_hex(8)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode()
        + b"\r\n"
        for name, value in pairs
    ]
    for name, content in (files or {}).items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}.eml"\r\nContent-Type: message/rfc822\r\n\r\n'
        )
        parts.append(head.encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


# Amazon SNS signs these fields of each message type, in this order (AWS's "Verifying the
# signatures of Amazon SNS messages"); a Notification's Subject only when it has one.
SNS_SIGNED_FIELDS = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ],
    "UnsubscribeConfirmation": [
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ],
}  # fmt: skip
SNS_TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    names = SNS_SIGNED_FIELDS[message["Type"]]
    return "".join(f"{name}\n{message[name]}\n" for name in names if name in message).encode()


def self_signed(key: rsa.RSAPrivateKey, common_name: str) -> bytes:
    """A PEM certificate of `key`'s public key, signed by itself."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365 * 20))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


class SnsSigner:
    """An RSA key and its self-signed certificate, standing in for SNS's: builds messages signed
    as SNS signs them (`cert_url` is where the test serves `certificate`)."""

    def __init__(self, cert_url: str = "https://sns.us-west-2.amazonaws.com/test.pem") -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.certificate = self_signed(self._key, "sns.amazonaws.com")
        self.cert_url = cert_url

    def sign(self, message: dict[str, Any]) -> dict[str, Any]:
        """`message` with SignatureVersion (kept if set, else "1"), SigningCertURL (kept if
        set) and its Signature."""
        signed = {"SignatureVersion": "1", "SigningCertURL": self.cert_url, **message}
        sha1 = signed["SignatureVersion"] == "1"  # what SignatureVersion 1 means
        algorithm = hashes.SHA1() if sha1 else hashes.SHA256()  # noqa: S303
        signature = self._key.sign(sns_string_to_sign(signed), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode()
        return signed

    def notification(
        self,
        message: str | dict[str, Any],
        timestamp: datetime,
        *,
        message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        topic: str = SNS_TOPIC,
        version: str = "1",
        **fields: Any,
    ) -> dict[str, Any]:
        """A signed Notification whose Message is `message` (a dict is sent as JSON text)."""
        return self.sign(
            {
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": topic,
                "Message": message if isinstance(message, str) else json.dumps(message),
                "Timestamp": sns_timestamp(timestamp),
                "SignatureVersion": version,
                "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
                **fields,
            }
        )


def sns_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sns_request(message: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers SNS posts a message with."""
    headers = {
        "content-type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": message["Type"],
        "x-amz-sns-message-id": message["MessageId"],
        "x-amz-sns-topic-arn": message["TopicArn"],
        "user-agent": "Amazon Simple Notification Service Agent",
    }
    return json.dumps(message, indent=2).encode(), headers


class PostalSigner:
    """A Postal server's RSA signing key: signs bodies as Postal 3 does (both headers)."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self._key.public_key()
        self.public_key_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()  # as in Postal's DKIM record

    def signature(self, body: bytes, algorithm: hashes.HashAlgorithm) -> str:
        return base64.b64encode(self._key.sign(body, padding.PKCS1v15(), algorithm)).decode()

    def headers(self, body: bytes, *, sha1: bool = True, sha256: bool = True) -> dict[str, str]:
        headers = {"content-type": "application/json", "user-agent": "Postal/3.3.7"}
        if sha1:
            # The legacy header every Postal version sends.
            headers["x-postal-signature"] = self.signature(body, hashes.SHA1())  # noqa: S303
        if sha256:
            headers["x-postal-signature-256"] = self.signature(body, hashes.SHA256())
            headers["x-postal-signature-kid"] = "0" * 64
        return headers
