"""Mailgun's webhooks (pure): the JSON ones and the legacy form-encoded ones, on one URL.

JSON body: `{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}`, one event
per request. Legacy body (webhooks created before 2018, form-encoded, multipart for events that
carry a file): `event`, `timestamp`, `token`, `signature`, `Message-Id`, `recipient`, ... and
the message's custom variables, all as form fields. Which of the two a body is comes from its
first bytes (`{` JSON, `--` multipart, else URL-encoded), the same for `verify`, `normalize`
and the replay token.

Both are signed the same way: hex HMAC-SHA256 of timestamp + token keyed with the webhook signing
key. The body itself is not signed, so a captured request can be replayed with other event data
until its token is refused: the caller records `signature_token(body)` and rejects repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers import forms
from service.providers.base import (
    TOLERANCE_SECONDS,
    Provider,
    ProviderInput,
    check_hex_digest,
    decode,
    is_json_media_type,
    json_start,
)
from service.providers.timestamps import check_fresh, iso_utc

NAME = "mailgun"
# Mailgun retries a failed delivery for about 8 hours with the original signature block, so
# its timestamp check must outlast that; replays inside the window are caught by the token.
MAILGUN_TOLERANCE_SECONDS = 12 * 3600

# accepted, stored, list events, ... are Ignored; `failed` is decided by `_failed`.
_TYPES = {
    "delivered": "email.delivered",
    "opened": "email.open",
    "clicked": "email.click",
    "unsubscribed": "email.unsubscribe",
    "complained": "email.complaint",
    "rejected": "email.rejected",
}
# A permanent failure for these reasons is Mailgun not sending to an address on one of its
# suppression lists: no attempt was made.
_SUPPRESSED = frozenset({"suppress-bounce", "suppress-unsubscribe", "suppress-complaint"})
# Mailgun gave up after retrying temporary failures for too long: a soft bounce.
_TOO_OLD = "old"


class _Signature(ProviderInput):
    timestamp: str | int
    token: Annotated[str, Meta(min_length=1)]
    signature: str


class _Headers(ProviderInput):
    message_id: str | None = msgspec.field(default=None, name="message-id")
    to: str | None = None


class _Message(ProviderInput):
    headers: _Headers | None = None


class _DeliveryStatus(ProviderInput):
    description: str | None = None
    message: str | None = None
    bounce_type: str | None = msgspec.field(default=None, name="bounce-type")


class _ClientInfo(ProviderInput):
    user_agent: str | None = msgspec.field(default=None, name="user-agent")


class _Reject(ProviderInput):
    reason: str | None = None
    description: str | None = None


class _EventData(ProviderInput):
    event: Annotated[str, Meta(min_length=1)]
    timestamp: int | float
    id: str | None = None
    recipient: str | None = None
    message: _Message | None = None
    severity: str | None = None
    reason: str | None = None
    delivery_status: _DeliveryStatus | None = msgspec.field(default=None, name="delivery-status")
    client_info: _ClientInfo | None = msgspec.field(default=None, name="client-info")
    reject: _Reject | None = None
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
    """Raise InvalidSignature unless the signature is the HMAC of timestamp + token under the
    signing key `secret` and the timestamp is within `tolerance` of `now`.

    A body that is neither a JSON object nor a form raises InvalidPayload (it cannot be a
    Mailgun request at all); a missing or malformed signature raises InvalidSignature."""
    timestamp, token, signature = _signature(body)
    check_fresh(timestamp, now=now, tolerance=tolerance, name="signature.timestamp")
    signed = (timestamp + token).encode()
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    check_hex_digest(expected, signature, what="signature.signature")


def signature_token(body: bytes) -> str:
    """The signature's token, unique per request: record it and refuse repeats to stop
    replays. Raises like `verify` when the body has no signature."""
    return _signature(body)[1]


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored. `email_id` is the Message-ID without angle brackets;
    `provider_event_id` is `event-data.id:token` (legacy: a digest of the fields:token)."""
    if not _is_json(body):
        return [_normalize_legacy(forms.parse(body, provider=NAME))]
    parsed = decode(_BODY, body, provider=NAME)
    data = parsed.event_data
    canonical = _failed_type(data) if data.event == "failed" else _TYPES.get(data.event)
    if canonical is None:
        return [Ignored(provider=NAME, provider_type=data.event)]
    headers_ = data.message.headers if data.message else None
    email_id = _bare_message_id(headers_.message_id if headers_ else None)
    if not email_id:
        raise InvalidPayload(
            "mailgun payload: event has no message id",
            field="event-data.message.headers.message-id",
        )
    token = parsed.signature.token
    status = data.delivery_status or _DeliveryStatus()
    explanation = status.description or status.message or data.reason
    if canonical == "email.rejected" and data.reject:
        explanation = data.reject.reason or data.reject.description or explanation
    recipient = data.recipient
    if recipient is None and headers_ and headers_.to:
        # A `rejected` event names no recipient: its To header does.
        recipient = parseaddr(headers_.to)[1] or None
    tracked = canonical in ("email.open", "email.click")
    smtp = canonical in ("email.delivered", "email.bounce", "email.deferred")
    return [
        Event(
            type=canonical,
            email_id=email_id,
            occurred_at=iso_utc(data.timestamp, field="event-data.timestamp"),
            provider=NAME,
            recipient=recipient,
            provider_event_id=f"{data.id}:{token}" if data.id else token,
            bounce=_bounce(data, status) if canonical == "email.bounce" else None,
            click=Click(url=data.url) if canonical == "email.click" and data.url else None,
            metadata=_metadata(data),
            user_agent=data.client_info.user_agent if tracked and data.client_info else None,
            mta_response=(status.message or None) if smtp else None,
            reason=explanation if canonical in ("email.deferred", "email.rejected") else None,
        )
    ]


