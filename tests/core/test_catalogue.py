from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import msgspec
import pytest

from service.core.catalogue import CATALOGUE, catalogue_infos, payload_schema
from service.core.event_types import EVENT_TYPES, OPERATIONAL_EVENT_TYPES, QUALIFIED_PREFIX
from service.core.models import (
    Bounce,
    DeliveryExhaustedData,
    DeliveryExhaustedPayload,
    Event,
    WebhookDisabledData,
    WebhookDisabledPayload,
    WebhookPayload,
)
from service.core.payload import build_payload, encode

STORED_AT = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


def schema_of(type_: str) -> dict[str, object]:
    [entry] = [e for e in CATALOGUE if e.type == type_]
    return payload_schema(entry)


class TestCatalogue:
    def test_lists_every_subscribable_email_type_once(self) -> None:
        types = [e.type for e in CATALOGUE]
        assert len(types) == len(set(types))
        emails = [t.removeprefix(QUALIFIED_PREFIX) for t in types if t.startswith("email.")]
        assert emails == list(EVENT_TYPES)

    def test_lists_exactly_the_subscribable_types(self) -> None:
        qualified = [QUALIFIED_PREFIX + t for t in EVENT_TYPES]
        assert [e.type for e in CATALOGUE] == [*qualified, *OPERATIONAL_EVENT_TYPES]

    def test_every_entry_is_described(self) -> None:
        for info in catalogue_infos():
            assert info.description.endswith(".")
            jsonschema.Draft202012Validator.check_schema(info.schema)

    def test_email_schemas_fix_the_type(self) -> None:
        body = encode(build_payload(Event(
            type="email.bounce", email_id="m", occurred_at="2026-03-03T10:00:00Z",
            provider="generic", bounce=Bounce(kind="hard"),
        ), event_id="evt_1-0", stored_at=STORED_AT))  # fmt: skip
        payload = msgspec.json.decode(body)
        jsonschema.validate(payload, schema_of("email.bounce"))
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(payload, schema_of("email.open"))

    def test_schemas_admit_fields_added_later(self) -> None:
        body = encode(build_payload(Event(
            type="email.open", email_id="m", occurred_at="2026-03-03T10:00:00Z",
            provider="generic",
        ), event_id="evt_1-0", stored_at=STORED_AT))  # fmt: skip
        payload = msgspec.json.decode(body)
        payload["new_field"] = 1
        payload["data"]["new_field"] = 2
        jsonschema.validate(payload, schema_of("email.open"))
        del payload["data"]["email_id"]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(payload, schema_of("email.open"))

    def test_operational_payloads_validate_against_their_schemas(self) -> None:
        disabled = WebhookDisabledPayload(
            id="evt_op_1",
            type="webhook.disabled",
            created_at="2026-03-03T10:00:00Z",
            data=WebhookDisabledData(
                webhook_id=3,
                url="https://example.com/h",
                reason="gone",
                disabled_at="2026-03-03T10:00:00Z",
                delivery_id="dlv_1-0_3",
                last_status_code=410,
                last_error=None,
            ),
        )
        exhausted = DeliveryExhaustedPayload(
            id="evt_op_2",
            type="delivery.exhausted",
            created_at="2026-03-03T10:00:00Z",
            data=DeliveryExhaustedData(
                webhook_id=3,
                delivery_id="dlv_1-0_3",
                event_id="evt_1-0",
                event_type="email.open",
                attempts=8,
                failed_at="2026-03-03T10:00:00Z",
                last_status_code=None,
                last_error="timeout",
            ),
        )
        for payload in (disabled, exhausted):
            document = msgspec.json.decode(msgspec.json.encode(payload))
            jsonschema.validate(document, schema_of(payload.type))

    def test_email_entries_use_the_delivery_struct(self) -> None:
        assert {e.payload for e in CATALOGUE if e.type.startswith("email.")} == {WebhookPayload}
