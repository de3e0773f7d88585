"""The generic format, for senders that are none of the known providers (pure).

Body: `{"type": "email.delivered", "email_id": "msg_abc", "recipient"?: str, "timestamp"?: ISO
8601 str or unix seconds, "bounce"?: {kind, reason?}, "click"?: {url}, "metadata"?: object,
"user_agent"?, "mta_response"?, "reason"?: str}`.
Signature: `X-Webhook-Signature`, the hex HMAC-SHA256 of the raw body keyed with the secret,
the same scheme as our outbound deliveries (`service.core.signing.signature_hex`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.core.event_types import QUALIFIED_PREFIX
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.core.signing import signature_hex
from service.providers.base import (
    Provider,
    ProviderInput,
    check_hex_digest,
    decode,
    required_header,
)
from service.providers.timestamps import iso_utc

NAME = "generic"
SIGNATURE_HEADER = "x-webhook-signature"

# Both tenses are accepted, with or without the `email.` prefix.
_TYPES = {
    "open": "open",
    "opened": "open",
    "click": "click",
    "clicked": "click",
    "bounce": "bounce",
    "bounced": "bounce",
    "unsubscribe": "unsubscribe",
    "unsubscribed": "unsubscribe",
    "delivered": "delivered",
    "complaint": "complaint",
    "complained": "complaint",
    "deferred": "deferred",
    "rejected": "rejected",
}

NonEmpty = Annotated[str, Meta(min_length=1)]


class _Bounce(ProviderInput):
    kind: Literal["hard", "soft", "undetermined"]
    reason: str | None = None


class _Click(ProviderInput):
    url: str


class _Body(ProviderInput):
    type: NonEmpty
    email_id: NonEmpty
    recipient: str | None = None
    timestamp: str | int | float | None = None
    bounce: _Bounce | None = None
    click: _Click | None = None
    metadata: dict[str, Any] | None = None
    account_id: str | None = None  # the account that sent the email (docs/accounts.md)
    user_agent: str | None = None
    mta_response: str | None = None
    reason: str | None = None


_DECODER = msgspec.json.Decoder(_Body)


def verify(body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
    """Raise InvalidSignature unless `X-Webhook-Signature` is the hex HMAC-SHA256 of `body`
    keyed with `secret` (UTF-8). The scheme has no timestamp, so `now` is unused."""
    given = required_header(headers, SIGNATURE_HEADER)
    check_hex_digest(signature_hex(body, secret), given, what=SIGNATURE_HEADER)


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event (or Ignored, for an unknown type); `occurred_at` falls back to `received_at`
    (ISO 8601 UTC, used as given) when the body has no `timestamp`."""
    parsed = decode(_DECODER, body, provider=NAME)
    kind = _TYPES.get(parsed.type.strip().lower().removeprefix(QUALIFIED_PREFIX))
    if kind is None:
        # Accepted rather than refused: a 4xx makes a sender retry the same body for days.
        return [Ignored(provider=NAME, provider_type=parsed.type)]
    occurred_at = (
        received_at if parsed.timestamp is None else iso_utc(parsed.timestamp, field="timestamp")
    )
    bounce = parsed.bounce
    return [
        Event(
            type=QUALIFIED_PREFIX + kind,
            email_id=parsed.email_id,
            occurred_at=occurred_at,
            provider=NAME,
            recipient=parsed.recipient,
            # The format has no event id; identical bodies are the same event.
            provider_event_id=hashlib.sha256(body).hexdigest(),
            bounce=Bounce(kind=bounce.kind, reason=bounce.reason) if bounce else None,
            click=Click(url=parsed.click.url) if parsed.click else None,
            metadata=parsed.metadata or None,
            account_id=parsed.account_id or None,
            user_agent=parsed.user_agent,
            mta_response=parsed.mta_response,
            reason=parsed.reason,
        )
    ]


class Generic(Provider):
    """The fallback, last in the registry: it takes every request no other provider detects,
    so it is served at the shared URL, which its `summary` describes."""

    name = NAME
    secret_variable = "INBOUND_SECRET"
    summary = "provider events (the provider is detected)"

    # The module's own pure functions (tested as they are), as the protocol's methods.
    verify = staticmethod(verify)
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return True


PROVIDER = Generic()
