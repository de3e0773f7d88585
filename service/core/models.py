"""The API's request and response bodies. The same Structs validate requests, encode
responses and generate the OpenAPI schemas, so the three cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from service.core.event_types import (
    DELIVERY_EXHAUSTED,
    EVENT_TYPES,
    QUALIFIED_PREFIX,
    WEBHOOK_DISABLED,
)
from service.core.headers import MAX_HEADERS
from service.core.rotation import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS
from service.core.urls import MAX_URL_LENGTH


class Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Shared base: unknown request fields are a 422 that names them (a typo such as
    `secert` must not silently create a webhook without the secret the user meant)."""


Url = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description=(
            "The HTTPS endpoint URL to receive webhook deliveries: absolute, https:// (http:// "
            "only where the server sets ALLOW_HTTP_URLS), a public host, no credentials"
        ),
        examples=["https://yourapp.com/hooks/email-events"],
        # Documented, not enforced here: service.core.urls checks it with a message that
        # says what is wrong (and the server's settings decide on http://).
        extra_json_schema={"format": "uri", "pattern": "^https?://"},
    ),
]
EventTypes = Annotated[
    str,
    Meta(
        description=(
            "Comma-separated event types: open, click, bounce, unsubscribe, delivered, "
            "complaint, deferred, rejected (email.open style accepted), the operational "
            "webhook.disabled and delivery.exhausted, or * for all (operational included)"
        ),
        examples=["open,click,bounce,unsubscribe"],
    ),
]
Secret = Annotated[
    str,
    Meta(
        min_length=8,
        max_length=256,
        description="Secret key for HMAC signature verification (8-256 characters)",
        examples=["whsec_your_secret_key_here"],
    ),
]
CustomHeaders = Annotated[
    dict[str, str],
    Meta(
        max_length=MAX_HEADERS,
        description=(
            "Headers sent with every delivery to this endpoint (at most 20, 8 KiB in all): "
            "names are HTTP tokens, values visible ASCII; the headers every delivery sets "
            "(Content-Type, User-Agent, X-Webhook-Signature, webhook-*, …) and hop-by-hop "
            "ones (Connection, Proxy-*, …) are refused"
        ),
        examples=[{"Authorization": "Bearer your-endpoint-token"}],
    ),
]
MAX_RATE_LIMIT = 10_000
RateLimit = Annotated[
    int,
    Meta(
        ge=1,
        le=MAX_RATE_LIMIT,
        description=(
            "Deliveries per second at most, first attempts and retries alike, across every "
            "worker process; null (or absent): unlimited"
        ),
        examples=[10],
    ),
]
Timestamp = Annotated[
    str,
    Meta(
        description="ISO 8601 UTC timestamp",
        examples=["2026-03-03T10:00:00Z"],
        extra_json_schema={"format": "date-time"},
    ),
]


class WebhookCreate(Model):
    url: Url
    events: EventTypes
    secret: Secret | None = None
    active: bool = True
    rate_limit: RateLimit | None = None
    headers: CustomHeaders | None = None


class WebhookUpdate(Model):
    url: Url | UnsetType = UNSET
    events: EventTypes | UnsetType = UNSET
    secret: (
        Annotated[
            Secret,
            Meta(
                description=(
                    "Replaces the secret at once, with no overlap (previous secrets of a rotation "
                    "are dropped too); see /secret/rotate for a switch with overlap"
                )
            ),
        ]
        | UnsetType
    ) = UNSET
    active: bool | UnsetType = UNSET
    rate_limit: RateLimit | UnsetType | None = UNSET  # null: unlimited again
    headers: (
        Annotated[
            CustomHeaders | None,
            Meta(description="Replaces the whole set; {} or null removes every custom header"),
        ]
        | UnsetType
    ) = UNSET


class Webhook(Model):
    id: int
    url: str
    events: str
    active: bool
    created_at: Timestamp
    # Present only in the create response, and only when the server generated the secret.
    secret: str | UnsetType = UNSET
    disabled_reason: Annotated[
        str | None,
        Meta(description="Why delivery disabled it: gone (the endpoint answered 410) or failing"),
    ] = None
    rate_limit: Annotated[
        int | None, Meta(description="Deliveries per second at most; absent: unlimited")
    ] = None
    headers: Annotated[
        dict[str, str] | UnsetType,
        Meta(description="The custom headers sent with every delivery, when there are any"),
    ] = UNSET


