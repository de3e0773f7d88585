"""Postal's webhooks (pure).

Body: `{"event": "MessageSent", "timestamp": unix seconds (float), "uuid": "…", "payload": {…}}`,
one event per request; `uuid` is the same on every retry. Signature: base64 RSA PKCS#1 v1.5 over
the raw body with the Postal server's signing key: SHA256 in `X-Postal-Signature-256` (Postal 3),
SHA1 in `X-Postal-Signature` (every version). The SHA256 one is checked when present, and then
alone, so that a broken SHA1 cannot stand in for it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from cryptography.exceptions import InvalidSignature as BadRsaSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from msgspec import Meta

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers.base import Provider, ProviderInput, decode, header
from service.providers.timestamps import check_age, iso_utc

NAME = "postal"
SIGNATURE_HEADER = "x-postal-signature"
SIGNATURE_256_HEADER = "x-postal-signature-256"
# Postal retries a failed request 2, 3, 6, 10 and 15 minutes after the previous attempt, with
# the body (and its `timestamp`, when the event was queued) unchanged; a backlog of Postal's
# workers can delay the first attempt by hours. A replay inside the window is a duplicate of
# the `uuid` already stored.
POSTAL_TOLERANCE_SECONDS = 12 * 3600
# Postal's reason for a HardFail of its own after soft failures (no SMTP reply of the last
# attempt): the address outlasted its retries, a soft bounce.
_MAX_ATTEMPTS = "Maximum number of delivery attempts"
_DKIM_KEY = re.compile(r"(?:^|;)\s*p=(?P<key>[^;\"]*)")

NonEmpty = Annotated[str, Meta(min_length=1)]


class _Envelope(ProviderInput):
    event: NonEmpty
    timestamp: int | float
    uuid: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"{}")  # decoded once the event says which shape it has


class _Message(ProviderInput):
    message_id: str | None = None
    to: str | None = None
    direction: str | None = None
    tag: str | None = None
    timestamp: int | float | None = None


class _Status(ProviderInput):
    """MessageSent, MessageDelayed, MessageDeliveryFailed, MessageHeld."""

    message: _Message
    status: str | None = None
    details: str | None = None
    output: str | None = None
    timestamp: int | float | None = None


class _Bounced(ProviderInput):
    original_message: _Message


class _Tracked(ProviderInput):
    """MessageLinkClicked (with `url`) and MessageLoaded."""

    message: _Message
    url: str | None = None
    user_agent: str | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_STATUS = msgspec.json.Decoder(_Status)
_BOUNCED = msgspec.json.Decoder(_Bounced)
_TRACKED = msgspec.json.Decoder(_Tracked)
_STATUS_EVENTS = ("MessageSent", "MessageDelayed", "MessageDeliveryFailed", "MessageHeld")
_TRACKED_EVENTS = {"MessageLinkClicked": "email.click", "MessageLoaded": "email.open"}


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    now: float,
    tolerance: float | None = POSTAL_TOLERANCE_SECONDS,
) -> None:
    """Raise InvalidSignature unless `X-Postal-Signature-256` (or, without it,
    `X-Postal-Signature`) signs `body` with the public key `secret` and the body's `timestamp`
    is within `tolerance` of `now` (None: no freshness check)."""
    key = public_key(secret)
    name = SIGNATURE_256_HEADER
    algorithm: hashes.HashAlgorithm = hashes.SHA256()
    signature = header(headers, SIGNATURE_256_HEADER)
    if signature is None:
        # Verifying what older Postal versions send, which is all they send.
        name, algorithm = SIGNATURE_HEADER, hashes.SHA1()  # noqa: S303
        signature = header(headers, SIGNATURE_HEADER)
    if signature is None:
        raise InvalidSignature(f"missing {SIGNATURE_256_HEADER} and {SIGNATURE_HEADER} headers")
    try:
        raw = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise InvalidSignature(f"{name} is not base64") from None
    try:
        key.verify(raw, body, padding.PKCS1v15(), algorithm)
    except BadRsaSignature:
        raise InvalidSignature(f"{name} does not match the body") from None
    if tolerance is not None:
        timestamp = decode(_ENVELOPE, body, provider=NAME).timestamp
        check_age(now - timestamp, tolerance=tolerance, name="timestamp")


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored; `email_id` is the message's `message_id` (the one Postal's send API
    returns) and `provider_event_id` the request's `uuid`. Events about incoming messages
    (mail Postal received and passed on) are Ignored: only sent mail has canonical events."""
    envelope = decode(_ENVELOPE, body, provider=NAME)
    kind = envelope.event
    if kind in _STATUS_EVENTS:
        status = decode(_STATUS, envelope.payload, provider=NAME, at="payload")
        return [_status_event(kind, envelope, status)]
    if kind == "MessageBounced":
        bounced = decode(_BOUNCED, envelope.payload, provider=NAME, at="payload")
        message = bounced.original_message
        if _incoming(message):
            return [Ignored(provider=NAME, provider_type=f"{kind}.incoming")]
        # Postal passes on a bounce message received after the fact without classifying it.
        bounce = Bounce(kind="undetermined")
        return [_event("email.bounce", envelope, message, "original_message", bounce=bounce)]
    canonical = _TRACKED_EVENTS.get(kind)
    if canonical is not None:
        tracked = decode(_TRACKED, envelope.payload, provider=NAME, at="payload")
        click = Click(url=tracked.url) if canonical == "email.click" and tracked.url else None
        return [
            _event(
                canonical,
                envelope,
                tracked.message,
                "message",
                click=click,
                user_agent=tracked.user_agent,
            )
        ]
    # DomainDNSError, SendLimitApproaching, SendLimitExceeded, and whatever Postal adds next.
    return [Ignored(provider=NAME, provider_type=kind)]


