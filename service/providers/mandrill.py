"""Mandrill (Mailchimp Transactional) webhooks (pure).

Body: form-encoded, one field `mandrill_events` holding a JSON array of events (a batch): message
events `{"event", "_id", "ts", "msg": {...}, ...}` and sync events `{"type": "blacklist" |
"whitelist", "action", ...}`. Signature: `X-Mandrill-Signature`, base64 HMAC-SHA1 keyed with the
webhook's key over the webhook URL exactly as registered in Mandrill followed by each form field,
sorted by name, as name + value. The URL is configuration (`MANDRILL_WEBHOOK_URL`), not the
request's: behind a proxy the app does not see the URL Mandrill posted to. Nothing signed carries
a time, so a captured request can be replayed: de-duplication is what stores it once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers import forms
from service.providers.base import (
    Provider,
    ProviderInput,
    decode,
    header,
    payload_error,
    required_header,
)
from service.providers.timestamps import iso_utc

NAME = "mandrill"
SIGNATURE_HEADER = "x-mandrill-signature"
URL_VARIABLE = "MANDRILL_WEBHOOK_URL"
EVENTS_FIELD = "mandrill_events"

# send and inbound are Ignored, and so are the sync events (whitelist, blacklist).
_TYPES = {
    "deferral": "email.deferred",
    "hard_bounce": "email.bounce",
    "soft_bounce": "email.bounce",
    "open": "email.open",
    "click": "email.click",
    "spam": "email.complaint",
    "unsub": "email.unsubscribe",
    "reject": "email.rejected",
}
_EVENTS_FIELD = re.compile(rb"(?:^|&)mandrill_events=")


class _SmtpEvent(ProviderInput):
    diag: str | None = None


class _Msg(ProviderInput):
    id: str | None = msgspec.field(default=None, name="_id")
    email: str | None = None
    diag: str | None = None
    bounce_description: str | None = None
    smtp_events: list[_SmtpEvent] | None = None
    tags: list[Any] | None = None
    # An object when set; PHP's `[]` when empty.
    metadata: dict[str, Any] | list[Any] | None = None


class _Event(ProviderInput):
    event: Annotated[str, Meta(min_length=1)]
    ts: int | float
    id: str | None = msgspec.field(default=None, name="_id")
    msg: _Msg | None = None
    url: str | None = None
    user_agent: str | None = None


_BATCH = msgspec.json.Decoder(list[dict[str, Any]])


def verify(body: bytes, headers: Mapping[str, str], secret: str, *, now: float, url: str) -> None:
    """Raise InvalidSignature unless `X-Mandrill-Signature` is the base64 HMAC-SHA1, keyed with
    `secret`, of `url` followed by the body's form fields sorted by name (name + value). The
    scheme has no timestamp, so `now` is unused."""
    if not url:
        raise InvalidSignature(
            f"mandrill signs the URL it posts to: set {URL_VARIABLE} to the webhook's URL "
            "exactly as registered in Mandrill"
        )
    given = required_header(headers, SIGNATURE_HEADER)
    fields = forms.parse_urlencoded(body, provider=NAME).fields
    if len({name for name, _ in fields}) != len(fields):
        raise InvalidSignature("a form field is repeated: mandrill signs one value per name")
    signed = url + "".join(name + value for name, value in sorted(fields))
    expected = hmac.new(secret.encode(), signed.encode(), hashlib.sha1).digest()
    try:
        signature = base64.b64decode(given, validate=True)
    except binascii.Error:
        raise InvalidSignature(f"{SIGNATURE_HEADER} is not base64") from None
    if not hmac.compare_digest(expected, signature):
        raise InvalidSignature(f"{SIGNATURE_HEADER} does not match the URL and the body")


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored per event of the batch, in order; any malformed element makes the
    whole body InvalidPayload (naming `mandrill_events[index].field`)."""
    raw = forms.parse_urlencoded(body, provider=NAME).first(EVENTS_FIELD)
    if raw is None:
        raise InvalidPayload(
            f"mandrill payload: the form has no {EVENTS_FIELD} field", field=EVENTS_FIELD
        )
    items = decode(_BATCH, raw.encode(), provider=NAME, at=EVENTS_FIELD)
    return [_normalize_one(index, item) for index, item in enumerate(items)]


