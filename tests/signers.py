"""Test-side signers: build provider requests signed exactly as each provider documents,
independently of the code under test (see tests/fixtures/providers/README.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

RESEND_SECRET = "whsec_" + base64.b64encode(b"resend-test-signing-key-32bytes!").decode()
INBOUND_SECRET = "generic-inbound-secret"
MAILGUN_KEY = "mailgun-signing-key-for-tests"


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