def _is_json(body: bytes) -> bool:
    return json_start(body) in (b"{", b"[", b'"')


def _signature(body: bytes) -> tuple[str, str, str]:
    """(timestamp, token, signature) of either format."""
    if not _is_json(body):
        return _legacy_signature(forms.parse(body, provider=NAME))
    top = decode(_TOP_LEVEL, body, provider=NAME)
    raw = top.get("signature")
    if raw is None:
        raise InvalidSignature("mailgun body has no signature block")
    try:
        block = _SIGNATURE.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidSignature(f"malformed mailgun signature block: {exc}") from None
    return str(block.timestamp), block.token, block.signature


def _failed_type(data: _EventData) -> str:
    # `severity: temporary`: Mailgun is still retrying (`delivery-status.retry-seconds`).
    if data.severity == "temporary":
        return "email.deferred"
    if data.reason in _SUPPRESSED:
        return "email.rejected"
    return "email.bounce"


def _bounce(data: _EventData, status: _DeliveryStatus) -> Bounce:
    # Newer payloads say `delivery-status.bounce-type`; otherwise a permanent failure is hard,
    # but for one Mailgun gave up on after retrying (`old`), which is soft. Without a severity
    # either, Mailgun has not said.
    kind: Literal["hard", "soft", "undetermined"]
    if status.bounce_type in ("hard", "soft"):
        kind = "hard" if status.bounce_type == "hard" else "soft"
    elif data.severity == "permanent":
        kind = "soft" if data.reason == _TOO_OLD else "hard"
    else:
        kind = "undetermined"
    return Bounce(kind=kind, reason=status.description or status.message or data.reason)


def _metadata(data: _EventData) -> dict[str, Any] | None:
    """User variables as they are, plus the message's `tags` (which win a name clash)."""
    metadata = dict(data.user_variables) if isinstance(data.user_variables, dict) else {}
    if data.tags:
        metadata["tags"] = data.tags
    return metadata or None


def _bare_message_id(message_id: str | None) -> str:
    return (message_id or "").strip().removeprefix("<").removesuffix(">").strip()


# Legacy webhooks.

_LEGACY_TYPES = {
    "delivered": "email.delivered",
    "opened": "email.open",
    "clicked": "email.click",
    "unsubscribed": "email.unsubscribe",
    "complained": "email.complaint",
    "bounced": "email.bounce",
    "dropped": "email.rejected",
}
# Mailgun merges custom variables into the form. Where one is named like a Mailgun field both
# values are sent: for these three Mailgun's comes last, for the others first.
_SIGNED_FIELDS = ("signature", "timestamp", "token")
_LEGACY_FIELDS = frozenset(
    {
        *_SIGNED_FIELDS, "event", "recipient", "domain", "ip", "country", "region", "city",
        "user-agent", "device-type", "client-type", "client-name", "client-os", "campaign-id",
        "campaign-name", "tag", "mailing-list", "body-plain", "h", "message-id", "Message-Id",
        "url", "message-headers", "X-Mailgun-Sid", "X-Mailgun-Tag", "code", "error",
        "notification", "description", "reason", "attachment-count",
    }
)  # fmt: skip
_TAG_FIELDS = ("tag", "X-Mailgun-Tag")
_HEADER_LIST = msgspec.json.Decoder(list[Any])
_VARIABLES = msgspec.json.Decoder(dict[str, Any])


def _legacy_signature(form: forms.Form) -> tuple[str, str, str]:
    def signed(name: str) -> str:
        value = form.last(name)
        if not value:
            raise InvalidSignature(f"the mailgun form has no {name} field")
        return value

    return signed("timestamp"), signed("token"), signed("signature")


