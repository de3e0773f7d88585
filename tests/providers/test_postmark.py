from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import pytest

from service.core.errors import InvalidCredentials, InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import postmark
from tests import FIXTURES
from tests.signers import basic_auth

SAMPLES = FIXTURES / "providers" / "postmark"
MESSAGE = "883953f4-6105-42a2-a16a-77a8eac79483"
AT = "2019-11-05T16:33:54.907Z"
RAW_AT = "2019-11-05T16:33:54.9070259Z"
SAMPLE_METADATA = {"a_key": "a_value", "b_key": "b_value"}


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def record(name: str, **changes: Any) -> bytes:
    payload = json.loads(sample(name))
    payload.update(changes)
    return json.dumps(payload).encode()


def normalize(body: bytes) -> list[Event | Ignored]:
    return postmark.normalize(body, {}, received_at="2026-01-01T00:00:00Z")


def digest(*fields: object) -> str:
    """The documented derived event id, computed here independently: SHA-256 of the JSON
    array of the fields."""
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class TestNormalize:
    def test_bounce(self) -> None:
        assert normalize(sample("bounce_hard.json")) == [
            Event(
                type="email.bounce",
                email_id=MESSAGE,
                occurred_at=AT,
                provider="postmark",
                recipient="john@example.com",
                provider_event_id="Bounce:42",
                bounce=Bounce(kind="hard", reason="Test bounce details"),
                metadata={**SAMPLE_METADATA, "tag": "Test"},
                mta_response="Test bounce details",
            )
        ]

    def test_spam_complaint(self) -> None:
        assert normalize(sample("spam_complaint.json")) == [
            Event(
                type="email.complaint",
                email_id=MESSAGE,
                occurred_at=AT,
                provider="postmark",
                recipient="john@example.com",
                provider_event_id="SpamComplaint:42",
                metadata={**SAMPLE_METADATA, "tag": "Test"},
            )
        ]

    def test_delivery(self) -> None:
        assert normalize(sample("delivery.json")) == [
            Event(
                type="email.delivered",
                email_id=MESSAGE,
                occurred_at=AT,
                provider="postmark",
                recipient="john@example.com",
                provider_event_id=digest(
                    "Delivery", MESSAGE, "john@example.com", RAW_AT, None, None
                ),
                metadata={**SAMPLE_METADATA, "tag": "welcome-email"},
                mta_response="Test delivery webhook details",
            )
        ]

    def test_delivery_with_an_offset_and_seven_digit_fraction(self) -> None:
        raw_at = "2014-08-01T13:28:10.2735393-04:00"
        assert normalize(sample("delivery_offset.json")) == [
            Event(
                type="email.delivered",
                email_id=MESSAGE,
                occurred_at="2014-08-01T17:28:10.273Z",
                provider="postmark",
                recipient="recipient@example.com",
                provider_event_id=digest(
                    "Delivery", MESSAGE, "recipient@example.com", raw_at, None, None
                ),
                metadata={"cohort": "2014-08-A", "userid": "12345", "tag": "welcome-email"},
                mta_response="Test delivery webhook details",
            )
        ]

    def test_open(self) -> None:
        assert normalize(sample("open.json")) == [
            Event(
                type="email.open",
                email_id=MESSAGE,
                occurred_at=AT,
                provider="postmark",
                recipient="john@example.com",
                provider_event_id=digest("Open", MESSAGE, "john@example.com", RAW_AT, None, None),
                metadata={**SAMPLE_METADATA, "tag": "welcome-email"},
                user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5) AppleWebKit/537.36 "
                "(KHTML, like Gecko) Chrome/35.0.1916.153 Safari/537.36",
            )
        ]

    def test_click(self) -> None:
        message = "f4830d10-9c35-4f0c-bca3-3d9b459821f8"
        link = "https://example.com/click/me"
        assert normalize(sample("click.json")) == [
            Event(
                type="email.click",
                email_id=message,
                occurred_at="2017-10-25T15:21:11.906Z",
                provider="postmark",
                recipient="recipient@example.com",
                provider_event_id=digest(
                    "Click",
                    message,
                    "recipient@example.com",
                    "2017-10-25T15:21:11.9065619Z",
                    link,
                    None,
                ),
                click=Click(url=link),
                metadata={"tag": "welcome-email"},
                user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5) etc.",
            )
        ]

    def test_a_recipient_unsubscribe(self) -> None:
        message = "a4909a96-73d7-4c49-b148-a54522d3f7ac"
        changed_at = "2022-06-05T17:17:32Z"
        assert normalize(sample("subscription_change_unsubscribe.json")) == [
            Event(
                type="email.unsubscribe",
                email_id=message,
                occurred_at=changed_at,
                provider="postmark",
                recipient="john@example.com",
                provider_event_id=digest(
                    "SubscriptionChange", message, "john@example.com", changed_at, None, True
                ),
                metadata={"example": "value", "example_2": "value", "tag": "welcome-email"},
            )
        ]

    @pytest.mark.parametrize(
        ("name", "changes", "provider_type"),
        [
            ("subscription_change.json", {}, "SubscriptionChange:HardBounce"),
            (
                "subscription_change.json",
                {"SuppressionReason": "SpamComplaint"},
                "SubscriptionChange:SpamComplaint",
            ),
            ("subscription_change_reactivated.json", {}, "SubscriptionChange:Reactivated"),
            (
                "subscription_change_unsubscribe.json",
                {"MessageID": None, "Origin": "Customer"},
                "SubscriptionChange:ManualSuppression",
            ),
            ("delivery.json", {"RecordType": "Inbound"}, "Inbound"),
            ("delivery.json", {"RecordType": "SomethingNew"}, "SomethingNew"),
        ],
        ids=["hard-bounce", "spam-complaint", "reactivated", "no-message", "inbound", "new"],
    )
    def test_records_without_a_canonical_type_are_ignored(
        self, name: str, changes: dict[str, Any], provider_type: str
    ) -> None:
        assert normalize(record(name, **changes)) == [
            Ignored(provider="postmark", provider_type=provider_type)
        ]

    @pytest.mark.parametrize(
        ("bounce_type", "kind"),
        [
            ("HardBounce", "hard"),
            ("BadEmailAddress", "hard"),
            ("SoftBounce", "soft"),
            ("Transient", "soft"),
            ("DnsError", "soft"),
            ("ChallengeVerification", "soft"),
            ("Unknown", "undetermined"),
            ("AutoResponder", "undetermined"),
            ("Blocked", "undetermined"),
            ("SpamNotification", "undetermined"),
            ("ManuallyDeactivated", "undetermined"),
            ("DMARCPolicy", "undetermined"),
            ("SomethingNew", "undetermined"),
            (None, "undetermined"),
        ],
    )
    def test_bounce_kind_from_postmarks_bounce_types(
        self, bounce_type: str | None, kind: Literal["hard", "soft", "undetermined"]
    ) -> None:
        [event] = normalize(record("bounce_hard.json", Type=bounce_type))
        assert isinstance(event, Event)
        assert event.bounce == Bounce(kind=kind, reason="Test bounce details")

    def test_bounce_reason_falls_back_to_the_description_and_type(self) -> None:
        [event] = normalize(record("bounce_hard.json", Details=""))
        assert isinstance(event, Event)
        assert event.bounce is not None
        assert event.bounce.reason is not None
        assert event.bounce.reason.startswith("The server was unable to deliver")
        [event] = normalize(record("bounce_hard.json", Details=None, Description=None))
        assert isinstance(event, Event)
        assert event.bounce == Bounce(kind="hard", reason="HardBounce")

    def test_the_tag_wins_a_name_clash_and_no_metadata_is_none(self) -> None:
        [event] = normalize(record("delivery.json", Metadata={"tag": "mine", "account_id": "a1"}))
        assert isinstance(event, Event)
        assert event.metadata == {"tag": "welcome-email", "account_id": "a1"}
        [event] = normalize(record("delivery.json", Metadata=None, Tag=""))
        assert isinstance(event, Event)
        assert event.metadata is None

    def test_a_bounce_without_an_id_gets_a_derived_one(self) -> None:
        body = json.loads(sample("bounce_hard.json"))
        del body["ID"]
        [event] = normalize(json.dumps(body).encode())
        assert isinstance(event, Event)
        assert event.provider_event_id == digest(
            "Bounce", MESSAGE, "john@example.com", RAW_AT, None, None
        )

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (b'{"MessageID": "m"}', "RecordType"),
            (b'{"RecordType": ""}', "RecordType"),
            (record("delivery.json", MessageID=None), "MessageID"),
            (record("delivery.json", MessageID="  "), "MessageID"),
            (record("delivery.json", DeliveredAt=None), "DeliveredAt"),
            (record("bounce_hard.json", BouncedAt=None), "BouncedAt"),
            (record("open.json", ReceivedAt="yesterday"), "ReceivedAt"),
            (record("subscription_change_unsubscribe.json", ChangedAt=None), "ChangedAt"),
            (record("delivery.json", Metadata=["a"]), "Metadata"),
            (record("subscription_change.json", SuppressSending="yes"), "SuppressSending"),
        ],
    )
    def test_invalid_fields_are_named(self, body: bytes, field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(body)
        assert info.value.field == field

    @pytest.mark.parametrize("body", [b"", b"[]", b"null", b"not json", b'{"RecordType": 1}'])
    def test_wrong_shape(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload):
            normalize(body)


class TestProvider:
    PROVIDER = postmark.PROVIDER
    SECRET = "postmark:hook-pass"

    def test_basic_auth(self) -> None:
        body = sample("delivery.json")
        self.PROVIDER.verify(body, basic_auth("postmark", "hook-pass"), self.SECRET, now=0)
        for headers in (basic_auth("postmark", "wrong"), {}, {"authorization": "Basic !!"}):
            with pytest.raises(InvalidCredentials):
                self.PROVIDER.verify(body, headers, self.SECRET, now=0)

    @pytest.mark.parametrize("secret", ["no-colon", ":password"])
    def test_malformed_secret_fails_at_start_up(self, secret: str) -> None:
        with pytest.raises(InvalidSignature, match="user:password"):
            self.PROVIDER.check_secret(secret)
        self.PROVIDER.check_secret(self.SECRET)

    @pytest.mark.parametrize(
        ("body", "detected"),
        [
            (sample("bounce_hard.json"), True),
            (b' {"RecordType": "Delivery"}', True),
            (b'{"RecordType": "Inbound", "FromFull": {}}', True),
            (b'{"Metadata": {"RecordType": "Delivery"}}', False),
            (b'{"note": "\\"RecordType\\""}', False),
            (b'[{"RecordType": "Delivery"}]', False),
            (b'{"RecordType": "Delivery"', False),
            (b"", False),
        ],
    )
    def test_detected_by_a_top_level_record_type(self, body: bytes, detected: bool) -> None:
        assert self.PROVIDER.detects({}, body) is detected

    def test_no_replay_token(self) -> None:
        assert self.PROVIDER.replay_token(sample("delivery.json")) is None
