"""Operational events (pure): the stored event, the payload endpoints receive, and the rule
that keeps failing endpoints from announcing each other's failures without end."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from service.core import operational
from service.core.event_types import EVENT_TYPES, OPERATIONAL_EVENT_TYPES, QUALIFIED_PREFIX
from service.core.models import (
    OPERATIONAL_DATA,
    DeliveryExhaustedData,
    Event,
    WebhookDisabledData,
)
from service.core.payload import build_payload, encode

NOW = datetime(2026, 3, 3, 8, 15, 1, tzinfo=UTC)


def exhausted(**changes: object) -> Event:
    fields: dict[str, object] = {
        "account": "acc_acme",
        "webhook_id": 3,
        "delivery_id": "dlv_1-0_3",
        "event_id": "evt_1-0",
        "event_type": "email.bounce",
        "attempts": 8,
        "status_code": None,
        "error": "timeout",
        "now": NOW,
        **changes,
    }
    return operational.delivery_exhausted(**fields)  # type: ignore[arg-type]


class TestEvents:
    def test_delivery_exhausted_is_stored_under_the_account_about_its_webhook(self) -> None:
        event = exhausted()
        assert (event.type, event.provider, event.account_id) == (
            "delivery.exhausted",
            "mailhooks",
            "acc_acme",
        )
        assert event.exclude_webhook == 3
        assert event.email_id == ""  # about no email: indexed by none
        assert event.provider_event_id == "delivery.exhausted:dlv_1-0_3:8"

    def test_its_payload_is_the_seed_envelope_with_its_data(self) -> None:
        payload = msgspec.json.decode(
            encode(build_payload(exhausted(), event_id="evt_9-0", stored_at=NOW))
        )
        assert payload == {
            "id": "evt_9-0",
            "type": "delivery.exhausted",
            "created_at": "2026-03-03T08:15:01Z",
            "data": {
                "delivery_id": "dlv_1-0_3",
                "webhook_id": 3,
                "event_id": "evt_1-0",
                "event_type": "email.bounce",
                "attempts": 8,
                "last_status_code": None,  # present, null: the attempt got no answer
                "last_error": "timeout",
                "failed_at": "2026-03-03T08:15:01Z",
            },
        }

    def test_webhook_disabled_payload(self) -> None:
        event = operational.webhook_disabled(
            account="acc_acme",
            webhook_id=3,
            url="https://a.example/hook",
            reason="failing",
            delivery_id="dlv_1-0_3",
            attempt=4,
            status_code=500,
            error="http_status",
            now=NOW,
        )
        payload = msgspec.json.decode(encode(build_payload(event, event_id="e", stored_at=NOW)))
        assert payload["type"] == "webhook.disabled"
        assert payload["data"] == {
            "webhook_id": 3,
            "url": "https://a.example/hook",
            "reason": "failing",
            "disabled_at": "2026-03-03T08:15:01Z",
            "delivery_id": "dlv_1-0_3",
            "last_status_code": 500,
            "last_error": "http_status",
        }
        assert event.provider_event_id == "webhook.disabled:dlv_1-0_3:4"

    def test_the_catalogue_names_each_types_data(self) -> None:
        assert {
            "webhook.disabled": WebhookDisabledData,
            "delivery.exhausted": DeliveryExhaustedData,
        } == OPERATIONAL_DATA
        assert set(OPERATIONAL_DATA) == set(OPERATIONAL_EVENT_TYPES)


class TestNoLoops:
    def test_an_email_events_exhausted_delivery_is_announced(self) -> None:
        assert all(
            operational.announces_exhaustion(QUALIFIED_PREFIX + name) for name in EVENT_TYPES
        )

    def test_an_operational_events_is_not(self) -> None:
        assert not operational.announces_exhaustion("delivery.exhausted")
        assert not operational.announces_exhaustion("webhook.disabled")
