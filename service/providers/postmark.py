"""Postmark webhooks (pure).

Body: one record per request, PascalCase keys, told apart by `RecordType`: Delivery, Bounce,
SpamComplaint, Open, Click, SubscriptionChange. Postmark signs nothing: requests carry the
basic auth credentials of the webhook's URL (`service.providers.basic_auth`).
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
from service.providers.fields import derived_event_id
from service.providers.timestamps import iso_utc

NAME = "postmark"

# SubscriptionChange is read apart: only some of them are unsubscribes.
_TYPES = {
    "Delivery": "email.delivered",
    "Bounce": "email.bounce",
    "SpamComplaint": "email.complaint",
    "Open": "email.open",
    "Click": "email.click",
}
SUBSCRIPTION_CHANGE = "SubscriptionChange"
# Where each record type keeps its time.
_TIME_FIELDS = {
    "Delivery": "DeliveredAt",
    "Bounce": "BouncedAt",
    "SpamComplaint": "BouncedAt",
    "Open": "ReceivedAt",
    "Click": "ReceivedAt",
    SUBSCRIPTION_CHANGE: "ChangedAt",
}
# Postmark's bounce types (its Bounce API's list): the address is gone, or the failure was
# temporary (a challenge-response holds the message, as SparkPost classifies it too). Every
# other type (Unknown, AutoResponder, Blocked, SpamNotification, ManuallyDeactivated,
# DMARCPolicy, SMTPApiError, new ones, ...) is a bounce of undetermined kind.
HARD_BOUNCE_TYPES = frozenset({"HardBounce", "BadEmailAddress"})
SOFT_BOUNCE_TYPES = frozenset({"SoftBounce", "Transient", "DnsError", "ChallengeVerification"})
# The SubscriptionChange reason of a recipient's unsubscribe (or one made for them in the
# dashboard or API); suppressions for a HardBounce or a SpamComplaint repeat what the Bounce
# and SpamComplaint records already said.
MANUAL_SUPPRESSION = "ManualSuppression"


class _Record(ProviderInput):
    record_type: Annotated[str, Meta(min_length=1)] = msgspec.field(name="RecordType")
    message_id: str | None = msgspec.field(default=None, name="MessageID")
    id: int | str | None = msgspec.field(default=None, name="ID")
    type: str | None = msgspec.field(default=None, name="Type")
    email: str | None = msgspec.field(default=None, name="Email")
    recipient: str | None = msgspec.field(default=None, name="Recipient")
    delivered_at: str | None = msgspec.field(default=None, name="DeliveredAt")
    bounced_at: str | None = msgspec.field(default=None, name="BouncedAt")
    received_at: str | None = msgspec.field(default=None, name="ReceivedAt")
    changed_at: str | None = msgspec.field(default=None, name="ChangedAt")
    details: str | None = msgspec.field(default=None, name="Details")
    description: str | None = msgspec.field(default=None, name="Description")
    tag: str | None = msgspec.field(default=None, name="Tag")
    metadata: dict[str, Any] | None = msgspec.field(default=None, name="Metadata")
    user_agent: str | None = msgspec.field(default=None, name="UserAgent")
    original_link: str | None = msgspec.field(default=None, name="OriginalLink")
    suppress_sending: bool | None = msgspec.field(default=None, name="SuppressSending")
    suppression_reason: str | None = msgspec.field(default=None, name="SuppressionReason")

    def time(self) -> tuple[str, str | None]:
        """The name of this record type's time field, and its value."""
        name = _TIME_FIELDS.get(self.record_type, "ReceivedAt")
        values = {
            "DeliveredAt": self.delivered_at,
            "BouncedAt": self.bounced_at,
            "ReceivedAt": self.received_at,
            "ChangedAt": self.changed_at,
        }
        return name, values[name]


_RECORD = msgspec.json.Decoder(_Record)
_TOP_LEVEL = msgspec.json.Decoder(dict[str, msgspec.Raw])


