"""SparkPost webhooks (pure).

Body: a JSON array, batched, of `{"msys": {"<class>": {event}}}` where the class is
`message_event`, `track_event`, `gen_event`, `unsubscribe_event`, `relay_event`, ... and each
event says its `type`. Creating or validating a webhook posts `[{"msys": {}}]` (and an empty
array is as harmless): both hold no event and are answered 200. SparkPost signs nothing:
requests carry the webhook's basic auth credentials (`service.providers.basic_auth`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.core.errors import InvalidPayload
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers.base import ProviderInput, decode, json_start
from service.providers.basic_auth import BasicAuthProvider
from service.providers.fields import derived_event_id
from service.providers.timestamps import iso_utc

NAME = "sparkpost"

# injection, sms_status, relay_*, ab_test_*, ingest events, ... are Ignored.
_TYPES = {
    "delivery": "email.delivered",
    "bounce": "email.bounce",
    "out_of_band": "email.bounce",
    "spam_complaint": "email.complaint",
    "open": "email.open",
    "initial_open": "email.open",
    "amp_open": "email.open",
    "amp_initial_open": "email.open",
    "click": "email.click",
    "amp_click": "email.click",
    "list_unsubscribe": "email.unsubscribe",
    "link_unsubscribe": "email.unsubscribe",
    "delay": "email.deferred",
    "policy_rejection": "email.rejected",
    "generation_rejection": "email.rejected",
    "generation_failure": "email.rejected",
}
# SparkPost's bounce classification codes by category: Hard (10 invalid recipient, 30 no
# RCPT, 90 unsubscribe request) is hard; Soft (20-24, 40, 60 auto-reply, 70 transient,
# 100 challenge-response) and Block (50-54, "usually temporary", SparkPost says) are soft;
# Undetermined (1), Admin (25, 26, 80) and any new code are undetermined.
HARD_BOUNCE_CLASSES = frozenset({10, 30, 90})
SOFT_BOUNCE_CLASSES = frozenset({20, 21, 22, 23, 24, 40, 50, 51, 52, 53, 54, 60, 70, 100})
_DIGITS = re.compile(r"[0-9]{1,12}")


class _Wrapper(ProviderInput):
    msys: dict[str, msgspec.Raw]


class _Event(ProviderInput):
    type: Annotated[str, Meta(min_length=1)]
    event_id: str | None = None
    timestamp: str | int | float | None = None
    transmission_id: str | None = None
    message_id: str | None = None
    rcpt_to: str | None = None
    raw_rcpt_to: str | None = None
    bounce_class: str | int | None = None
    reason: str | None = None
    raw_reason: str | None = None
    target_link_url: str | None = None
    user_agent: str | None = None
    campaign_id: str | None = None
    metadata: dict[str, Any] | None = None
    rcpt_meta: dict[str, Any] | None = None
    rcpt_tags: list[Any] | None = None


_BATCH = msgspec.json.Decoder(list[_Wrapper])
_EVENT = msgspec.json.Decoder(_Event)
_ELEMENTS = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored per event of the batch, in order (a ping's empty `msys` holds
    none); any malformed event makes the whole body InvalidPayload (naming
    `[index].msys.<class>.field`). `email_id` is the `transmission_id` the Transmissions API
    returned (`message_id` when there is none); `provider_event_id` is `event_id`."""
    batch = decode(_BATCH, body, provider=NAME)
    normalized: list[Normalized] = []
    for index, wrapper in enumerate(batch):
        for event_class, raw in wrapper.msys.items():
            at = f"[{index}].msys.{event_class}"
            event = decode(_EVENT, raw, provider=NAME, at=at)
            normalized.append(_normalize_one(event, at))
    return normalized


def _normalize_one(event: _Event, at: str) -> Normalized:
    canonical = _TYPES.get(event.type)
    if canonical is None:
        return Ignored(provider=NAME, provider_type=event.type)
    email_id = (event.transmission_id or event.message_id or "").strip()
    if not email_id:
        raise InvalidPayload(
            f"{NAME} payload: event has no transmission_id or message_id",
            field=f"{at}.transmission_id",
        )
    if event.timestamp is None:
        raise InvalidPayload(f"{NAME} payload: event has no timestamp", field=f"{at}.timestamp")
    timestamp = event.timestamp
    if isinstance(timestamp, str) and _DIGITS.fullmatch(timestamp.strip()):
        timestamp = int(timestamp)  # unix seconds as a string, or an ISO 8601 string
    occurred_at = iso_utc(timestamp, field=f"{at}.timestamp")
    recipient = event.raw_rcpt_to or event.rcpt_to
    smtp_reply = event.raw_reason or event.reason
    return Event(
        type=canonical,
        email_id=email_id,
        occurred_at=occurred_at,
        provider=NAME,
        recipient=recipient,
        provider_event_id=event.event_id
        or derived_event_id(event.type, email_id, event.message_id, recipient, occurred_at),
        bounce=_bounce(event) if canonical == "email.bounce" else None,
        click=Click(url=event.target_link_url)
        if canonical == "email.click" and event.target_link_url
        else None,
        metadata=_metadata(event),
        user_agent=event.user_agent if canonical in ("email.open", "email.click") else None,
        mta_response=smtp_reply if canonical in ("email.bounce", "email.deferred") else None,
        reason=smtp_reply if canonical in ("email.deferred", "email.rejected") else None,
    )


def _bounce(event: _Event) -> Bounce:
    code = event.bounce_class
    if isinstance(code, str):
        code = int(code) if _DIGITS.fullmatch(code.strip()) else None
    kind: Literal["hard", "soft", "undetermined"] = "undetermined"
    if code in HARD_BOUNCE_CLASSES:
        kind = "hard"
    elif code in SOFT_BOUNCE_CLASSES:
        kind = "soft"
    return Bounce(kind=kind, reason=event.raw_reason or event.reason)


def _metadata(event: _Event) -> dict[str, Any] | None:
    """Transmission `metadata` overlaid with the recipient's `rcpt_meta` (which wins), plus
    `rcpt_tags` as `tags` and `campaign_id` (which win a name clash)."""
    metadata = dict(event.metadata or {})
    metadata.update(event.rcpt_meta or {})
    if event.rcpt_tags:
        metadata["tags"] = event.rcpt_tags
    if event.campaign_id:
        metadata["campaign_id"] = event.campaign_id
    return metadata or None


def _is_batch(body: bytes) -> bool:
    # The substring test spares decoding every other array.
    if b'"msys"' not in body:
        return False
    try:
        elements = _ELEMENTS.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    return bool(elements) and "msys" in elements[0]


class Sparkpost(BasicAuthProvider):
    """Recognised by a JSON array whose first element has an `msys` key; the secret is
    `user:password`."""

    name = NAME
    secret_variable = "SPARKPOST_WEBHOOK_BASIC_AUTH"
    summary = "a SparkPost event batch (basic auth)"

    # The module's own pure function (tested as it is), as the protocol's method.
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return json_start(body) == b"[" and _is_batch(body)


PROVIDER = Sparkpost()
