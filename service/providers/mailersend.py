"""MailerSend's activity webhooks (pure).

Body: `{"type": "activity.delivered", "created_at": ISO, "data": {...}}`, one event per request,
in one of two shapes: webhooks 2.0 (`data.message_id`, `data.recipient` or `data.email` as a
string, `data.tags`, `data.meta`) or 1.0 (`data.email.message.id`, `data.email.recipient.email`,
`data.email.tags`, `data.morph`). Signature: the `Signature` header, hex HMAC-SHA256 of the raw
body keyed with the webhook's signing secret. Nothing signed carries a time, so a captured
request can be replayed: de-duplication by `data.id` is what stores it once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.core.errors import InvalidPayload
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers.base import (
    Provider,
    ProviderInput,
    check_hex_digest,
    decode,
    header,
    json_start,
    required_header,
)
from service.providers.timestamps import iso_utc

NAME = "mailersend"
SIGNATURE_HEADER = "signature"
# Sent when a webhook is saved or tested from the dashboard; it carries no `data`.
PING_TYPE = "webhook.test"

# activity.sent, activity.survey_*, sender_identity.*, maintenance.*, ... are Ignored.
_TYPES = {
    "activity.delivered": "email.delivered",
    "activity.soft_bounced": "email.bounce",
    "activity.hard_bounced": "email.bounce",
    "activity.deferred": "email.deferred",
    "activity.opened": "email.open",
    "activity.opened_unique": "email.open",
    "activity.clicked": "email.click",
    "activity.clicked_unique": "email.click",
    "activity.unsubscribed": "email.unsubscribe",
    "activity.spam_complaint": "email.complaint",
    "activity.suppressed": "email.rejected",
}
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


_NULL = msgspec.Raw(b"null")


class _Envelope(ProviderInput):
    type: Annotated[str, Meta(min_length=1)]
    created_at: str | None = None
    data: msgspec.Raw = _NULL  # decoded only once the type says it is an email event


class _Id(ProviderInput):
    id: str | None = None


class _Recipient(ProviderInput):
    email: str | None = None


class _Email(ProviderInput):
    """1.0's `data.email`."""

    id: str | None = None
    message: _Id | None = None
    recipient: _Recipient | None = None
    tags: list[Any] | None = None


class _Details(ProviderInput):
    """1.0's `data.morph` and 2.0's `data.meta`, whose fields overlap."""

    reason: str | None = None
    url: str | None = None
    user_agent: str | None = None
    bounce_reason: str | None = None
    bounce_code: int | str | None = None
    suppression_reason: str | None = None


class _Data(ProviderInput):
    id: Annotated[str, Meta(min_length=1)]
    created_at: str | None = None
    message_id: str | None = None  # 2.0
    email_id: str | None = None  # 2.0
    recipient: str | None = None  # 2.0, as MailerSend sends it
    email: _Email | str | None = None  # 1.0 object; 2.0 recipient, as the docs' sample has it
    tags: list[Any] | None = None  # 2.0
    meta: _Details | list[Any] | None = None  # 2.0; `[]` when empty
    morph: _Details | None = None  # 1.0


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_DATA = msgspec.json.Decoder(_Data)


def verify(body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
    """Raise InvalidSignature unless the `Signature` header is the hex HMAC-SHA256 of `body`
    keyed with `secret`. The scheme has no timestamp, so `now` is unused."""
    given = required_header(headers, SIGNATURE_HEADER)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    check_hex_digest(expected, given, what=f"{SIGNATURE_HEADER} header")


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored; `provider_event_id` is `data.id` (the activity's id) and
    `email_id` the message id the send API returned."""
    envelope = decode(_ENVELOPE, body, provider=NAME)
    canonical = _TYPES.get(envelope.type)
    if canonical is None:
        return [Ignored(provider=NAME, provider_type=envelope.type)]
    if bytes(envelope.data) == bytes(_NULL):
        raise InvalidPayload("mailersend payload: an activity needs data", field="data")
    data = decode(_DATA, envelope.data, provider=NAME, at="data")
    email = data.email if isinstance(data.email, _Email) else _Email()
    email_id = data.message_id or (email.message.id if email.message else None)
    email_id = email_id or data.email_id or email.id
    if not email_id:
        raise InvalidPayload("mailersend payload: event has no message id", field="data.message_id")
    details = _details(data)
    created_at = data.created_at or envelope.created_at
    occurred_at = iso_utc(created_at, field="data.created_at") if created_at else received_at
    tags = data.tags or email.tags
    recipient = data.recipient or (data.email if isinstance(data.email, str) else None)
    if recipient is None and email.recipient:
        recipient = email.recipient.email
    url = details.url
    return [
        Event(
            type=canonical,
            email_id=email_id,
            occurred_at=occurred_at,
            provider=NAME,
            recipient=recipient,
            provider_event_id=data.id,
            bounce=_bounce(envelope.type, details) if canonical == "email.bounce" else None,
            click=Click(url=url) if canonical == "email.click" and url else None,
            metadata={"tags": tags} if tags else None,
            user_agent=details.user_agent if canonical in ("email.open", "email.click") else None,
            mta_response=_code(details.bounce_code) if canonical == "email.bounce" else None,
            reason=_reason(details) if canonical == "email.rejected" else None,
        )
    ]


def _details(data: _Data) -> _Details:
    if isinstance(data.meta, _Details):
        return data.meta
    return data.morph or _Details()


def _bounce(provider_type: str, details: _Details) -> Bounce:
    # MailerSend reports a soft bounce once it has stopped retrying (`activity.deferred` is
    # the event for a delivery still being retried), so it is soft in our sense too.
    kind: Literal["hard", "soft"] = "hard" if provider_type == "activity.hard_bounced" else "soft"
    return Bounce(kind=kind, reason=details.bounce_reason or details.reason)


def _reason(details: _Details) -> str | None:
    return details.suppression_reason or details.reason


def _code(code: int | str | None) -> str | None:
    """2.0's `meta.bounce_code`: the receiving server's SMTP code, all of its reply it gives."""
    return None if code is None or code == "" else str(code)


def _is_ping(body: bytes) -> bool:
    if PING_TYPE.encode() not in body:  # spares decoding every other body
        return False
    try:
        envelope = _ENVELOPE.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    return envelope.type == PING_TYPE and bytes(envelope.data) == bytes(_NULL)


class MailerSend(Provider):
    """Recognised by a `Signature` header holding a hex SHA-256 digest, with a JSON object
    body. Its dashboard ping (`webhook.test`, no data) is answered without verification."""

    name = NAME
    secret_variable = "MAILERSEND_WEBHOOK_SECRET"
    summary = "a MailerSend activity (HMAC-signed)"

    # The module's own pure functions (tested as they are), as the protocol's methods.
    verify = staticmethod(verify)
    normalize = staticmethod(normalize)

    def is_probe(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return _is_ping(body)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        signature = header(headers, SIGNATURE_HEADER)
        return (
            signature is not None
            and _HEX_SHA256.fullmatch(signature) is not None
            and json_start(body) == b"{"
        )


PROVIDER = MailerSend()
