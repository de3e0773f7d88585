"""SendGrid's signed Event Webhook (pure).

Body: a JSON array of events, batched. Signature: ECDSA P-256 / SHA-256 over the
`X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw body, base64 DER in
`X-Twilio-Email-Event-Webhook-Signature`; the key is the base64 DER SubjectPublicKeyInfo
"verification key" from SendGrid's Mail Settings.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from cryptography.exceptions import InvalidSignature as BadEcdsaSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from msgspec import Meta

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers.base import (
    TOLERANCE_SECONDS,
    Provider,
    ProviderInput,
    decode,
    header,
    json_start,
    payload_error,
    required_header,
)
from service.providers.timestamps import check_fresh, iso_utc

NAME = "sendgrid"
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"

# processed, group_resubscribe, account_status_change, ... are Ignored.
_TYPES = {
    "deferred": "email.deferred",
    "dropped": "email.rejected",
    "delivered": "email.delivered",
    "bounce": "email.bounce",
    "open": "email.open",
    "click": "email.click",
    "spamreport": "email.complaint",
    "spam report": "email.complaint",  # the docs' spelling; payloads say `spamreport`
    "unsubscribe": "email.unsubscribe",
    "group_unsubscribe": "email.unsubscribe",
}

# SendGrid merges custom args (and legacy unique args) into each event as top-level keys, so
# metadata is every key that is not one of SendGrid's own, plus `category`.
_SENDGRID_KEYS = frozenset(
    {
        "asm_group_id", "attempt", "bounce_classification", "cert_err", "domain", "email",
        "event", "from", "ip", "marketing_campaign_id", "marketing_campaign_name",
        "marketing_campaign_split_id", "marketing_campaign_version", "mc_auto_id",
        "mc_auto_name", "mc_auto_step_id", "mc_pod_id", "mc_stats", "newsletter", "phase_id",
        "pool", "post_type", "reason", "response", "send_at", "sg_content_type", "sg_event_id",
        "sg_machine_open", "sg_message_id", "sg_template_id", "sg_template_name", "sg_user_id",
        "singlesend_id", "singlesend_name", "smtp-id", "status", "template_id", "template_name",
        "template_version_id", "timestamp", "tls", "type", "url", "url_offset", "useragent",
    }
)  # fmt: skip
_DIGITS = re.compile(r"[0-9]{1,12}")
_SMTP_TYPES = frozenset({"email.delivered", "email.bounce", "email.deferred"})


class _Event(ProviderInput):
    event: Annotated[str, Meta(min_length=1)]
    timestamp: int | float | str
    email: str | None = None
    sg_event_id: str | None = None
    sg_message_id: str | None = None
    smtp_id: str | None = msgspec.field(default=None, name="smtp-id")
    type: str | None = None
    reason: str | None = None
    response: str | None = None
    url: str | None = None
    useragent: str | None = None


_BATCH = msgspec.json.Decoder(list[dict[str, Any]])


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    now: float,
    tolerance: float | None = TOLERANCE_SECONDS,
) -> None:
    """Raise InvalidSignature unless the ECDSA signature over timestamp + `body` checks out
    with the public key `secret` and the timestamp is within `tolerance` of `now` (None: no
    freshness check, e.g. for SendGrid's published test vector)."""
    signature = required_header(headers, SIGNATURE_HEADER)
    timestamp = required_header(headers, TIMESTAMP_HEADER)
    check_fresh(timestamp, now=now, tolerance=tolerance, name=TIMESTAMP_HEADER)
    key = public_key(secret)
    try:
        der = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise InvalidSignature(f"{SIGNATURE_HEADER} is not base64") from None
    try:
        key.verify(der, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except BadEcdsaSignature:
        raise InvalidSignature(f"{SIGNATURE_HEADER} does not match the body") from None


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored per array element, in order; any malformed element makes the
    whole body InvalidPayload (naming `[index].field`)."""
    items = decode(_BATCH, body, provider=NAME)
    return [_normalize_one(index, item) for index, item in enumerate(items)]


def _normalize_one(index: int, item: dict[str, Any]) -> Normalized:
    at = f"[{index}]"
    try:
        event = msgspec.convert(item, _Event)
    except msgspec.ValidationError as exc:
        raise payload_error(exc, NAME, at) from None
    canonical = _TYPES.get(event.event)
    if canonical is None:
        return Ignored(provider=NAME, provider_type=event.event)
    timestamp = event.timestamp
    if isinstance(timestamp, str) and _DIGITS.fullmatch(timestamp.strip()):
        timestamp = int(timestamp)  # the docs' property table calls it a String
    metadata = {key: value for key, value in item.items() if key not in _SENDGRID_KEYS}
    # The receiving server's reply: `response` on deliveries and deferrals, `reason` on bounces.
    smtp_reply = event.reason if canonical == "email.bounce" else event.response
    return Event(
        type=canonical,
        email_id=_email_id(event, at),
        occurred_at=iso_utc(timestamp, field=f"{at}.timestamp"),
        provider=NAME,
        recipient=event.email,
        provider_event_id=event.sg_event_id,
        bounce=_bounce(event) if canonical == "email.bounce" else None,
        click=Click(url=event.url) if canonical == "email.click" and event.url else None,
        metadata=metadata or None,
        user_agent=event.useragent if canonical in ("email.open", "email.click") else None,
        mta_response=smtp_reply if canonical in _SMTP_TYPES else None,
        reason=_reason(canonical, event),
    )


def _reason(canonical: str, event: _Event) -> str | None:
    if canonical == "email.rejected":
        return event.reason  # e.g. "Bounced Address", "Unsubscribed Address"
    if canonical == "email.deferred":
        return event.response or event.reason  # a deferral says only what the server said
    return None


def _email_id(event: _Event, at: str) -> str:
    """`sg_message_id`, else `smtp-id` without brackets, else `sg_event_id`.

    Delayed and asynchronous bounces come without a message id (sometimes as `""`, see
    sendgrid/docs#5177); keeping the event under a stand-in id beats refusing the batch.
    """
    candidates = (event.sg_message_id, (event.smtp_id or "").strip().strip("<>"), event.sg_event_id)
    for candidate in candidates:
        if candidate and candidate.strip():
            return candidate.strip()  # the docs' deferred sample has a leading space
    raise InvalidPayload(
        "sendgrid payload: event has no sg_message_id, smtp-id or sg_event_id",
        field=f"{at}.sg_message_id",
    )


# `bounce` is SendGrid's permanent denial; `blocked` its temporary one (the server refused
# for now: reputation, content, rate) and `expired` a deferral it gave up retrying.
_BOUNCE_KINDS: dict[str | None, Literal["hard", "soft"]] = {
    "bounce": "hard",
    "blocked": "soft",
    "expired": "soft",
}


def _bounce(event: _Event) -> Bounce:
    # No type (older payloads) or a new value: SendGrid has not said.
    return Bounce(kind=_BOUNCE_KINDS.get(event.type, "undetermined"), reason=event.reason)


@functools.lru_cache(maxsize=8)  # parsing the DER key costs more than checking a signature
def public_key(secret: str) -> ec.EllipticCurvePublicKey:
    """The verification key, or InvalidSignature if `secret` is not a base64 DER P-256 key."""
    try:
        key = load_der_public_key(base64.b64decode(secret.strip(), validate=True))
    except (ValueError, UnsupportedAlgorithm):  # binascii.Error is a ValueError
        raise InvalidSignature("the SendGrid verification key is not base64 DER") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidSignature("the SendGrid verification key is not an ECDSA P-256 key")
    return key


class Sendgrid(Provider):
    """Recognised by its signature header or, unsigned, by a JSON array body; the secret must
    be a base64 DER P-256 public key."""

    name = NAME
    secret_variable = "SENDGRID_WEBHOOK_PUBLIC_KEY"
    summary = "a SendGrid event batch (ECDSA-signed)"

    def check_secret(self, secret: str) -> None:
        public_key(secret)

    # The module's own pure functions (tested as they are), as the protocol's methods.
    verify = staticmethod(verify)
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return header(headers, SIGNATURE_HEADER) is not None or json_start(body) == b"["


PROVIDER = Sendgrid()
