"""Mailgun's JSON webhooks (pure).

Body: `{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}`, one event per
request. Signature: hex HMAC-SHA256 of timestamp + token keyed with the webhook signing key.
The body itself is not signed, so a captured request can be replayed with other event data
until its token is refused: the caller records `signature_token(body)` and rejects repeats.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers.base import (
    TOLERANCE_SECONDS,
    Provider,
    ProviderInput,
    check_hex_digest,
    decode,
    json_start,
)
from service.providers.timestamps import check_fresh, iso_utc

NAME = "mailgun"
# Mailgun retries a failed delivery for about 8 hours with the original signature block, so
# its timestamp check must outlast that; replays inside the window are caught by the token.
MAILGUN_TOLERANCE_SECONDS = 12 * 3600

# accepted, rejected, stored, list events, ... are Ignored.
_TYPES = {
    "delivered": "email.delivered",
    "failed": "email.bounce",
    "opened": "email.open",
    "clicked": "email.click",
    "unsubscribed": "email.unsubscribe",
    "complained": "email.complaint",
}


class _Signature(ProviderInput):
    timestamp: str | int
    token: Annotated[str, Meta(min_length=1)]
    signature: str


class _Headers(ProviderInput):
    message_id: str | None = msgspec.field(default=None, name="message-id")


class _Message(ProviderInput):
    headers: _Headers | None = None


class _DeliveryStatus(ProviderInput):
    description: str | None = None
    message: str | None = None
    bounce_type: str | None = msgspec.field(default=None, name="bounce-type")


class _EventData(ProviderInput):
    event: Annotated[str, Meta(min_length=1)]
    timestamp: int | float
    id: str | None = None
    recipient: str | None = None
    message: _Message | None = None
    severity: str | None = None
    reason: str | None = None
    delivery_status: _DeliveryStatus | None = msgspec.field(default=None, name="delivery-status")
    url: str | None = None
    tags: list[Any] | None = None
    # An object when set, but `[]` when empty (as in every sample).
    user_variables: dict[str, Any] | list[Any] | None = msgspec.field(
        default=None, name="user-variables"
    )


class _Body(ProviderInput):
    signature: _Signature
    event_data: _EventData = msgspec.field(name="event-data")


_TOP_LEVEL = msgspec.json.Decoder(dict[str, msgspec.Raw])
_SIGNATURE = msgspec.json.Decoder(_Signature)
_BODY = msgspec.json.Decoder(_Body)


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    now: float,
    tolerance: float | None = TOLERANCE_SECONDS,
) -> None:
    """Raise InvalidSignature unless `signature.signature` is the HMAC of timestamp + token
    under the signing key `secret` and the timestamp is within `tolerance` of `now`.

    A body that is not a JSON object raises InvalidPayload (it cannot be a Mailgun request at
    all); a missing or malformed signature block raises InvalidSignature (it is unsigned)."""
    block = _signature_block(body)
    timestamp = str(block.timestamp)
    check_fresh(timestamp, now=now, tolerance=tolerance, name="signature.timestamp")
    signed = (timestamp + block.token).encode()
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    check_hex_digest(expected, block.signature, what="signature.signature")


def signature_token(body: bytes) -> str:
    """`signature.token`, unique per request: record it and refuse repeats to stop replays.
    Raises like `verify` when there is no signature block."""
    return _signature_block(body).token


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored; `email_id` is the Message-ID without angle brackets and
    `provider_event_id` is `event-data.id:signature.token`."""
    parsed = decode(_BODY, body, provider=NAME)
    data = parsed.event_data
    canonical = _TYPES.get(data.event)
    if canonical is None:
        return [Ignored(provider=NAME, provider_type=data.event)]
    headers_ = data.message.headers if data.message else None
    email_id = (headers_.message_id if headers_ else None) or ""
    email_id = email_id.strip().removeprefix("<").removesuffix(">").strip()
    if not email_id:
        raise InvalidPayload(
            "mailgun payload: event has no message id",
            field="event-data.message.headers.message-id",
        )
    token = parsed.signature.token
    return [
        Event(
            type=canonical,
            email_id=email_id,
            occurred_at=iso_utc(data.timestamp, field="event-data.timestamp"),
            provider=NAME,
            recipient=data.recipient,
            provider_event_id=f"{data.id}:{token}" if data.id else token,
            bounce=_bounce(data) if canonical == "email.bounce" else None,
            click=Click(url=data.url) if canonical == "email.click" and data.url else None,
            metadata=_metadata(data),
        )
    ]


def _signature_block(body: bytes) -> _Signature:
    top = decode(_TOP_LEVEL, body, provider=NAME)
    raw = top.get("signature")
    if raw is None:
        raise InvalidSignature("mailgun body has no signature block")
    try:
        return _SIGNATURE.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidSignature(f"malformed mailgun signature block: {exc}") from None


def _bounce(data: _EventData) -> Bounce:
    # `severity` is what Mailgun acts on (temporary failures are retried); newer payloads also
    # carry `delivery-status.bounce-type`. With neither, soft: hard would end the address.
    status = data.delivery_status or _DeliveryStatus()
    kind: Literal["hard", "soft"]
    if data.severity in ("permanent", "temporary"):
        kind = "hard" if data.severity == "permanent" else "soft"
    else:
        kind = "hard" if status.bounce_type == "hard" else "soft"
    return Bounce(kind=kind, reason=status.description or status.message or data.reason)


def _metadata(data: _EventData) -> dict[str, Any] | None:
    """User variables as they are, plus the message's `tags` (which win a name clash)."""
    metadata = dict(data.user_variables) if isinstance(data.user_variables, dict) else {}
    if data.tags:
        metadata["tags"] = data.tags
    return metadata or None


def _has_mailgun_keys(body: bytes) -> bool:
    # The substring test spares decoding every generic body.
    if b'"event-data"' not in body or b'"signature"' not in body:
        return False
    try:
        keys = _TOP_LEVEL.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    return "signature" in keys and "event-data" in keys


class Mailgun(Provider):
    """Recognised by a JSON object with `signature` and `event-data` keys. Its signature does
    not cover the body, so `signature.token` is its replay token."""

    name = NAME
    secret_variable = "MAILGUN_WEBHOOK_SIGNING_KEY"
    summary = "a Mailgun event (HMAC-signed token)"
    tolerance_seconds = MAILGUN_TOLERANCE_SECONDS
    replay_token_field = "signature.token"

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
        verify(body, headers, secret, now=now, tolerance=self.tolerance_seconds)

    # The module's own pure function (tested as it is), as the protocol's method.
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return json_start(body) == b"{" and _has_mailgun_keys(body)

    def replay_token(self, body: bytes) -> str | None:
        return signature_token(body)


PROVIDER = Mailgun()
