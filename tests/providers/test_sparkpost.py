from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import pytest

from service.core.errors import InvalidCredentials, InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import sparkpost
from tests import FIXTURES
from tests.signers import basic_auth

SAMPLES = FIXTURES / "providers" / "sparkpost"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def event_of(name: str, **changes: Any) -> bytes:
    """A one-event batch: the sample's first event with `changes`."""
    batch = json.loads(sample(name))
    [(event_class, event)] = batch[0]["msys"].items()
    event.update(changes)
    return json.dumps([{"msys": {event_class: event}}]).encode()


def normalize(body: bytes) -> list[Event | Ignored]:
    return sparkpost.normalize(body, {}, received_at="2026-01-01T00:00:00Z")


class TestNormalize:
    def test_bounce(self) -> None:
        reply = "550 5.1.1 <bounce@example.com>: Recipient address rejected: User unknown"
        assert normalize(sample("bounce.json")) == [
            Event(
                type="email.bounce",
                email_id="84345317650824116",
                occurred_at="2016-06-01T23:42:28Z",
                provider="sparkpost",
                recipient="bounce@example.com",
                provider_event_id="84345317653491230",
                bounce=Bounce(kind="hard", reason=reply),
                mta_response=reply,
            )
        ]

    def test_delay(self) -> None:
        reply = "454 4.4.4 [internal] no MX or A for domain"
        assert normalize(sample("delay.json")) == [
            Event(
                type="email.deferred",
                email_id="84345317650824116",
                occurred_at="2016-06-02T00:02:28Z",
                provider="sparkpost",
                recipient="recipient@nomx.example.com",
                provider_event_id="84345317653675522",
                mta_response=reply,
                reason=reply,
            )
        ]

    def test_delivery_keeps_the_recipients_case(self) -> None:
        assert normalize(sample("delivery.json")) == [
            Event(
                type="email.delivered",
                email_id="65832150921904138",
                occurred_at="2016-02-02T19:50:00Z",
                provider="sparkpost",
                recipient="Recipient@example.com",
                provider_event_id="92356927693813856",
            )
        ]

    def test_list_unsubscribe(self) -> None:
        assert normalize(sample("list_unsubscribe.json")) == [
            Event(
                type="email.unsubscribe",
                email_id="84345993965073285",
                occurred_at="2016-06-02T19:04:40Z",
                provider="sparkpost",
                recipient="recipient@example.com",
                provider_event_id="66331590532986193",
            )
        ]

    @pytest.mark.parametrize(
        ("name", "email_id", "event_id", "occurred_at", "recipient", "reason"),
        [
            (
                "generation_rejection.json",
                "102360394387646691",
                "102360394390563734",
                "2016-06-02T20:40:34Z",
                "suppressed@example.com",
                "554 5.7.1 recipient address suppressed due to customer policy",
            ),
            (
                "generation_failure.json",
                "139013368081177607",
                "139013368081587254",
                "2018-10-11T23:24:45.000Z",
                "recipient@example.com",
                "554 5.3.3 [internal] Error while rendering part html: ...",
            ),
        ],
    )
    def test_generation_rejections_and_failures(
        self,
        name: str,
        email_id: str,
        event_id: str,
        occurred_at: str,
        recipient: str,
        reason: str,
    ) -> None:
        assert normalize(sample(name)) == [
            Event(
                type="email.rejected",
                email_id=email_id,
                occurred_at=occurred_at,
                provider="sparkpost",
                recipient=recipient,
                provider_event_id=event_id,
                reason=reason,
            )
        ]

    @pytest.mark.parametrize("name", ["ping.json"])
    def test_the_ping_holds_no_event(self, name: str) -> None:
        assert normalize(sample(name)) == []
        assert normalize(b"[]") == []
        assert normalize(b'[{"msys": {}}, {"msys": {}, "cust": {"id": "1"}}]') == []

    def test_injection_is_ignored(self) -> None:
        assert normalize(sample("injection.json")) == [
            Ignored(provider="sparkpost", provider_type="injection")
        ]

    def test_the_event_samples_batch_in_order(self) -> None:
        """SparkPost's `/webhooks/events/samples`: every event type, one batch."""
        common: dict[str, Any] = {
            "email_id": "65832150921904138",
            "occurred_at": "2016-04-18T14:25:07.000Z",
            "provider": "sparkpost",
            "recipient": "recipient@example.com",
            "provider_event_id": "92356927693813856",
            "metadata": {
                "customKey": "customValue",
                "tags": ["male", "US"],
                "campaign_id": "Example Campaign Name",
            },
        }
        refused = "MAIL REFUSED - IP (17.99.99.99) is in black list"
        agent = (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_3) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/41.0.2272.118 Safari/537.36"
        )
        undetermined = Bounce(kind="undetermined", reason=refused)
        assert normalize(sample("event_samples.json")) == [
            Event(type="email.bounce", bounce=undetermined, mta_response=refused, **common),
            Event(type="email.delivered", **common),
            Ignored(provider="sparkpost", provider_type="injection"),
            Ignored(provider="sparkpost", provider_type="sms_status"),
            Event(type="email.complaint", **common),
            Event(type="email.bounce", bounce=undetermined, mta_response=refused, **common),
            Event(type="email.rejected", reason=refused, **common),  # policy_rejection
            Event(type="email.deferred", mta_response=refused, reason=refused, **common),
            Event(
                type="email.click",
                click=Click(url="http://example.com"),
                user_agent=agent,
                **common,
            ),
            Event(type="email.open", user_agent=agent, **common),
            Event(type="email.open", user_agent=agent, **common),  # initial_open
            Event(type="email.rejected", reason=refused, **common),  # generation_failure
            Event(type="email.rejected", reason=refused, **common),  # generation_rejection
            Event(type="email.unsubscribe", **common),  # list_unsubscribe
            Event(type="email.unsubscribe", **common),  # link_unsubscribe
        ]

    @pytest.mark.parametrize(
        ("bounce_class", "kind"),
        [
            ("10", "hard"),
            ("30", "hard"),
            ("90", "hard"),
            (10, "hard"),
            *((str(code), "soft") for code in (20, 21, 22, 23, 24, 40, 60, 70, 100)),
            *((str(code), "soft") for code in (50, 51, 52, 53, 54)),
            ("1", "undetermined"),
            ("25", "undetermined"),
            ("26", "undetermined"),
            ("80", "undetermined"),
            ("999", "undetermined"),
            ("ten", "undetermined"),
            (None, "undetermined"),
        ],
    )
    def test_bounce_kind_from_sparkposts_classification(
        self, bounce_class: str | int | None, kind: Literal["hard", "soft", "undetermined"]
    ) -> None:
        [event] = normalize(event_of("bounce.json", bounce_class=bounce_class))
        assert isinstance(event, Event)
        assert event.bounce is not None
        assert event.bounce.kind == kind
        [event] = normalize(event_of("bounce.json", type="out_of_band", bounce_class=bounce_class))
        assert isinstance(event, Event)
        assert (event.type, event.bounce and event.bounce.kind) == ("email.bounce", kind)

    @pytest.mark.parametrize(
        ("event_type", "canonical"),
        [
            ("amp_open", "email.open"),
            ("amp_initial_open", "email.open"),
            ("amp_click", "email.click"),
            ("link_unsubscribe", "email.unsubscribe"),
            ("spam_complaint", "email.complaint"),
            ("policy_rejection", "email.rejected"),
        ],
    )
    def test_more_types(self, event_type: str, canonical: str) -> None:
        [event] = normalize(event_of("delivery.json", type=event_type))
        assert isinstance(event, Event)
        assert event.type == canonical

    @pytest.mark.parametrize("event_type", ["injection", "sms_status", "relay_injection", "new"])
    def test_types_without_a_canonical_one_are_ignored(self, event_type: str) -> None:
        body = event_of("delivery.json", type=event_type, transmission_id=None, timestamp=None)
        assert normalize(body) == [Ignored(provider="sparkpost", provider_type=event_type)]

    def test_metadata_rcpt_meta_wins_then_tags_and_campaign(self) -> None:
        body = event_of(
            "delivery.json",
            metadata={"account_id": "from-transmission", "plan": "pro"},
            rcpt_meta={"account_id": "a1", "tags": "overwritten"},
            rcpt_tags=["vip"],
            campaign_id="spring",
        )
        [event] = normalize(body)
        assert isinstance(event, Event)
        assert event.metadata == {
            "account_id": "a1",
            "plan": "pro",
            "tags": ["vip"],
            "campaign_id": "spring",
        }

    def test_message_id_stands_in_for_a_missing_transmission_id(self) -> None:
        [event] = normalize(event_of("bounce.json", transmission_id=None))
        assert isinstance(event, Event)
        assert event.email_id == "0004e3724f57753a3561"

    def test_an_event_without_an_event_id_gets_a_derived_one(self) -> None:
        [event] = normalize(event_of("delivery.json", event_id=None))
        assert isinstance(event, Event)
        fields = [
            "delivery",
            "65832150921904138",
            None,
            "Recipient@example.com",
            "2016-02-02T19:50:00Z",
        ]
        expected = hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()
        assert event.provider_event_id == expected

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (b"[{}]", "[0].msys"),
            (b'[{"msys": []}]', "[0].msys"),
            (b'[{"msys": {"message_event": {}}}]', "[0].msys.message_event.type"),
            (b'[{"msys": {"message_event": 1}}]', "[0].msys.message_event"),
            (
                event_of("delivery.json", transmission_id=None),
                "[0].msys.message_event.transmission_id",
            ),
            (event_of("delivery.json", timestamp=None), "[0].msys.message_event.timestamp"),
            (event_of("delivery.json", timestamp="last week"), "[0].msys.message_event.timestamp"),
            (event_of("delivery.json", rcpt_meta=[1]), "[0].msys.message_event.rcpt_meta"),
        ],
    )
    def test_invalid_fields_are_named(self, body: bytes, field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(body)
        assert info.value.field == field

    def test_one_bad_event_refuses_the_batch(self) -> None:
        good = json.loads(sample("bounce.json"))
        bad = json.loads(event_of("delivery.json", timestamp=None))
        with pytest.raises(InvalidPayload) as info:
            normalize(json.dumps(good + bad).encode())
        assert info.value.field == "[1].msys.message_event.timestamp"

    @pytest.mark.parametrize("body", [b"", b"{}", b"null", b"[1]", b'{"msys": {}}'])
    def test_wrong_shape(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload):
            normalize(body)


class TestProvider:
    PROVIDER = sparkpost.PROVIDER
    SECRET = "sparkpost:hook-pass"

    def test_basic_auth(self) -> None:
        body = sample("bounce.json")
        self.PROVIDER.verify(body, basic_auth("sparkpost", "hook-pass"), self.SECRET, now=0)
        with pytest.raises(InvalidCredentials):
            self.PROVIDER.verify(body, basic_auth("sparkpost", "nope"), self.SECRET, now=0)

    def test_malformed_secret_fails_at_start_up(self) -> None:
        with pytest.raises(InvalidSignature, match="user:password"):
            self.PROVIDER.check_secret("hook-pass")

    @pytest.mark.parametrize(
        ("body", "detected"),
        [
            (sample("ping.json"), True),
            (sample("event_samples.json"), True),
            (b' [{"msys": {"track_event": {}}}]', True),
            (b"[]", False),  # SendGrid's too: send SparkPost's ping to its own URL
            (b'[{"event": "open", "msys": 1}]', True),
            (b'[{"event": "open", "note": "msys"}]', False),
            (b'[{"event": "open"}, {"msys": {}}]', False),
            (b'{"msys": {}}', False),
            (b'[{"msys": {}}', False),
        ],
    )
    def test_detected_by_a_batch_of_msys_objects(self, body: bytes, detected: bool) -> None:
        assert self.PROVIDER.detects({}, body) is detected
