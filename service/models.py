"""The API's request and response bodies. The same Structs validate requests, encode
responses and generate the OpenAPI schemas, so the three cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from service.urls import MAX_URL_LENGTH


class Model(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Shared base: unknown request fields are a 422 that names them (a typo such as
    `secert` must not silently create a webhook without the secret the user meant)."""


Url = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="The HTTPS endpoint URL to receive webhook deliveries",
        examples=["https://yourapp.com/hooks/email-events"],
    ),
]
EventTypes = Annotated[
    str,
    Meta(
        description=(
            "Comma-separated event types: open, click, bounce, unsubscribe, delivered, "
            "complaint (email.open style accepted), or * for all"
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
Timestamp = Annotated[
    str, Meta(description="ISO 8601 UTC timestamp", examples=["2026-03-03T10:00:00Z"])
]


class WebhookCreate(Model):
    url: Url
    events: EventTypes
    secret: Secret | None = None
    active: bool = True


class WebhookUpdate(Model):
    url: Url | UnsetType = UNSET
    events: EventTypes | UnsetType = UNSET
    secret: Secret | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class Webhook(Model):
    id: int
    url: str
    events: str
    active: bool
    created_at: Timestamp
    # Present only in the create response, and only when the server generated the secret.
    secret: str | UnsetType = UNSET


class WebhookList(Model):
    webhooks: list[Webhook]


class ErrorDetail(Model):
    code: str
    message: str
    field: str | UnsetType = UNSET


class ErrorBody(Model):
    error: ErrorDetail


class Bounce(Model):
    kind: Literal["hard", "soft"]
    reason: str | None = None


class Click(Model):
    url: str


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
    id: str | UnsetType = UNSET


class EventList(Model):
    events: list[Event]


class Received(Model):
    received: bool


class GenericInboundEvent(Model):
    """The generic inbound format (the API page's example). Resend, SendGrid and Mailgun post
    their own native formats to the same URL; see docs/inbound.md."""

    type: Annotated[str, Meta(examples=["email.bounced"])]
    email_id: Annotated[str, Meta(examples=["msg_abc123def456"])]
    recipient: str | None = None
    timestamp: Timestamp | None = None
    bounce: Bounce | None = None
    click: Click | None = None
    metadata: dict[str, Any] | None = None


class Health(Model):
    status: str


WEBHOOK_CREATE_DECODER = msgspec.json.Decoder(WebhookCreate)
WEBHOOK_UPDATE_DECODER = msgspec.json.Decoder(WebhookUpdate)
ENCODER = msgspec.json.Encoder()
