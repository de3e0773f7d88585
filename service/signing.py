"""Webhook secrets and outbound signatures (pure)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)


def generate_secret() -> str:
    """`whsec_` + base64 of 24 random bytes, the Standard Webhooks secret format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def signature_hex(body: bytes, secret: str) -> str:
    """`X-Webhook-Signature`: hex HMAC-SHA256 of the raw body keyed with the secret's UTF-8."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