def _status_event(kind: str, envelope: _Envelope, status: _Status) -> Normalized:
    message = status.message
    if _incoming(message):
        return Ignored(provider=NAME, provider_type=f"{kind}.incoming")
    occurred = status.timestamp if status.timestamp is not None else envelope.timestamp
    if kind == "MessageSent":
        return _event(
            "email.delivered",
            envelope,
            message,
            "message",
            occurred=occurred,
            mta_response=status.output or status.details,
        )
    if kind == "MessageDelayed":
        return _event(
            "email.deferred",
            envelope,
            message,
            "message",
            occurred=occurred,
            reason=status.details,
            mta_response=status.output,
        )
    if kind == "MessageHeld":
        return _event(
            "email.rejected", envelope, message, "message", occurred=occurred, reason=status.details
        )
    # MessageDeliveryFailed: with the receiving server's reply, that server refused the address
    # for good; without one, Postal gave up by itself: after soft failures (soft), or for a
    # reason of its own (spam, a removed domain or message: it refused to send).
    if status.output:
        bounce = Bounce(kind="hard", reason=status.details)
        return _event(
            "email.bounce",
            envelope,
            message,
            "message",
            occurred=occurred,
            bounce=bounce,
            mta_response=status.output,
        )
    if (status.details or "").startswith(_MAX_ATTEMPTS):
        bounce = Bounce(kind="soft", reason=status.details)
        return _event(
            "email.bounce", envelope, message, "message", occurred=occurred, bounce=bounce
        )
    return _event(
        "email.rejected", envelope, message, "message", occurred=occurred, reason=status.details
    )


def _event(
    type_: str,
    envelope: _Envelope,
    message: _Message,
    at: str,
    *,
    occurred: float | None = None,
    **fields: Any,
) -> Event:
    email_id = (message.message_id or "").strip().removeprefix("<").removesuffix(">").strip()
    if not email_id:
        raise InvalidPayload(
            "postal payload: the message has no message_id", field=f"payload.{at}.message_id"
        )
    when = envelope.timestamp if occurred is None else occurred
    return Event(
        type=type_,
        email_id=email_id,
        occurred_at=iso_utc(when, field="timestamp"),
        provider=NAME,
        recipient=message.to,
        provider_event_id=envelope.uuid,
        # A list, as Mailgun's `tags`: a tag `account_id:acc_…` can then name an account.
        metadata={"tags": [message.tag]} if message.tag else None,
        **fields,
    )


def _incoming(message: _Message) -> bool:
    return message.direction == "incoming"


@functools.lru_cache(maxsize=8)  # parsing the key costs more than checking a signature
def public_key(secret: str) -> rsa.RSAPublicKey:
    """The Postal server's public key, from PEM, bare base64 DER or the return-path DKIM record
    whose `p=` it is, or InvalidSignature. A `\\n` typed into a variable is a newline."""
    text = secret.strip().replace("\\n", "\n")
    record = _DKIM_KEY.search(text)
    if record and not text.startswith("-----BEGIN"):
        text = record["key"]  # `v=DKIM1; t=s; h=sha256; p=MIIB…;`
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, UnsupportedAlgorithm):  # binascii.Error is a ValueError
        raise InvalidSignature("the Postal public key is not PEM or base64 DER") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidSignature("the Postal public key is not an RSA key")
    return key


class Postal(Provider):
    """Recognised by its signature headers; the secret must be an RSA public key."""

    name = NAME
    secret_variable = "POSTAL_WEBHOOK_PUBLIC_KEY"
    summary = "a Postal event (RSA-signed)"
    tolerance_seconds = POSTAL_TOLERANCE_SECONDS

    def check_secret(self, secret: str) -> None:
        public_key(secret)

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
        verify(body, headers, secret, now=now, tolerance=self.tolerance_seconds)

    # The module's own pure function (tested as it is), as the protocol's method.
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return (
            header(headers, SIGNATURE_256_HEADER) is not None
            or header(headers, SIGNATURE_HEADER) is not None
        )


PROVIDER = Postal()