class SecretRotate(Model):
    secret: Annotated[
        Secret | None,
        Meta(description="The new secret; when missing (or null) one is generated and returned"),
    ] = None
    grace_period_seconds: Annotated[
        int,
        Meta(
            ge=0,
            le=MAX_GRACE_SECONDS,
            description=(
                "How long the replaced secret (and any earlier one still live) keeps signing "
                "webhook-signature beside the new one, 0 to 604800 (a week); 0 retires them now"
            ),
        ),
    ] = DEFAULT_GRACE_SECONDS


class SecretRotation(Model):
    webhook_id: int
    previous_secrets_expire_at: Annotated[
        Timestamp | None,
        Meta(
            description=(
                "Until when the replaced secrets still sign webhook-signature; null when none "
                "does (a grace period of 0)"
            )
        ),
    ]
    secret: Annotated[
        str | UnsetType,
        Meta(description="The generated secret: present only when the request gave none"),
    ] = UNSET


class WebhookList(Model):
    webhooks: list[Webhook]


class ErrorDetail(Model):
    code: str
    message: str
    field: str | UnsetType = UNSET


class ErrorBody(Model):
    error: ErrorDetail


class Bounce(Model):
    kind: Annotated[
        Literal["hard", "soft", "undetermined"],
        Meta(
            description=(
                "hard: the address will never accept mail (unknown user, no such domain); soft: "
                "a lasting but temporary refusal (mailbox full, message too large) after the "
                "provider gave up; undetermined: the provider did not say which"
            )
        ),
    ]
    reason: str | None = None


class Click(Model):
    url: str


DisabledReason = Literal["gone", "failing"]


class WebhookDisabledData(Model):
    """`data` of a webhook.disabled event: delivery disabled one of the account's webhooks
    (PATCH {"active": true} re-enables it)."""

    webhook_id: int
    url: str
    reason: Annotated[
        DisabledReason,
        Meta(
            description=(
                "gone: its endpoint answered 410; failing: nothing but failures for DISABLE_AFTER"
            )
        ),
    ]
    disabled_at: Timestamp
    delivery_id: Annotated[str, Meta(description="The delivery whose attempt disabled it")]
    last_status_code: int | None  # always present: null when the attempt got no answer
    last_error: str | None


class DeliveryExhaustedData(Model):
    """`data` of a delivery.exhausted event: a delivery's last attempt failed; it is failed
    and stays retryable by hand (…/retry, …/recover)."""

    delivery_id: str
    webhook_id: int
    event_id: str
    event_type: Annotated[str, Meta(examples=["email.bounce"])]
    attempts: int
    last_status_code: int | None  # always present: null when the attempt got no answer
    last_error: Annotated[
        str | None, Meta(description="timeout, connect_error, blocked_address, http_status, …")
    ]
    failed_at: Timestamp


class Event(Model):
    """A provider event in canonical form: what is stored, listed and delivered.

    `id` is assigned when the event is stored; normalisers leave it unset."""

    type: Annotated[str, Meta(examples=["email.bounce"])]
    email_id: str
    occurred_at: Timestamp
    provider: Annotated[str, Meta(examples=["generic", "resend", "sendgrid", "mailgun"])]
    recipient: str | None = None
    provider_event_id: str | None = None
    bounce: Bounce | None = None
    click: Click | None = None
    metadata: dict[str, Any] | None = None
    user_agent: Annotated[str | None, Meta(description="Of an open or a click")] = None
    mta_response: Annotated[
        str | None,
        Meta(description="The receiving server's SMTP reply, for bounces, deliveries, deferrals"),
    ] = None
    reason: Annotated[
        str | None, Meta(description="Why the provider deferred or refused to send")
    ] = None
    machine: Annotated[
        str | None,
        Meta(
            description=(
                "First-party opens and clicks: set when a machine probably made it, naming the "
                "heuristic (prefetch, apple_privacy, image_proxy, scanner, data_centre, "
                "early_click; docs/tracking.md). Flagged, still delivered"
            )
        ),
    ] = None
    account_id: Annotated[
        str | None,
        Meta(description="The account the event was routed to; absent when unrouted"),
    ] = None
    # Operational events (provider "mailhooks", email_id ""): what happened, in the one field
    # of their type; the webhook it happened to is never sent the event.
    webhook_disabled: WebhookDisabledData | None = None
    delivery_exhausted: DeliveryExhaustedData | None = None
    exclude_webhook: Annotated[
        int | None,
        Meta(description="Operational events: the webhook they are about, not sent them"),
    ] = None
    id: str | UnsetType = UNSET


