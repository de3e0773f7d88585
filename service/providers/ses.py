"""Amazon SES events, delivered by Amazon SNS (pure).

Body: one SNS message, JSON sent as `text/plain`: `{"Type", "MessageId", "TopicArn", "Subject"?,
"Message", "Timestamp", "SignatureVersion", "Signature", "SigningCertURL", ...}` (+ `Token`,
`SubscribeURL` when SNS asks to confirm a subscription). A Notification's `Message` is the SES
event, itself JSON text: event publishing (`eventType`) or identity notifications
(`notificationType`).

Signature: RSA over `Name\\nValue\\n` for each signed field of the message, in byte order of the
names (`string_to_sign`); SignatureVersion 1 hashes with SHA1, 2 with SHA256. The key is the
X.509 certificate at `SigningCertURL`, which the web edge fetches, only from Amazon's URLs, and
passes in. SNS has no shared secret: the provider's variable, SES_TOPIC_ARNS, optionally lists
the topics whose messages are taken (others are refused with 403), and every message is
verified whether or not it is set.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature as BadRsaSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from msgspec import Meta

from service.core.errors import Forbidden, InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored, Normalized
from service.providers.base import (
    Provider,
    ProviderInput,
    decode,
    header,
    is_json_media_type,
    json_start,
)
from service.providers.timestamps import check_fresh_iso, iso_utc

NAME = "ses"
MESSAGE_TYPE_HEADER = "x-amz-sns-message-type"
# SNS gives up on an HTTP/S delivery at most 3,600 s after publishing it (a hard limit of its
# delivery policies), keeping `Timestamp`, the publish time: a genuine message is never more
# than an hour old. Another hour covers clock skew. A replay inside the window is a duplicate
# of the MessageId already stored.
SNS_TOLERANCE_SECONDS = 2 * 3600

# The signed fields of each message type, in the byte order SNS signs them in; a Notification's
# Subject is signed only when the message has one.
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}  # fmt: skip
_OPTIONAL_FIELDS = frozenset({"Subject"})
_HASHES: dict[str, type[hashes.SHA1 | hashes.SHA256]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}")

NonEmpty = Annotated[str, Meta(min_length=1)]
T = TypeVar("T")


class _Envelope(ProviderInput):
    """An SNS message; every field optional here, so that a missing one is named by whoever
    needs it (the signature check or the normaliser)."""

    type: str | None = msgspec.field(default=None, name="Type")
    message_id: str | None = msgspec.field(default=None, name="MessageId")
    topic_arn: str | None = msgspec.field(default=None, name="TopicArn")
    subject: str | None = msgspec.field(default=None, name="Subject")
    message: str | None = msgspec.field(default=None, name="Message")
    timestamp: str | None = msgspec.field(default=None, name="Timestamp")
    token: str | None = msgspec.field(default=None, name="Token")
    subscribe_url: str | None = msgspec.field(default=None, name="SubscribeURL")
    signature_version: str | None = msgspec.field(default=None, name="SignatureVersion")
    signature: str | None = msgspec.field(default=None, name="Signature")
    signing_cert_url: str | None = msgspec.field(default=None, name="SigningCertURL")

    def field(self, name: str) -> str | None:
        """The value of the SNS field `name` (e.g. `MessageId`)."""
        value: str | None = getattr(self, _ATTRIBUTES[name])
        return value


_ATTRIBUTES = {
    field.encode_name: field.name for field in msgspec.structs.fields(_Envelope)
}  # "MessageId" → "message_id"


class _Mail(ProviderInput):
    message_id: NonEmpty = msgspec.field(name="messageId")
    timestamp: str | None = None
    destination: list[str] = msgspec.field(default_factory=list)
    # Tag name → list of values, kept as SES gives them.
    tags: dict[str, Any] | None = None


class _Recipient(ProviderInput):
    email_address: str | None = msgspec.field(default=None, name="emailAddress")
    diagnostic_code: str | None = msgspec.field(default=None, name="diagnosticCode")


class _Bounce(ProviderInput):
    bounce_type: str | None = msgspec.field(default=None, name="bounceType")
    bounce_sub_type: str | None = msgspec.field(default=None, name="bounceSubType")
    bounced_recipients: list[_Recipient] = msgspec.field(
        default_factory=list, name="bouncedRecipients"
    )
    timestamp: str | None = None


class _Complaint(ProviderInput):
    complained_recipients: list[_Recipient] = msgspec.field(
        default_factory=list, name="complainedRecipients"
    )
    timestamp: str | None = None


class _Delivery(ProviderInput):
    recipients: list[str] = msgspec.field(default_factory=list)
    smtp_response: str | None = msgspec.field(default=None, name="smtpResponse")
    timestamp: str | None = None


class _Open(ProviderInput):
    user_agent: str | None = msgspec.field(default=None, name="userAgent")
    timestamp: str | None = None


class _Click(ProviderInput):
    link: str | None = None
    user_agent: str | None = msgspec.field(default=None, name="userAgent")
    timestamp: str | None = None


class _Reject(ProviderInput):
    reason: str | None = None


class _DeliveryDelay(ProviderInput):
    delay_type: str | None = msgspec.field(default=None, name="delayType")
    delayed_recipients: list[_Recipient] = msgspec.field(
        default_factory=list, name="delayedRecipients"
    )
    timestamp: str | None = None


class _TopicStatus(ProviderInput):
    topic_name: str | None = msgspec.field(default=None, name="topicName")
    subscription_status: str | None = msgspec.field(default=None, name="subscriptionStatus")


class _Preferences(ProviderInput):
    unsubscribe_all: bool | None = msgspec.field(default=None, name="unsubscribeAll")
    topics: list[_TopicStatus] = msgspec.field(default_factory=list, name="topicSubscriptionStatus")


class _Subscription(ProviderInput):
    new: _Preferences | None = msgspec.field(default=None, name="newTopicPreferences")
    old: _Preferences | None = msgspec.field(default=None, name="oldTopicPreferences")
    timestamp: str | None = None


class _Failure(ProviderInput):
    error_message: str | None = msgspec.field(default=None, name="errorMessage")


class _SesEvent(ProviderInput):
    mail: _Mail
    event_type: str | None = msgspec.field(default=None, name="eventType")
    notification_type: str | None = msgspec.field(default=None, name="notificationType")
    bounce: _Bounce | None = None
    complaint: _Complaint | None = None
    delivery: _Delivery | None = None
    open_: _Open | None = msgspec.field(default=None, name="open")
    click: _Click | None = None
    reject: _Reject | None = None
    delivery_delay: _DeliveryDelay | None = msgspec.field(default=None, name="deliveryDelay")
    subscription: _Subscription | None = None
    failure: _Failure | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_SES_EVENT = msgspec.json.Decoder(_SesEvent)


def signing_certificate_url(
    body: bytes,
    headers: Mapping[str, str],
    topics: str,
    *,
    now: float,
    tolerance: float = SNS_TOLERANCE_SECONDS,
) -> str:
    """`SigningCertURL` of a message that passes every check but the signature's (see
    `verify`), which it raises for: the caller fetches the certificate only for those."""
    envelope, _ = _checked(body, topics, now=now, tolerance=tolerance)
    url = envelope.signing_cert_url
    assert url is not None  # _checked requires it
    return url


def verify(
    body: bytes,
    headers: Mapping[str, str],
    topics: str,
    certificate: bytes,
    *,
    now: float,
    tolerance: float = SNS_TOLERANCE_SECONDS,
) -> None:
    """Raise InvalidSignature unless `body` is an SNS message signed with the key of
    `certificate` (PEM) and its `Timestamp` is within `tolerance` of `now`; Forbidden when
    `topics` (comma-separated ARNs, "" for any) does not list its `TopicArn`."""
    envelope, algorithm = _checked(body, topics, now=now, tolerance=tolerance)
    key = certificate_key(certificate)
    try:
        signature = base64.b64decode(envelope.signature or "", validate=True)
    except binascii.Error:
        raise InvalidSignature("Signature is not base64") from None
    try:
        key.verify(signature, string_to_sign(envelope), padding.PKCS1v15(), algorithm())
    except BadRsaSignature:
        raise InvalidSignature("Signature does not match the message") from None


def string_to_sign(envelope: _Envelope) -> bytes:
    """`Name\\nValue\\n` for each signed field of the message's type, in AWS's order."""
    names = _SIGNED_FIELDS.get(envelope.type or "")
    if names is None:
        raise InvalidSignature(f"Type {envelope.type!r:.40} is not an SNS message type")
    parts = []
    for name in names:
        value = envelope.field(name)
        if value is None:
            if name in _OPTIONAL_FIELDS:
                continue
            raise InvalidSignature(f"the SNS message has no {name}")
        parts.append(f"{name}\n{value}\n")
    try:
        return "".join(parts).encode()
    except UnicodeEncodeError:  # a lone surrogate, which JSON escapes can spell
        raise InvalidSignature("the SNS message is not valid UTF-8") from None


def _checked(
    body: bytes, topics: str, *, now: float, tolerance: float
) -> tuple[_Envelope, type[hashes.SHA1 | hashes.SHA256]]:
    """The message and its hash algorithm, once everything but the signature checks out."""
    envelope = decode(_ENVELOPE, body, provider=NAME)
    string_to_sign(envelope)  # the type is known and every signed field is there
    for name in ("SignatureVersion", "Signature", "SigningCertURL"):
        if not envelope.field(name):
            raise InvalidSignature(f"the SNS message has no {name}")
    algorithm = _HASHES.get(envelope.signature_version or "")
    if algorithm is None:
        raise InvalidSignature(
            f"SignatureVersion {envelope.signature_version!r:.20} is neither 1 nor 2"
        )
    assert envelope.timestamp is not None  # every type signs it
    check_fresh_iso(envelope.timestamp, now=now, tolerance=tolerance, name="Timestamp")
    allowed = topic_arns(topics)
    if allowed and envelope.topic_arn not in allowed:
        raise Forbidden(f"TopicArn {envelope.topic_arn!r:.300} is not in SES_TOPIC_ARNS")
    return envelope, algorithm


@functools.lru_cache(maxsize=16)  # parsing the certificate costs more than checking a signature
def certificate_key(certificate: bytes) -> rsa.RSAPublicKey:
    """The RSA key of a PEM certificate, or InvalidSignature."""
    try:
        key = x509.load_pem_x509_certificate(certificate).public_key()
    except ValueError:
        raise InvalidSignature(
            "the SNS signing certificate is not a PEM X.509 certificate"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidSignature("the SNS signing certificate does not hold an RSA key")
    return key


@functools.lru_cache(maxsize=8)
def topic_arns(topics: str) -> frozenset[str]:
    """The comma-separated SNS topic ARNs of SES_TOPIC_ARNS ("": any topic), or
    InvalidSignature naming the position of one that is not an ARN."""
    arns = [arn.strip() for arn in topics.split(",") if arn.strip()]
    for position, arn in enumerate(arns, start=1):
        if not _TOPIC_ARN.fullmatch(arn):
            raise InvalidSignature(f"entry #{position} is not an SNS topic ARN")
    return frozenset(arns)


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """The canonical events of a Notification's SES event, one per recipient where SES lists
    them; `provider_event_id` is `MessageId:index`. Confirmations are Ignored, with a notice for
    the operator."""
    envelope = decode(_ENVELOPE, body, provider=NAME)
    kind = envelope.type
    if not kind:
        raise InvalidPayload("ses payload: the SNS message has no Type", field="Type")
    if kind == "SubscriptionConfirmation":
        notice = (
            f"SNS asks to confirm the subscription of this URL to {envelope.topic_arn}: open "
            f"{envelope.subscribe_url} (or paste it into the SNS console's Confirm "
            "subscription) to receive its messages"
        )
        return [Ignored(provider=NAME, provider_type=kind, notice=notice)]
    if kind == "UnsubscribeConfirmation":
        notice = (
            f"this URL was unsubscribed from {envelope.topic_arn}: its messages no longer "
            f"arrive (to subscribe it again, open {envelope.subscribe_url})"
        )
        return [Ignored(provider=NAME, provider_type=kind, notice=notice)]
    if kind != "Notification":
        raise InvalidPayload(
            f"ses payload: Type {kind!r:.40} is not an SNS message type", field="Type"
        )
    if not envelope.message_id:
        raise InvalidPayload("ses payload: the SNS message has no MessageId", field="MessageId")
    message = (envelope.message or "").encode()
    if json_start(message) != b"{":
        # Not an SES event: SES's own "Successfully validated SNS topic ..." text, say.
        return [Ignored(provider=NAME, provider_type=kind)]
    event = decode(_SES_EVENT, message, provider=NAME, at="Message")
    return _Normalizer(envelope.message_id, envelope.timestamp, received_at, event).events()


class _Normalizer:
    """One SES event's canonical events; `index` numbers them for `provider_event_id`."""

    def __init__(
        self, message_id: str, sns_timestamp: str | None, received_at: str, event: _SesEvent
    ) -> None:
        self.message_id = message_id
        self.fallback_time = sns_timestamp or received_at
        self.event = event
        self.mail = event.mail

    def events(self) -> list[Normalized]:
        event = self.event
        kind = event.event_type or event.notification_type
        if not kind:
            raise InvalidPayload(
                "ses payload: the SES event has neither eventType nor notificationType",
                field="Message.eventType",
            )
        if kind == "Bounce":
            bounce = self.section(event.bounce, "bounce")
            return self.each(
                "email.bounce",
                self.listed(bounce.bounced_recipients),
                bounce.timestamp,
                "bounce",
                lambda recipient: {
                    "bounce": Bounce(
                        kind=_bounce_kind(bounce.bounce_type), reason=bounce.bounce_sub_type
                    ),
                    "mta_response": recipient.diagnostic_code if recipient else None,
                },
            )
        if kind == "Complaint":
            complaint = self.section(event.complaint, "complaint")
            return self.each(
                "email.complaint",
                self.listed(complaint.complained_recipients),
                complaint.timestamp,
                "complaint",
            )
        if kind == "Delivery":
            delivery = self.section(event.delivery, "delivery")
            recipients = [(address, None) for address in delivery.recipients]
            return self.each(
                "email.delivered",
                recipients or self.destination(),
                delivery.timestamp,
                "delivery",
                lambda recipient: {"mta_response": delivery.smtp_response},
            )
        if kind == "Open":
            opened = self.section(event.open_, "open")
            return self.each(
                "email.open",
                self.single(),
                opened.timestamp,
                "open",
                lambda recipient: {"user_agent": opened.user_agent},
            )
        if kind == "Click":
            click = self.section(event.click, "click")
            return self.each(
                "email.click",
                self.single(),
                click.timestamp,
                "click",
                lambda recipient: {
                    "click": Click(url=click.link) if click.link else None,
                    "user_agent": click.user_agent,
                },
            )
        if kind == "Reject":
            reject = self.section(event.reject, "reject")
            return self.each(
                "email.rejected",
                self.destination(),
                None,
                "reject",
                lambda recipient: {"reason": reject.reason},
            )
        if kind in ("Rendering Failure", "RenderingFailure"):
            failure = event.failure or _Failure()
            return self.each(
                "email.rejected",
                self.destination(),
                None,
                "failure",
                lambda recipient: {"reason": failure.error_message or "Rendering Failure"},
            )
        if kind == "DeliveryDelay":
            delay = self.section(event.delivery_delay, "deliveryDelay")
            return self.each(
                "email.deferred",
                self.listed(delay.delayed_recipients),
                delay.timestamp,
                "deliveryDelay",
                lambda recipient: {
                    "reason": delay.delay_type,
                    "mta_response": recipient.diagnostic_code if recipient else None,
                },
            )
        if kind == "Subscription":
            subscription = self.section(event.subscription, "subscription")
            if _unsubscribed(subscription):
                return self.each(
                    "email.unsubscribe", self.single(), subscription.timestamp, "subscription"
                )
        # Send, Received, a subscription that opts in, and whatever SES adds next.
        return [Ignored(provider=NAME, provider_type=kind)]

    def section(self, value: T | None, name: str) -> T:
        if value is None:
            raise InvalidPayload(
                f"ses payload: the SES event has no {name} object", field=f"Message.{name}"
            )
        return value

    def listed(self, recipients: list[_Recipient]) -> list[tuple[str | None, _Recipient | None]]:
        """The recipients SES names, else those the message was sent to."""
        return [(r.email_address, r) for r in recipients] or self.destination()

    def destination(self) -> list[tuple[str | None, _Recipient | None]]:
        return [(address, None) for address in self.mail.destination] or [(None, None)]

    def single(self) -> list[tuple[str | None, _Recipient | None]]:
        """Opens, clicks and unsubscribes do not say who: the recipient when there was one."""
        destination = self.mail.destination
        return [(destination[0] if len(destination) == 1 else None, None)]

    def each(
        self,
        type_: str,
        recipients: Sequence[tuple[str | None, _Recipient | None]],
        timestamp: str | None,
        section: str,
        extra: Callable[[_Recipient | None], dict[str, Any]] = lambda recipient: {},
    ) -> list[Normalized]:
        if timestamp is not None:
            occurred_at = iso_utc(timestamp, field=f"Message.{section}.timestamp")
        else:
            occurred_at = iso_utc(self.fallback_time, field="Timestamp")
        return [
            Event(
                type=type_,
                email_id=self.mail.message_id,
                occurred_at=occurred_at,
                provider=NAME,
                recipient=address,
                provider_event_id=f"{self.message_id}:{index}",
                metadata=self.mail.tags or None,
                **extra(recipient),
            )
            for index, (address, recipient) in enumerate(recipients)
        ]


