"""Operational events: what the worker tells an account about its own webhooks and
deliveries (pure). They are stored like provider events (provider "mailhooks", under the
webhook's account), so they are delivered, retried and logged the same way, to the
account's webhooks subscribed to them, never to the webhook they are about.

Loops: a delivery of an operational event that exhausts its schedule announces nothing (an
endpoint failing delivery.exhausted events would otherwise feed them to another failing
one, and back). webhook.disabled is announced whatever event's delivery disabled the
webhook: a webhook is disabled once until re-enabled by hand, so that chain ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.core.event_types import DELIVERY_EXHAUSTED, WEBHOOK_DISABLED, is_operational
from service.core.ids import format_timestamp, operational_event_key
from service.core.models import (
    DeliveryExhaustedData,
    DisabledReason,
    Event,
    WebhookDisabledData,
)

PROVIDER = "mailhooks"


def announces_exhaustion(event_type: str) -> bool:
    """Whether a delivery of an event of `event_type` whose schedule is spent is announced
    (delivery.exhausted): not that of an operational event, so that failing endpoints cannot
    feed each other announcements without end."""
    return not is_operational(event_type)


def webhook_disabled(
    *,
    account: str,
    webhook_id: int,
    url: str,
    reason: DisabledReason,
    delivery_id: str,
    attempt: int,
    status_code: int | None,
    error: str | None,
    now: datetime,
) -> Event:
    at = format_timestamp(now)
    return _announcement(
        WEBHOOK_DISABLED,
        operational_event_key(WEBHOOK_DISABLED, delivery_id, attempt),
        account=account,
        about=webhook_id,
        at=at,
        webhook_disabled=WebhookDisabledData(
            webhook_id=webhook_id,
            url=url,
            reason=reason,
            disabled_at=at,
            delivery_id=delivery_id,
            last_status_code=status_code,
            last_error=error,
        ),
    )


def delivery_exhausted(
    *,
    account: str,
    webhook_id: int,
    delivery_id: str,
    event_id: str,
    event_type: str,
    attempts: int,
    status_code: int | None,
    error: str | None,
    now: datetime,
) -> Event:
    at = format_timestamp(now)
    return _announcement(
        DELIVERY_EXHAUSTED,
        operational_event_key(DELIVERY_EXHAUSTED, delivery_id, attempts),
        account=account,
        about=webhook_id,
        at=at,
        delivery_exhausted=DeliveryExhaustedData(
            delivery_id=delivery_id,
            webhook_id=webhook_id,
            event_id=event_id,
            event_type=event_type,
            attempts=attempts,
            last_status_code=status_code,
            last_error=error,
            failed_at=at,
        ),
    )


def _announcement(
    event_type: str, key: str, *, account: str, about: int, at: str, **data: Any
) -> Event:
    """An operational event of `account`, never delivered to the webhook it is `about`."""
    return Event(
        type=event_type,
        email_id="",
        occurred_at=at,
        provider=PROVIDER,
        provider_event_id=key,
        account_id=account,
        exclude_webhook=about,
        **data,
    )
