"""Brevo (formerly Sendinblue) transactional email webhooks (pure).

Body: one event object per request, or a JSON array of them for a webhook created with
`batched: true`; `event` is request (sent), delivered, opened, unique_opened, click,
hard_bounce, soft_bounce, spam, unsubscribed, blocked, invalid_email, deferred, error, ...
Brevo signs nothing: requests carry either the basic auth credentials of the webhook's URL or
the bearer token set as the webhook's `auth` (`service.providers.basic_auth`); either or both
may be configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers.base import Provider, ProviderInput, decode, json_start
from service.providers.basic_auth import (
    authorization_scheme,
    check_bearer_token,
    check_credentials,
    verify_basic,
    verify_bearer,
)
from service.providers.fields import derived_event_id, metadata_from_text
from service.providers.timestamps import iso_utc

NAME = "brevo"
BASIC_AUTH_VARIABLE = "BREVO_WEBHOOK_BASIC_AUTH"
TOKEN_VARIABLE = "BREVO_WEBHOOK_TOKEN"
# The one character no environment variable can hold: it joins the two into one secret.
_SEPARATOR = "\0"

# request (sent), error, list_addition, ... are Ignored.
_TYPES = {
    "delivered": "email.delivered",
    "opened": "email.open",
    "unique_opened": "email.open",
    "proxy_open": "email.open",
    "unique_proxy_open": "email.open",
    "click": "email.click",
    "hard_bounce": "email.bounce",
    "soft_bounce": "email.bounce",
    "spam": "email.complaint",
    "complaint": "email.complaint",
    "unsubscribed": "email.unsubscribe",
    "unsubscribe": "email.unsubscribe",
    "blocked": "email.rejected",
    "invalid_email": "email.rejected",
    "deferred": "email.deferred",
}
# Unix times from 1973 on in milliseconds are larger than any in seconds before the year 5000:
# Brevo documents `ts_epoch` in milliseconds, but some of its samples give it in seconds.
_MILLISECONDS_FROM = 10**11


class _Event(ProviderInput):
    event: Annotated[str, Meta(min_length=1)]
    message_id: str = msgspec.field(name="message-id")
    email: str | None = None
    ts_epoch: int | float | None = None
    ts_event: int | float | None = None
    ts: int | float | None = None
    reason: str | None = None
    link: str | None = None
    user_agent: str | None = None
    tag: str | list[Any] | None = None
    tags: list[Any] | None = None
    custom: str | None = msgspec.field(default=None, name="X-Mailin-custom")


_BODY = msgspec.json.Decoder(list[_Event] | _Event)
_SHAPE = msgspec.json.Decoder(list[dict[str, msgspec.Raw]] | dict[str, msgspec.Raw])


def combine_secret(basic_auth: str = "", token: str = "") -> str:
    """The one secret of Brevo's two variables: `user:password`, then NUL and the bearer token
    when one is set (just `user:password` without a token)."""
    return f"{basic_auth}{_SEPARATOR}{token}" if token else basic_auth


def split_secret(secret: str) -> tuple[str, str]:
    """`combine_secret`'s (basic auth, token); either may be ""."""
    basic_auth, _, token = secret.partition(_SEPARATOR)
    return basic_auth, token


def check_secret(secret: str) -> None:
    """Raise InvalidSignature unless the set credentials are well formed."""
    basic_auth, token = split_secret(secret)
    if basic_auth:
        check_credentials(basic_auth)
    if token:
        try:
            check_bearer_token(token)
        except InvalidSignature as exc:
            raise InvalidSignature(f"{TOKEN_VARIABLE} is malformed: {exc}") from None