class PayloadData(Model):
    email_id: str
    recipient: str | None  # always present, null when the provider did not say
    timestamp: Annotated[str, Meta(description="When the event occurred (ISO 8601 UTC)")]
    provider: str
    bounce: Bounce | None = None
    click: Click | None = None
    metadata: dict[str, Any] | None = None
    user_agent: str | None = None
    mta_response: str | None = None
    reason: str | None = None
    machine: str | None = None


class WebhookPayload(Model):
    """The body of every delivery, signed in X-Webhook-Signature and webhook-signature."""

    id: Annotated[str, Meta(description="The event id (evt_…), the same for every endpoint")]
    type: Annotated[str, Meta(examples=["email.bounce"])]
    created_at: Annotated[str, Meta(description="When we stored the event (ISO 8601 UTC)")]
    data: PayloadData


class WebhookDisabledPayload(Model):
    """The body of a webhook.disabled delivery (the WebhookPayload envelope)."""

    id: str
    type: Literal["webhook.disabled"]
    created_at: str
    data: WebhookDisabledData


class DeliveryExhaustedPayload(Model):
    """The body of a delivery.exhausted delivery (the WebhookPayload envelope)."""

    id: str
    type: Literal["delivery.exhausted"]
    created_at: str
    data: DeliveryExhaustedData


AnyPayload = WebhookPayload | WebhookDisabledPayload | DeliveryExhaustedPayload

# Each operational event type's `data`, for catalogues of the types.
OPERATIONAL_DATA: dict[str, type[Model]] = {
    WEBHOOK_DISABLED: WebhookDisabledData,
    DELIVERY_EXHAUSTED: DeliveryExhaustedData,
}


class EventTypeInfo(Model):
    type: Annotated[str, Meta(examples=["email.open"])]
    description: str
    schema: Annotated[
        dict[str, Any],
        Meta(description="JSON Schema (2020-12) of the body a delivery of this type carries"),
    ]


class EventTypeList(Model):
    event_types: list[EventTypeInfo]


class Attempt(Model):
    number: int
    at: Timestamp
    latency_ms: int
    status_code: int | None = None
    error: Annotated[
        str | None,
        Meta(description="timeout, connect_error, blocked_address, network_error, http_status"),
    ] = None
    response: Annotated[str | None, Meta(description="The first 1 KiB of the response")] = None


DeliveryStatus = Literal["pending", "succeeded", "failed"]


class Delivery(Model):
    id: Annotated[str, Meta(description="Stable across retries; sent as webhook-id")]
    webhook_id: int
    event_id: str
    type: str
    status: DeliveryStatus
    attempts: int
    created_at: Timestamp
    updated_at: Timestamp
    next_attempt_at: Timestamp | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    attempt_log: list[Attempt] | None = None


class DeliveryList(Model):
    deliveries: list[Delivery]


class RecoverRequest(Model):
    since: Annotated[Timestamp, Meta(description="Re-queue failed deliveries created since then")]


class RecoverResult(Model):
    requeued: int


SYNTHETIC_TYPES = [*EVENT_TYPES, *(QUALIFIED_PREFIX + t for t in EVENT_TYPES)]


class SyntheticEventRequest(Model):
    type: Annotated[
        str,
        Meta(
            examples=["email.bounce", "open"],
            extra_json_schema={"enum": SYNTHETIC_TYPES},
        ),
    ] = "email.open"


class EventList(Model):
    events: list[Event]


class Received(Model):
    received: bool


class GenericInboundEvent(Model):
    """The generic inbound format (the API page's example). Every provider we know posts its
    own native format to the same URL; see docs/inbound.md."""

    type: Annotated[str, Meta(examples=["email.bounced"])]
    email_id: Annotated[str, Meta(examples=["msg_abc123def456"])]
    recipient: str | None = None
    timestamp: Timestamp | None = None
    bounce: Bounce | None = None
    click: Click | None = None
    metadata: dict[str, Any] | None = None
    account_id: Annotated[
        str | None, Meta(description="The account that sent the email (acc_…)")
    ] = None
    user_agent: str | None = None
    mta_response: str | None = None
    reason: str | None = None


class Health(Model):
    status: str


class WorkerStatus(Model):
    alive: bool
    last_heartbeat: Timestamp | None


