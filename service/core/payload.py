"""The body of a delivery, built from a stored event (pure)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from service.core.ids import format_timestamp
from service.core.models import (
    AnyPayload,
    DeliveryExhaustedPayload,
    Event,
    PayloadData,
    WebhookDisabledPayload,
    WebhookPayload,
)

_ENCODER = msgspec.json.Encoder()


def build_payload(event: Event, *, event_id: str, stored_at: datetime) -> AnyPayload:
    """The envelope {id, type, created_at, data}: an email event's data, or an operational
    event's (webhook.disabled, delivery.exhausted)."""
    created_at = format_timestamp(stored_at)
    if event.webhook_disabled is not None:
        return WebhookDisabledPayload(
            id=event_id, type="webhook.disabled", created_at=created_at, data=event.webhook_disabled
        )
    if event.delivery_exhausted is not None:
        return DeliveryExhaustedPayload(
            id=event_id,
            type="delivery.exhausted",
            created_at=created_at,
            data=event.delivery_exhausted,
        )
    return WebhookPayload(
        id=event_id,
        type=event.type,
        created_at=created_at,
        data=PayloadData(
            email_id=event.email_id,
            recipient=event.recipient,
            timestamp=event.occurred_at,
            provider=event.provider,
            bounce=event.bounce,
            click=event.click,
            metadata=event.metadata,
            user_agent=event.user_agent,
            mta_response=event.mta_response,
            reason=event.reason,
            machine=event.machine,
        ),
    )


def encode(payload: AnyPayload) -> bytes:
    return _ENCODER.encode(payload)
