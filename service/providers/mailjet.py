"""Mailjet's Event API webhooks (pure).

Body: one event object per request, or a JSON array of them when the webhook groups events
(`Version: 2` of `/eventcallbackurl`, "group events" in the dashboard); `event` is sent, open,
click, bounce, blocked, spam or unsub. Mailjet signs nothing: requests carry the basic auth
credentials of the webhook's URL (`service.providers.basic_auth`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.core.errors import InvalidPayload
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers.base import ProviderInput, decode, json_start
from service.providers.basic_auth import BasicAuthProvider
from service.providers.fields import derived_event_id, metadata_from_text
from service.providers.timestamps import iso_utc

NAME = "mailjet"

_TYPES = {
    "sent": "email.delivered",  # the receiving server accepted the message
    "open": "email.open",
    "click": "email.click",
    "bounce": "email.bounce",
    "spam": "email.complaint",
    "unsub": "email.unsubscribe",
    "blocked": "email.rejected",
}
# "A temporary error due to possible unrecognised senders. Delivery will be re-attempted."
GREYLISTED = "greylisted"
# Keys only Mailjet's events have (each event has at least one of them, with `event`).
_MAILJET_KEYS = ("MessageID", "Message_GUID", "mj_message_id", "mj_contact_id", "mj_campaign_id")


class _Event(ProviderInput):
    event: Annotated[str, Meta(min_length=1)]
    time: int | float
    message_id: int | str | None = msgspec.field(default=None, name="MessageID")
    message_guid: str | None = msgspec.field(default=None, name="Message_GUID")
    mj_message_id: int | str | None = None
    email: str | None = None
    custom_id: str | None = msgspec.field(default=None, name="CustomID")
    payload: str | None = msgspec.field(default=None, name="Payload")
    customcampaign: str | None = None
    hard_bounce: bool | None = None
    error: str | None = None
    smtp_reply: str | None = None
    url: str | None = None
    agent: str | None = None


_BODY = msgspec.json.Decoder(list[_Event] | _Event)
_SHAPE = msgspec.json.Decoder(list[dict[str, msgspec.Raw]] | dict[str, msgspec.Raw])


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored per event (a single object or a grouped array); any malformed event
    makes the whole body InvalidPayload. `email_id` is `MessageID` (else `Message_GUID`, else
    `mj_message_id`); Mailjet sends no event id, so `provider_event_id` is a digest of the
    event's type, time, message, recipient and URL."""
    parsed = decode(_BODY, body, provider=NAME)
    events = parsed if isinstance(parsed, list) else [parsed]
    at = "[{}]" if isinstance(parsed, list) else ""
    return [_normalize_one(event, at.format(index)) for index, event in enumerate(events)]


def _normalize_one(event: _Event, at: str) -> Normalized:
    canonical = _TYPES.get(event.event)
    if canonical is None:
        return Ignored(provider=NAME, provider_type=event.event)
    if canonical == "email.bounce" and not event.hard_bounce and event.error == GREYLISTED:
        canonical = "email.deferred"
    email_id = _email_id(event, at)
    return Event(
        type=canonical,
        email_id=email_id,
        occurred_at=iso_utc(event.time, field=f"{at}.time".lstrip(".")),
        provider=NAME,
        recipient=event.email,
        provider_event_id=derived_event_id(
            event.event, event.time, email_id, event.email, event.url
        ),
        bounce=_bounce(event) if canonical == "email.bounce" else None,
        click=Click(url=event.url) if canonical == "email.click" and event.url else None,
        metadata=_metadata(event),
        user_agent=event.agent if canonical in ("email.open", "email.click") else None,
        mta_response=event.smtp_reply,
        reason=event.error if canonical in ("email.deferred", "email.rejected") else None,
    )


def _email_id(event: _Event, at: str) -> str:
    for candidate in (event.message_id, event.message_guid, event.mj_message_id):
        # MessageID is a number (beyond 2**53: kept exact), and 0 when there is none.
        if candidate not in (None, "", 0):
            return str(candidate).strip()
    raise InvalidPayload(
        f"{NAME} payload: event has no MessageID, Message_GUID or mj_message_id",
        field=f"{at}.MessageID".lstrip("."),
    )


def _bounce(event: _Event) -> Bounce:
    kind: Literal["hard", "soft", "undetermined"] = "undetermined"
    if event.hard_bounce is not None:
        kind = "hard" if event.hard_bounce else "soft"
    return Bounce(kind=kind, reason=event.error)


def _metadata(event: _Event) -> dict[str, Any] | None:
    """`Payload` (a JSON object as it is, other text as `payload`), plus `CustomID` and
    `customcampaign` (the X-Mailjet-Campaign header) when set, which win a name clash."""
    metadata = metadata_from_text(event.payload, key="payload")
    if event.custom_id:
        metadata["CustomID"] = event.custom_id
    if event.customcampaign:
        metadata["customcampaign"] = event.customcampaign
    return metadata or None


def _looks_like_mailjet(body: bytes) -> bool:
    # The substring test spares decoding every other body.
    if b'"event"' not in body or not any(f'"{key}"'.encode() in body for key in _MAILJET_KEYS):
        return False
    try:
        shape = _SHAPE.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    first = shape[0] if isinstance(shape, list) and shape else shape
    return (
        isinstance(first, dict) and "event" in first and any(key in first for key in _MAILJET_KEYS)
    )


class Mailjet(BasicAuthProvider):
    """Recognised by an object (or an array whose first element) with `event` and a Mailjet
    id (`MessageID`, `mj_contact_id`, ...); the secret is `user:password`."""

    name = NAME
    secret_variable = "MAILJET_WEBHOOK_BASIC_AUTH"
    summary = "Mailjet events, single or grouped (basic auth)"

    # The module's own pure function (tested as it is), as the protocol's method.
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return json_start(body) in (b"{", b"[") and _looks_like_mailjet(body)


PROVIDER = Mailjet()