class EventsStatus(Model):
    stored: int
    undelivered: Annotated[
        int | None, Meta(description="Stored events the worker has not read yet; null if unknown")
    ]
    in_progress: Annotated[int, Meta(description="Read by the worker, not acknowledged yet")]
    oldest_in_progress_at: Timestamp | None
    oldest_in_progress_age_seconds: float | None
    unreadable: Annotated[
        int,
        Meta(description="Stream entries that were not events, skipped by every reader"),
    ]
    dead_letters: Annotated[
        int,
        Meta(
            description=(
                "Events the worker could not process, set aside undelivered (the length of "
                "the stream mh:events:dead): see /api/dead-letters"
            )
        ),
    ]
    in_lanes: Annotated[
        int,
        Meta(
            description=(
                "Events of accounts with more waiting than a worker holds, moved to their "
                "account's lane to be delivered in turn (fair delivery: docs/delivery.md)"
            )
        ),
    ]


class MemoryStatus(Model):
    used_bytes: int
    max_bytes: Annotated[int | None, Meta(description="Redis maxmemory; null if unlimited")]
    used_fraction: float | None


class ServiceStatus(Model):
    status: Literal["ok", "degraded"]
    problems: list[str]
    worker: WorkerStatus
    events: EventsStatus
    redis_memory: MemoryStatus


AccountName = Annotated[
    str, Meta(min_length=1, max_length=200, description="A name for people", examples=["Acme"])
]


class AccountCreate(Model):
    name: AccountName


class AccountUpdate(Model):
    name: AccountName | UnsetType = UNSET


class Account(Model):
    id: Annotated[str, Meta(examples=["acc_0kx8q2m4n1a7b3c9d2e5"])]
    name: str
    created_at: Timestamp
    updated_at: Timestamp | UnsetType = UNSET


class AccountList(Model):
    accounts: list[Account]


class ApiKeyCreated(Model):
    id: Annotated[str, Meta(examples=["key_0kx8q2m4n1a7b3c9d2e5"])]
    key: Annotated[
        str, Meta(description="The key itself: shown in this response only, stored as a hash")
    ]
    prefix: Annotated[str, Meta(description="Its first characters, as listings show them")]
    created_at: Timestamp


class ApiKey(Model):
    id: str
    prefix: str
    created_at: Timestamp
    last_used_at: Annotated[
        Timestamp | None, Meta(description="To the minute; null if never used")
    ] = None


class ApiKeyList(Model):
    keys: list[ApiKey]


EmailId = Annotated[str, Meta(min_length=1, max_length=998)]


class EmailRegistration(Model):
    email_ids: Annotated[list[EmailId], Meta(min_length=1, max_length=1000)]


class EmailRegistrationResult(Model):
    registered: Annotated[int, Meta(description="Ids now the account's (new or renewed)")]
    conflicts: Annotated[
        list[str], Meta(description="Ids registered to another account: left unchanged")
    ]
    expires_at: Timestamp


TrackedEmailId = Annotated[
    str, Meta(min_length=1, max_length=998, description="The email's id, as events name it")
]
Recipient = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=320,
        description="The one recipient these URLs are for",
        examples=["alex@example.com"],
    ),
]
TrackedLink = Annotated[str, Meta(min_length=1, max_length=MAX_URL_LENGTH)]


class TrackingRequest(Model):
    email_id: TrackedEmailId
    recipient: Recipient
    links: Annotated[
        list[TrackedLink],
        Meta(
            max_length=1000,
            description="Absolute http(s) URLs to track (at most 1,000)",
            examples=[["https://shop.example.com/spring?utm_source=email"]],
        ),
    ] = []


class TrackingHeaders(Model):
    """The message headers of RFC 8058 one-click unsubscription: add both to the email."""

    list_unsubscribe: Annotated[str, Meta(examples=["<https://t.example.com/t/u/AQ…>"])] = (
        msgspec.field(name="List-Unsubscribe")
    )
    list_unsubscribe_post: Annotated[str, Meta(examples=["List-Unsubscribe=One-Click"])] = (
        msgspec.field(name="List-Unsubscribe-Post")
    )


class TrackingUrls(Model):
    open_url: Annotated[str, Meta(description="The pixel: an <img> of 1x1 pixel")]
    links: Annotated[
        dict[str, str], Meta(description="Each link sent, to the tracked URL that replaces it")
    ]
    unsubscribe_url: Annotated[str, Meta(description="The opt-out link (GET: a confirmation)")]
    headers: TrackingHeaders