def _normalize_legacy(form: forms.Form) -> Normalized:
    event = form.first("event")
    if not event:
        raise InvalidPayload("mailgun payload: the form has no event field", field="event")
    canonical = _LEGACY_TYPES.get(event)
    if canonical is None:
        return Ignored(provider=NAME, provider_type=event)
    email_id = _bare_message_id(form.first("Message-Id") or form.first("message-id"))
    if not email_id:
        raise InvalidPayload("mailgun payload: event has no Message-Id", field="Message-Id")
    timestamp = form.last("timestamp") or ""
    if not timestamp.isascii() or not timestamp.isdigit():
        raise InvalidPayload("mailgun payload: timestamp is not unix seconds", field="timestamp")
    smtp_reply = form.first("error") or form.first("notification")
    explanation = form.first("description") or smtp_reply or form.first("reason")
    bounce = None
    if canonical == "email.bounce":  # Mailgun's legacy `bounced` hook is for hard bounces
        bounce = Bounce(kind="hard", reason=smtp_reply or explanation)
    elif canonical == "email.rejected" and form.first("reason") == _TOO_OLD:
        canonical = "email.bounce"  # dropped after retrying for too long, as `failed`/`old`
        bounce = Bounce(kind="soft", reason=explanation)
    tracked = canonical in ("email.open", "email.click")
    url = form.first("url")
    token = form.last("token")
    return Event(
        type=canonical,
        email_id=email_id,
        occurred_at=iso_utc(int(timestamp), field="timestamp"),
        provider=NAME,
        recipient=form.first("recipient"),
        provider_event_id=f"{_digest(form)}:{token}" if token else _digest(form),
        bounce=bounce,
        click=Click(url=url) if canonical == "email.click" and url else None,
        metadata=_legacy_metadata(form),
        user_agent=form.first("user-agent") if tracked else None,
        mta_response=smtp_reply,
        reason=explanation if canonical == "email.rejected" else None,
    )


def _digest(form: forms.Form) -> str:
    """The legacy format has no event id: the fields but the signature's stand in for one,
    so that a token reused with other fields is another event (a replay), and a retry is not."""
    unsigned = [(key, value) for key, value in form.fields if key not in _SIGNED_FIELDS]
    return hashlib.sha256(urllib.parse.urlencode(unsigned).encode()).hexdigest()[:16]


def _legacy_metadata(form: forms.Form) -> dict[str, Any] | None:
    """Custom variables, from the X-Mailgun-Variables headers when the event carries the
    message's headers, else from the form fields that are not Mailgun's; plus the tags."""
    headers = form.first("message-headers")
    metadata = _header_variables(headers) if headers is not None else _field_variables(form)
    tags = form.all("tag") or form.all("X-Mailgun-Tag")  # repeated, one value per tag
    if tags:
        metadata["tags"] = tags
    return metadata or None


def _header_variables(message_headers: str) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    try:
        headers = _HEADER_LIST.decode(message_headers)
        for header in headers:
            if isinstance(header, list) and header[:1] == ["X-Mailgun-Variables"]:
                variables.update(_VARIABLES.decode(str(header[-1])))
    except (msgspec.DecodeError, RecursionError):
        raise InvalidPayload(
            "mailgun payload: message-headers is not a JSON list of [name, value] pairs "
            "with X-Mailgun-Variables as JSON objects",
            field="message-headers",
        ) from None
    return variables


def _field_variables(form: forms.Form) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for name in form.names():
        values = form.all(name)
        if name not in _LEGACY_FIELDS and not name.startswith("attachment-"):
            variables[name] = values[-1]
        elif name not in _TAG_FIELDS and len(values) > 1:  # a variable named like a field
            variables[name] = values[0] if name in _SIGNED_FIELDS else values[-1]
    return variables


def _looks_legacy(headers: Mapping[str, str], body: bytes) -> bool:
    if forms.media_type(headers) not in forms.MEDIA_TYPES:
        return False
    try:
        form = forms.parse(body, provider=NAME)
    except InvalidPayload:
        return False
    return all(form.last(name) for name in _SIGNED_FIELDS)


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
    """Recognised by a JSON object with `signature` and `event-data` keys, or a form with
    `timestamp`, `token` and `signature` fields. Its signature does not cover the body, so the
    signature's token is its replay token."""

    name = NAME
    secret_variable = "MAILGUN_WEBHOOK_SIGNING_KEY"
    summary = "a Mailgun event (HMAC-signed token; JSON, or a legacy form)"
    tolerance_seconds = MAILGUN_TOLERANCE_SECONDS
    replay_token_field = "signature.token"

    def accepts_media_type(self, media_type: str) -> bool:
        return is_json_media_type(media_type) or media_type in forms.MEDIA_TYPES

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
        verify(body, headers, secret, now=now, tolerance=self.tolerance_seconds)

    # The module's own pure function (tested as it is), as the protocol's method.
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        if json_start(body) == b"{":
            return _has_mailgun_keys(body)
        return _looks_legacy(headers, body)

    def replay_token(self, body: bytes) -> str | None:
        return signature_token(body)


PROVIDER = Mailgun()