def normalize(body: bytes, headers: Mapping[str, str], *, received_at: str) -> list[Normalized]:
    """One Event or Ignored. `provider_event_id` is `Bounce:<ID>` (or `SpamComplaint:<ID>`)
    for the records that have an ID, else a digest of the record's type, message, recipient,
    time, link and suppression (`fields.derived_event_id`)."""
    record = decode(_RECORD, body, provider=NAME)
    kind = record.record_type
    canonical = _TYPES.get(kind)
    if kind == SUBSCRIPTION_CHANGE:
        canonical = _subscription_change(record)
    if canonical is None:
        return [Ignored(provider=NAME, provider_type=_ignored_type(record))]
    email_id = (record.message_id or "").strip()
    if not email_id:
        raise InvalidPayload(
            f"{NAME} payload: a {kind} record needs a MessageID", field="MessageID"
        )
    time_field, time = record.time()
    if time is None:
        raise InvalidPayload(
            f"{NAME} payload: a {kind} record needs {time_field}", field=time_field
        )
    is_bounce = canonical == "email.bounce"
    return [
        Event(
            type=canonical,
            email_id=email_id,
            occurred_at=iso_utc(time, field=time_field),
            provider=NAME,
            recipient=record.email or record.recipient,
            provider_event_id=_event_id(record, email_id, time),
            bounce=_bounce(record) if is_bounce else None,
            click=Click(url=record.original_link)
            if kind == "Click" and record.original_link
            else None,
            metadata=_metadata(record),
            user_agent=record.user_agent if kind in ("Open", "Click") else None,
            mta_response=record.details if kind in ("Delivery", "Bounce") else None,
        )
    ]


def _subscription_change(record: _Record) -> str | None:
    # Only a manual suppression is an unsubscribe; one without a message (made by the account
    # in the dashboard or API) is about no email of ours.
    manual = record.suppress_sending and record.suppression_reason == MANUAL_SUPPRESSION
    return "email.unsubscribe" if manual and record.message_id else None


def _ignored_type(record: _Record) -> str:
    """`Inbound`, `SubscriptionChange:HardBounce`, `SubscriptionChange:Reactivated`, ..."""
    if record.record_type != SUBSCRIPTION_CHANGE:
        return record.record_type
    if not record.suppress_sending:
        return f"{SUBSCRIPTION_CHANGE}:Reactivated"
    return f"{SUBSCRIPTION_CHANGE}:{record.suppression_reason or 'NoMessage'}"


def _bounce(record: _Record) -> Bounce:
    kind: Literal["hard", "soft", "undetermined"] = "undetermined"
    if record.type in HARD_BOUNCE_TYPES:
        kind = "hard"
    elif record.type in SOFT_BOUNCE_TYPES:
        kind = "soft"
    return Bounce(kind=kind, reason=record.details or record.description or record.type)


def _event_id(record: _Record, email_id: str, time: str) -> str:
    if record.id is not None and record.record_type in ("Bounce", "SpamComplaint"):
        return f"{record.record_type}:{record.id}"
    return derived_event_id(
        record.record_type,
        email_id,
        record.email or record.recipient,
        time,
        record.original_link,
        record.suppress_sending,
    )


def _metadata(record: _Record) -> dict[str, Any] | None:
    """`Metadata` as it is, plus `Tag` as `tag` (which wins a name clash)."""
    metadata = dict(record.metadata or {})
    if record.tag:
        metadata["tag"] = record.tag
    return metadata or None


def _has_record_type(body: bytes) -> bool:
    # The substring test spares decoding every generic body.
    if b'"RecordType"' not in body:
        return False
    try:
        keys = _TOP_LEVEL.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    return "RecordType" in keys


class Postmark(BasicAuthProvider):
    """Recognised by a JSON object with a `RecordType` key; the secret is `user:password`."""

    name = NAME
    secret_variable = "POSTMARK_WEBHOOK_BASIC_AUTH"
    summary = "a Postmark record (basic auth)"

    # The module's own pure function (tested as it is), as the protocol's method.
    normalize = staticmethod(normalize)

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return json_start(body) == b"{" and _has_record_type(body)


PROVIDER = Postmark()
