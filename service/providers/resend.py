"""Resend webhooks, delivered by Svix (pure).

Body: `{"type": "email.delivered", "created_at": ISO, "data": {...}}`, one event per request.
Signature: headers `svix-id`, `svix-timestamp`, `svix-signature`; HMAC-SHA256 over
`{id}.{timestamp}.{raw body}` keyed with base64-decode(secret minus `whsec_`), sent as a
space-separated list of `v1,<base64>` entries, any of which may match.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.core.signing import SECRET_PREFIX
from service.providers.base import (
    TOLERANCE_SECONDS,
    Provider,
    ProviderInput,
    decode,
    header,
    required_header,
)
from service.providers.timestamps import check_fresh, iso_utc

NAME = "resend"
ID_HEADER = "svix-id"
TIMESTAMP_HEADER = "svix-timestamp"
SIGNATURE_HEADER = "svix-signature"

# email.sent, email.scheduled, email.received, domain.* etc. are Ignored.
_EMAIL_TYPES = {
    "email.delivered": "email.delivered",
    "email.bounced": "email.bounce",
    "email.opened": "email.open",
    "email.clicked": "email.click",
    "email.complained": "email.complaint",
    "email.delivery_delayed": "email.deferred",
    "email.suppressed": "email.rejected",
    "email.failed": "email.rejected",
}
# A bounce of these sub-types is Resend (SES) not sending to an address on a suppression list.
_SUPPRESSED = frozenset({"suppressed", "onaccountsuppressionlist"})
# Resend has no email-level unsubscribe: it reports one as a contact update.
_CONTACT_UPDATED = "contact.updated"


class _Envelope(ProviderInput):
    type: Annotated[str, Meta(min_length=1)]
    created_at: str
    data: msgspec.Raw  # decoded only once the type says which shape it has


class _Tag(ProviderInput):
    name: str
    value: Any = None


class _Bounce(ProviderInput):
    type: str | None = None
    sub_type: str | None = msgspec.field(default=None, name="subType")
    message: str | None = None
    diagnostic_code: list[str] | str | None = msgspec.field(default=None, name="diagnosticCode")


class _Tracking(ProviderInput):
    link: str | None = None
    user_agent: str | None = msgspec.field(default=None, name="userAgent")


class _Refusal(ProviderInput):
    """`data.suppressed` ({message, type}) or `data.failed` ({reason})."""

    message: str | None = None
    type: str | None = None
    reason: str | None = None


class _EmailData(ProviderInput):
    email_id: Annotated[str, Meta(min_length=1)]
    to: list[str] | str | None = None
    bounce: _Bounce | None = None
    click: _Tracking | None = None
    open: _Tracking | None = None
    suppressed: _Refusal | None = None
    failed: _Refusal | None = None
    # An object in the samples and SDK; the docs' parameter text says a list of {name, value}.
    tags: dict[str, Any] | list[_Tag] | None = None


class _ContactData(ProviderInput):
    id: str | None = None
    email: str | None = None
    unsubscribed: bool | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_EMAIL_DATA = msgspec.json.Decoder(_EmailData)
_CONTACT_DATA = msgspec.json.Decoder(_ContactData)


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    now: float,
    tolerance: float | None = TOLERANCE_SECONDS,
) -> None:
    """Raise InvalidSignature unless one `v1` entry of `svix-signature` signs `body` and
    `svix-timestamp` is within `tolerance` seconds of `now` (None: no freshness check)."""
    message_id = required_header(headers, ID_HEADER)
    timestamp = required_header(headers, TIMESTAMP_HEADER)
    entries = required_header(headers, SIGNATURE_HEADER)
    check_fresh(timestamp, now=now, tolerance=tolerance, name=TIMESTAMP_HEADER)
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    candidates = [_v1_signature(entry) for entry in entries.split()]
    given = [candidate for candidate in candidates if candidate is not None]
    if not given:
        raise InvalidSignature(f"{SIGNATURE_HEADER} has no v1,<base64> entry")
    if not any(hmac.compare_digest(expected, signature) for signature in given):
        raise InvalidSignature(f"{SIGNATURE_HEADER} does not match the body")


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored; `provider_event_id` is the `svix-id` header, which Svix keeps on
    retries. A contact unsubscribe has no email, so its `email_id` is the contact id."""
    envelope = decode(_ENVELOPE, body, provider=NAME)
    event_id = header(headers, ID_HEADER)
    canonical = _EMAIL_TYPES.get(envelope.type)
    if canonical is not None:
        data = decode(_EMAIL_DATA, envelope.data, provider=NAME, at="data")
        return [_email_event(canonical, envelope.created_at, data, event_id)]
    if envelope.type == _CONTACT_UPDATED:
        contact = decode(_CONTACT_DATA, envelope.data, provider=NAME, at="data")
        if contact.unsubscribed:
            return [_unsubscribe_event(envelope.created_at, contact, event_id)]
    return [Ignored(provider=NAME, provider_type=envelope.type)]