class TrackedHtmlRequest(Model):
    email_id: TrackedEmailId
    recipient: Recipient
    html: Annotated[str, Meta(description="The message's HTML, for this one recipient")]
    track_opens: Annotated[bool, Meta(description="Add the pixel before </body>")] = True
    track_clicks: Annotated[
        bool, Meta(description="Replace each absolute http(s) link with its tracked URL")
    ] = True


class TrackedHtml(Model):
    html: Annotated[
        str,
        Meta(
            description=(
                "The HTML with its links tracked, {{unsubscribe_url}} in an href replaced, and "
                "the pixel added; otherwise unchanged, byte for byte"
            )
        ),
    ]
    open_url: str
    links: dict[str, str]
    unsubscribe_url: str
    headers: TrackingHeaders


SuppressionReason = Literal["hard_bounce", "complaint", "unsubscribe", "manual"]


class Suppression(Model):
    email: Annotated[str, Meta(description="In lower case", examples=["alex@example.com"])]
    reason: SuppressionReason
    created_at: Timestamp
    event_id: Annotated[
        str | None, Meta(description="The event that suppressed it; null when added by hand")
    ]


class SuppressionList(Model):
    suppressions: list[Suppression]


class SuppressionCreate(Model):
    email: Annotated[str, Meta(min_length=1, max_length=320, examples=["alex@example.com"])]
    reason: Annotated[
        SuppressionReason,
        Meta(description="manual unless you import a list kept elsewhere"),
    ] = "manual"


class DeadLetter(Model):
    """A stream entry the worker could not process, set aside undelivered."""

    id: Annotated[str, Meta(examples=["dl_1772532000000-0"])]
    event_id: Annotated[
        str, Meta(description="The original entry's event id; redriving gives it a new one")
    ]
    reason: Annotated[
        str,
        Meta(
            description=(
                "unreadable: not an event; failed: processing it raised DEAD_LETTER_AFTER "
                "times; reclaimed: handed out more often than that, never finished"
            ),
            examples=["failed"],
        ),
    ]
    detail: Annotated[str, Meta(description="What went wrong: the error, or why it is none")]
    dead_lettered_at: Timestamp
    deliveries: Annotated[
        int, Meta(description="How many times the worker was handed it (Redis's count)")
    ]
    account_id: Annotated[
        str | None, Meta(description="Its event's account; absent when unrouted or unreadable")
    ] = None
    event: Annotated[
        Event | None, Meta(description="The event it holds, decoded; absent if unreadable")
    ] = None
    fields: Annotated[
        dict[str, str] | UnsetType,
        Meta(
            description=(
                "GET one only: the original entry's fields as stored (e: the event, a: its "
                "account, r: its recipient index), bytes that are not UTF-8 as \\xNN"
            )
        ),
    ] = UNSET


class DeadLetterList(Model):
    dead_letters: list[DeadLetter]


class RedriveRequest(Model):
    since: Annotated[
        Timestamp | None,
        Meta(description="Only the dead letters set aside since then (default: all)"),
    ] = None


class Redriven(Model):
    event_id: Annotated[str, Meta(description="The event's new id: it is a new entry")]


class RedriveResult(Model):
    redriven: int


class PortalLink(Model):
    url: Annotated[
        str,
        Meta(description="Opens the account's portal once: hand it to the browser right away"),
    ]
    expires_at: Annotated[Timestamp, Meta(description="Unused after this, the link is refused")]


WEBHOOK_CREATE_DECODER = msgspec.json.Decoder(WebhookCreate)
WEBHOOK_UPDATE_DECODER = msgspec.json.Decoder(WebhookUpdate)
SECRET_ROTATE_DECODER = msgspec.json.Decoder(SecretRotate)
RECOVER_REQUEST_DECODER = msgspec.json.Decoder(RecoverRequest)
SYNTHETIC_EVENT_DECODER = msgspec.json.Decoder(SyntheticEventRequest)
ACCOUNT_CREATE_DECODER = msgspec.json.Decoder(AccountCreate)
ACCOUNT_UPDATE_DECODER = msgspec.json.Decoder(AccountUpdate)
EMAIL_REGISTRATION_DECODER = msgspec.json.Decoder(EmailRegistration)
TRACKING_REQUEST_DECODER = msgspec.json.Decoder(TrackingRequest)
TRACKED_HTML_REQUEST_DECODER = msgspec.json.Decoder(TrackedHtmlRequest)
SUPPRESSION_CREATE_DECODER = msgspec.json.Decoder(SuppressionCreate)
REDRIVE_REQUEST_DECODER = msgspec.json.Decoder(RedriveRequest)
ENCODER = msgspec.json.Encoder()
