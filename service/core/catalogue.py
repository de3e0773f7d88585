"""The event-type catalogue (GET /api/event-types): every type an endpoint can receive, what it
means, and the JSON Schema of its deliveries' body, generated from the very Struct that
encodes them (pure).

Adding a type is one `EventType` entry below (its payload Struct in service.core.models);
tests/core/test_catalogue.py checks that they are exactly the subscribable types of
service.core.event_types.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import msgspec

from service.core.event_types import DELIVERY_EXHAUSTED, QUALIFIED_PREFIX, WEBHOOK_DISABLED
from service.core.models import (
    DeliveryExhaustedPayload,
    EventTypeInfo,
    WebhookDisabledPayload,
    WebhookPayload,
)

PayloadStruct = type[msgspec.Struct]


@dataclass(frozen=True, slots=True)
class EventType:
    type: str  # as a delivery's body names it ("email.open")
    description: str
    payload: PayloadStruct  # the Struct its deliveries are encoded from


def _email(short: str, description: str) -> EventType:
    return EventType(QUALIFIED_PREFIX + short, description, WebhookPayload)


CATALOGUE: tuple[EventType, ...] = (
    _email("open", "A recipient opened the email (tracking pixel)."),
    _email("click", "A recipient clicked a tracked link; data.click.url is the link."),
    _email(
        "bounce",
        "The email bounced; data.bounce.kind says hard, soft or undetermined, "
        "data.mta_response the receiving server's reply when known.",
    ),
    _email("unsubscribe", "A recipient unsubscribed through the opt-out link."),
    _email("delivered", "The receiving server accepted the email."),
    _email("complaint", "A recipient marked the email as spam."),
    _email(
        "deferred",
        "The receiving server refused the email for now; the provider keeps retrying "
        "(data.reason, data.mta_response).",
    ),
    _email(
        "rejected",
        "The provider refused to send the email (suppressed address, policy); data.reason "
        "says why.",
    ),
    EventType(
        WEBHOOK_DISABLED,
        "Delivery disabled one of the account's webhooks: its endpoint answered 410, or "
        "failed for DISABLE_AFTER. PATCH it with active: true to re-enable it. Never sent "
        "to the webhook it is about.",
        WebhookDisabledPayload,
    ),
    EventType(
        DELIVERY_EXHAUSTED,
        "A delivery failed its last scheduled attempt (RETRY_SCHEDULE spent). It stays "
        "retryable by hand (…/retry, …/recover). Never sent to the webhook it is about.",
        DeliveryExhaustedPayload,
    ),
)


def payload_schema(entry: EventType) -> dict[str, Any]:
    """A self-contained JSON Schema of `entry`'s deliveries: its Struct's, with `type` fixed
    to the entry's own where the Struct allows several (WebhookPayload serves every email
    type). Objects admit properties the Struct does not name: a body may gain fields (an
    additive change), and a subscriber validating with this schema must not break then."""
    schema = copy.deepcopy(msgspec.json.schema(entry.payload))
    definitions = schema["$defs"]
    for definition in definitions.values():
        definition.pop("additionalProperties", None)
    properties = definitions[entry.payload.__name__]["properties"]
    if "enum" not in properties["type"]:
        properties["type"] = {"type": "string", "const": entry.type}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def catalogue_infos(catalogue: tuple[EventType, ...] = CATALOGUE) -> list[EventTypeInfo]:
    return [
        EventTypeInfo(type=e.type, description=e.description, schema=payload_schema(e))
        for e in catalogue
    ]
