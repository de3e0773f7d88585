"""The body of a delivery, built from a stored event (pure)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from service.core.ids import format_timestamp
from service.core.models import Event, PayloadData, WebhookPayload

_ENCODER = msgspec.json.Encoder()


def build_payload(event: Event, *, event_id: str, stored_at: datetime) -> WebhookPayload:
    return WebhookPayload(
        id=event_id,
        type=event.type,
        created_at=format_timestamp(stored_at),
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


def encode(payload: WebhookPayload) -> bytes:
    return _ENCODER.encode(payload)