def _email_event(type_: str, created_at: str, data: _EmailData, event_id: str | None) -> Event:
    bounce = data.bounce or _Bounce()
    reason = None
    if type_ == "email.bounce" and (bounce.sub_type or "").lower() in _SUPPRESSED:
        type_, reason = "email.rejected", bounce.message or bounce.sub_type
    elif type_ == "email.rejected":
        refusal = data.suppressed or data.failed or _Refusal()
        reason = refusal.message or refusal.reason or refusal.type
    tracking = {"email.click": data.click, "email.open": data.open}.get(type_)
    return Event(
        type=type_,
        email_id=data.email_id,
        occurred_at=iso_utc(created_at, field="created_at"),
        provider=NAME,
        recipient=_recipient(data.to),
        provider_event_id=event_id,
        bounce=_bounce(bounce) if type_ == "email.bounce" else None,
        click=Click(url=data.click.link) if data.click and data.click.link else None,
        metadata=_tags(data.tags),
        user_agent=tracking.user_agent if tracking else None,
        mta_response=_diagnostic(bounce.diagnostic_code) if type_ == "email.bounce" else None,
        reason=reason,
    )


def _recipient(to: list[str] | str | None) -> str | None:
    """The first `to` address, bare: `"Ann <ann@example.com>"` → `ann@example.com`."""
    first = (to[0] if to else None) if isinstance(to, list) else to
    if first is None:
        return None
    return parseaddr(first)[1] or first.strip() or None


def _diagnostic(code: list[str] | str | None) -> str | None:
    """`bounce.diagnosticCode`: the receiving servers' replies (a list in the docs)."""
    if isinstance(code, list):
        return "; ".join(line for line in code if line) or None
    return code or None


def _unsubscribe_event(created_at: str, contact: _ContactData, event_id: str | None) -> Event:
    if not contact.id:
        raise InvalidPayload("resend payload: an unsubscribed contact needs an id", field="data.id")
    return Event(
        type="email.unsubscribe",
        email_id=contact.id,
        occurred_at=iso_utc(created_at, field="created_at"),
        provider=NAME,
        recipient=contact.email,
        provider_event_id=event_id,
    )


_BOUNCE_KINDS: dict[str, Literal["hard", "soft", "undetermined"]] = {
    "permanent": "hard",
    # SES, under Resend, reports a transient bounce once it has stopped retrying.
    "transient": "soft",
    "temporary": "soft",  # the docs' parameter text
}


def _bounce(bounce: _Bounce) -> Bounce:
    # `Undetermined`, a missing type (older payloads) and new values: Resend has not said.
    kind = _BOUNCE_KINDS.get((bounce.type or "").lower(), "undetermined")
    return Bounce(kind=kind, reason=bounce.message or bounce.sub_type)


def _tags(tags: dict[str, Any] | list[_Tag] | None) -> dict[str, Any] | None:
    if isinstance(tags, list):
        tags = {tag.name: tag.value for tag in tags}
    return tags or None


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret, or InvalidSignature if it is not one."""
    try:
        key = base64.b64decode(secret.strip().removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        key = b""
    if not key:
        raise InvalidSignature("the Resend signing secret is not whsec_ followed by base64")
    return key


def _v1_signature(entry: str) -> bytes | None:
    version, _, value = entry.partition(",")
    if version != "v1" or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        return None


class Resend(Provider):
    """Recognised by its `svix-id` header; the secret must be `whsec_` and base64."""

    name = NAME
    secret_variable = "RESEND_WEBHOOK_SECRET"
    summary = "Resend events (Svix-signed)"

    def check_secret(self, secret: str) -> None:
        signing_key(secret)

    # The module's own pure functions (tested as they are), as the protocol's methods.
    verify = staticmethod(verify)
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return header(headers, ID_HEADER) is not None


PROVIDER = Resend()
