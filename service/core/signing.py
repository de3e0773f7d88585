"""Webhook secrets and outbound signatures (pure)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)


def generate_secret() -> str:
    """`whsec_` + base64 of 24 random bytes, the Standard Webhooks secret format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def signature_hex(body: bytes, secret: str) -> str:
    """`X-Webhook-Signature`: hex HMAC-SHA256 of the raw body keyed with the secret's UTF-8."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_webhooks_key(secret: str) -> bytes:
    """The Standard Webhooks HMAC key: base64-decoded after `whsec_`, else the secret's UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except binascii.Error:
            pass  # a customer's own secret that merely starts with whsec_
    return secret.encode("utf-8")


def standard_webhooks_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def delivery_headers(
    *,
    secret: str,
    delivery_id: str,
    timestamp: int,
    body: bytes,
    user_agent: str,
    previous_secrets: Sequence[str] = (),
    custom: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """Every header a delivery carries (the API page's scheme plus Standard Webhooks').

    `X-Webhook-Signature` is the current secret's alone (the API page's verifyWebhook compares
    one hex value); `webhook-signature` adds one `v1,…` per live `previous_secrets` (a rotation's
    overlap), space-separated. `custom` (the endpoint's own headers, never ours: see
    service.core.headers) come first."""
    signature = standard_webhooks_signature(secret, delivery_id, timestamp, body)
    for previous in previous_secrets:
        signature += " " + standard_webhooks_signature(previous, delivery_id, timestamp, body)
    headers = {
        "content-type": "application/json",
        "user-agent": user_agent,
        "x-webhook-signature": signature_hex(body, secret),
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    if not custom:
        return headers
    with_custom = dict(custom)
    with_custom.update(headers)
    return with_custom