def _bounce_kind(bounce_type: str | None) -> Literal["hard", "soft", "undetermined"]:
    # SES publishes a Transient bounce only once it has stopped retrying (DeliveryDelay covers
    # the retries), which is our `soft`.
    if bounce_type == "Permanent":
        return "hard"
    if bounce_type == "Transient":
        return "soft"
    return "undetermined"


def _unsubscribed(subscription: _Subscription) -> bool:
    """Whether the change opts the contact out: of everything, or of one more topic."""
    new, old = subscription.new, subscription.old or _Preferences()
    if new is None:
        return False
    if new.unsubscribe_all and not old.unsubscribe_all:
        return True
    opted_out = {t.topic_name for t in old.topics if t.subscription_status == "OptOut"}
    return any(
        t.subscription_status == "OptOut" and t.topic_name not in opted_out for t in new.topics
    )


class Ses(Provider):
    """Recognised by SNS's `x-amz-sns-message-type` header; verified with the certificate the
    web edge fetches from `SigningCertURL`, whether SES_TOPIC_ARNS is set or not."""

    name = NAME
    secret_variable = "SES_TOPIC_ARNS"
    summary = "Amazon SES events through Amazon SNS (SNS-signed)"
    tolerance_seconds = SNS_TOLERANCE_SECONDS

    def accepts_media_type(self, media_type: str) -> bool:
        # SNS posts its JSON as text/plain; a subscription's DeliveryPolicy can make it JSON.
        return media_type == "text/plain" or is_json_media_type(media_type)

    def check_secret(self, secret: str) -> None:
        topic_arns(secret)

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
        raise InvalidSignature("an SNS message is verified with its SigningCertURL certificate")

    def signing_key_url(
        self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float
    ) -> str | None:
        return signing_certificate_url(body, headers, secret, now=now)

    def verify_with_key(
        self, body: bytes, headers: Mapping[str, str], secret: str, key: bytes, *, now: float
    ) -> None:
        verify(body, headers, secret, key, now=now)

    # The module's own pure function (tested as it is), as the protocol's method.
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return header(headers, MESSAGE_TYPE_HEADER) is not None


PROVIDER = Ses()