def verify(body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
    """Raise InvalidCredentials unless `Authorization` is the configured basic auth or bearer
    token (whichever scheme the request uses; one not configured is refused)."""
    basic_auth, token = split_secret(secret)
    if token and authorization_scheme(headers) == "bearer":
        verify_bearer(headers, token)
    elif basic_auth:
        verify_basic(headers, basic_auth)
    else:
        verify_bearer(headers, token)


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored per event (a single object or a batched array); any malformed
    event makes the whole body InvalidPayload. `email_id` is `message-id` as Brevo sends it
    (the send API's `messageId`, angle brackets included); Brevo sends no event id (its `id`
    is the webhook's), so `provider_event_id` is a digest of the event's type, message,
    recipient, times and link."""
    parsed = decode(_BODY, body, provider=NAME)
    events = parsed if isinstance(parsed, list) else [parsed]
    at = "[{}]" if isinstance(parsed, list) else ""
    return [_normalize_one(event, at.format(index)) for index, event in enumerate(events)]


def _normalize_one(event: _Event, at: str) -> Normalized:
    canonical = _TYPES.get(event.event)
    if canonical is None:
        return Ignored(provider=NAME, provider_type=event.event)
    email_id = event.message_id.strip()
    if not email_id:
        raise InvalidPayload(
            f"{NAME} payload: event has an empty message-id", field=f"{at}.message-id".lstrip(".")
        )
    reason = event.reason.strip() if event.reason and event.reason.strip() else None
    return Event(
        type=canonical,
        email_id=email_id,
        occurred_at=_occurred_at(event, at),
        provider=NAME,
        recipient=event.email,
        provider_event_id=derived_event_id(
            event.event, email_id, event.email, event.ts_epoch, event.ts_event, event.link
        ),
        bounce=_bounce(event, reason) if canonical == "email.bounce" else None,
        click=Click(url=event.link) if canonical == "email.click" and event.link else None,
        metadata=_metadata(event),
        user_agent=event.user_agent if canonical in ("email.open", "email.click") else None,
        mta_response=reason if canonical in ("email.bounce", "email.deferred") else None,
        reason=reason if canonical in ("email.deferred", "email.rejected") else None,
    )


def _occurred_at(event: _Event, at: str) -> str:
    """`ts_epoch` (UTC, milliseconds), else `ts_event`, else `ts` (UTC seconds); `date` is in
    Brevo's CET/CEST local time, so it is never read."""
    if event.ts_epoch is not None:
        ts_epoch = event.ts_epoch
        seconds = ts_epoch / 1000 if abs(ts_epoch) >= _MILLISECONDS_FROM else ts_epoch
        return iso_utc(seconds, field=f"{at}.ts_epoch".lstrip("."))
    for name, value in (("ts_event", event.ts_event), ("ts", event.ts)):
        if value is not None:
            return iso_utc(value, field=f"{at}.{name}".lstrip("."))
    raise InvalidPayload(
        f"{NAME} payload: event has no ts_epoch, ts_event or ts", field=f"{at}.ts_event".lstrip(".")
    )


def _bounce(event: _Event, reason: str | None) -> Bounce:
    return Bounce(kind="hard" if event.event == "hard_bounce" else "soft", reason=reason)


def _metadata(event: _Event) -> dict[str, Any] | None:
    """`X-Mailin-custom` (a JSON object as it is, other text as `X-Mailin-custom`), plus the
    message's `tags` (or its single `tag`), which win a name clash."""
    metadata = metadata_from_text(event.custom, key="X-Mailin-custom")
    tags = event.tags or ([event.tag] if isinstance(event.tag, str) else event.tag)
    if tags and tags != [""]:
        metadata["tags"] = tags
    return metadata or None


def _looks_like_brevo(body: bytes) -> bool:
    # The substring test spares decoding every other body.
    if b'"message-id"' not in body or b'"event"' not in body:
        return False
    try:
        shape = _SHAPE.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    first = shape[0] if isinstance(shape, list) and shape else shape
    return isinstance(first, dict) and "event" in first and "message-id" in first


class Brevo(Provider):
    """Recognised by an object (or an array whose first element) with `event` and
    `message-id`. Two variables, either or both set: `BREVO_WEBHOOK_BASIC_AUTH`
    (`user:password`) and `BREVO_WEBHOOK_TOKEN` (a bearer token)."""

    name = NAME
    secret_variable = BASIC_AUTH_VARIABLE
    summary = "Brevo transactional events (basic auth or bearer token)"

    def read_secret(self, variable: Callable[[str], str]) -> str:
        return combine_secret(variable(BASIC_AUTH_VARIABLE), variable(TOKEN_VARIABLE))

    # The module's own pure functions (tested as they are), as the protocol's methods.
    check_secret = staticmethod(check_secret)
    verify = staticmethod(verify)
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return json_start(body) in (b"{", b"[") and _looks_like_brevo(body)


PROVIDER = Brevo()