def _normalize_one(index: int, item: dict[str, Any]) -> Normalized:
    at = f"{EVENTS_FIELD}[{index}]"
    sync_type = item.get("type")
    if "event" not in item and isinstance(sync_type, str) and sync_type:
        return Ignored(provider=NAME, provider_type=sync_type)
    try:
        event = msgspec.convert(item, _Event)
    except msgspec.ValidationError as exc:
        raise payload_error(exc, NAME, at) from None
    canonical = _TYPES.get(event.event)
    if canonical is None:
        return Ignored(provider=NAME, provider_type=event.event)
    msg = event.msg or _Msg()
    email_id = msg.id or event.id
    if not email_id:
        raise InvalidPayload("mandrill payload: event has no message id", field=f"{at}.msg._id")
    smtp_reply = _smtp_reply(msg, latest_attempt=canonical == "email.deferred")
    tracked = canonical in ("email.open", "email.click")
    return Event(
        type=canonical,
        email_id=email_id,
        occurred_at=iso_utc(event.ts, field=f"{at}.ts"),
        provider=NAME,
        recipient=msg.email,
        # Mandrill has no id per event: the message's, what happened to it, and when.
        provider_event_id=f"{email_id}:{event.event}:{event.ts}",
        bounce=_bounce(event.event, msg, smtp_reply) if canonical == "email.bounce" else None,
        click=Click(url=event.url) if canonical == "email.click" and event.url else None,
        metadata=_metadata(msg),
        user_agent=event.user_agent if tracked else None,
        mta_response=smtp_reply if canonical in ("email.bounce", "email.deferred") else None,
        reason=smtp_reply if canonical == "email.deferred" else None,
    )


def _smtp_reply(msg: _Msg, *, latest_attempt: bool) -> str | None:
    """`msg.diag` (a bounce's), or the last attempt's in `msg.smtp_events` (a deferral's)."""
    attempts = [event.diag for event in msg.smtp_events or () if event.diag]
    last_attempt = attempts[-1] if attempts else None
    if latest_attempt:
        return last_attempt or msg.diag
    return msg.diag or last_attempt


def _bounce(provider_type: str, msg: _Msg, smtp_reply: str | None) -> Bounce:
    # Mandrill retries deferrals and reports a soft bounce once it gives up: soft in our sense.
    kind: Literal["hard", "soft"] = "hard" if provider_type == "hard_bounce" else "soft"
    return Bounce(kind=kind, reason=msg.bounce_description or smtp_reply)


def _metadata(msg: _Msg) -> dict[str, Any] | None:
    """The message's metadata as it is, plus its `tags` (which win a name clash)."""
    metadata = dict(msg.metadata) if isinstance(msg.metadata, dict) else {}
    if msg.tags:
        metadata["tags"] = msg.tags
    return metadata or None


# `mandrill_events=%5B%5D` with room for whitespace; a longer body is no empty batch and is
# not parsed twice.
_PROBE_MAX_BYTES = 256


def _is_empty_batch(body: bytes) -> bool:
    if len(body) > _PROBE_MAX_BYTES:
        return False
    try:
        fields = forms.parse_urlencoded(body, provider=NAME).fields
        return (
            len(fields) == 1
            and fields[0][0] == EVENTS_FIELD
            and _BATCH.decode(fields[0][1].encode()) == []
        )
    except (InvalidPayload, msgspec.DecodeError, RecursionError):
        return False


class Mandrill(Provider):
    """Recognised by its `X-Mandrill-Signature` header or a form with `mandrill_events`. Its
    signature covers the webhook's URL, read from `MANDRILL_WEBHOOK_URL`; the empty batch it
    posts when a webhook is added (signed with the key "test-webhook") is answered unverified."""

    name = NAME
    secret_variable = "MANDRILL_WEBHOOK_KEY"
    url_variable = URL_VARIABLE
    summary = "a Mandrill event batch (HMAC-signed with the URL; form-encoded)"

    def accepts_media_type(self, media_type: str) -> bool:
        return media_type == forms.URLENCODED

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
        verify(body, headers, secret, now=now, url="")

    def verify_request(
        self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float, url: str
    ) -> None:
        verify(body, headers, secret, now=now, url=url)

    # The module's own pure function (tested as it is), as the protocol's method.
    normalize = staticmethod(normalize)

    def is_probe(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return _is_empty_batch(body)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        if header(headers, SIGNATURE_HEADER) is not None:
            return True
        return forms.media_type(headers) == forms.URLENCODED and bool(_EVENTS_FIELD.search(body))


PROVIDER = Mandrill()
