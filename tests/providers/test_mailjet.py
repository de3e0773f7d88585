from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import pytest

from service.core.errors import InvalidCredentials, InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import mailjet
from tests import FIXTURES
from tests.signers import basic_auth

SAMPLES = FIXTURES / "providers" / "mailjet"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def event(name: str, **changes: Any) -> bytes:
    payload = json.loads(sample(name))
    payload.update(changes)
    return json.dumps(payload).encode()


def normalize(body: bytes) -> list[Event | Ignored]:
    return mailjet.normalize(body, {}, received_at="2026-01-01T00:00:00Z")


def digest(*fields: object) -> str:
    """The documented derived event id, computed here independently: SHA-256 of the JSON
    array of (event, time, email_id, email, url)."""
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


DOCS = {"CustomID": "helloworld"}  # every docs sample has CustomID "helloworld", Payload ""


class TestNormalize:
    def test_sent_is_delivered(self) -> None:
        assert normalize(sample("sent.json")) == [
            Event(
                type="email.delivered",
                email_id="19421777835146490",
                occurred_at="2015-06-03T12:19:09Z",
                provider="mailjet",
                recipient="api@mailjet.com",
                provider_event_id=digest(
                    "sent", 1433333949, "19421777835146490", "api@mailjet.com", None
                ),
                metadata=DOCS,
                mta_response="sent (250 2.0.0 OK 1433333948 fa5si855896wjc.199 - gsmtp)",
            )
        ]

    def test_open(self) -> None:
        assert normalize(sample("open.json")) == [
            Event(
                type="email.open",
                email_id="19421777396190490",
                occurred_at="2015-05-31T20:18:39Z",
                provider="mailjet",
                recipient="api@mailjet.com",
                provider_event_id=digest(
                    "open", 1433103519, "19421777396190490", "api@mailjet.com", None
                ),
                metadata=DOCS,
                user_agent="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0",
            )
        ]

    def test_click(self) -> None:
        assert normalize(sample("click.json")) == [
            Event(
                type="email.click",
                email_id="19421777836302490",
                occurred_at="2015-06-03T12:30:53Z",
                provider="mailjet",
                recipient="api@mailjet.com",
                provider_event_id=digest(
                    "click",
                    1433334653,
                    "19421777836302490",
                    "api@mailjet.com",
                    "https://mailjet.com",
                ),
                click=Click(url="https://mailjet.com"),
                metadata=DOCS,
                user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_0) AppleWebKit/537.36",
            )
        ]

    def test_hard_bounce(self) -> None:
        assert normalize(sample("bounce.json")) == [
            Event(
                type="email.bounce",
                email_id="13792286917004336",
                occurred_at="2015-05-05T07:49:55Z",
                provider="mailjet",
                recipient="bounce@mailjet.com",
                provider_event_id=digest(
                    "bounce", 1430812195, "13792286917004336", "bounce@mailjet.com", None
                ),
                bounce=Bounce(kind="hard", reason="user unknown"),
                metadata=DOCS,
            )
        ]

    def test_blocked_is_rejected(self) -> None:
        assert normalize(sample("blocked.json")) == [
            Event(
                type="email.rejected",
                email_id="13792286917004336",
                occurred_at="2015-05-05T07:49:55Z",
                provider="mailjet",
                recipient="bounce@mailjet.com",
                provider_event_id=digest(
                    "blocked", 1430812195, "13792286917004336", "bounce@mailjet.com", None
                ),
                metadata=DOCS,
                reason="user unknown",
            )
        ]

    @pytest.mark.parametrize(
        ("name", "kind", "email_id", "time", "occurred_at", "email"),
        [
            (
                "spam.json",
                "email.complaint",
                "13792286917004336",
                1430812195,
                "2015-05-05T07:49:55Z",
                "bounce@mailjet.com",
            ),
            (
                "unsub.json",
                "email.unsubscribe",
                "20547674933128000",
                1433334941,
                "2015-06-03T12:35:41Z",
                "api@mailjet.com",
            ),
        ],
    )
    def test_spam_and_unsub(
        self, name: str, kind: str, email_id: str, time: int, occurred_at: str, email: str
    ) -> None:
        event_name = json.loads(sample(name))["event"]
        assert normalize(sample(name)) == [
            Event(
                type=kind,
                email_id=email_id,
                occurred_at=occurred_at,
                provider="mailjet",
                recipient=email,
                provider_event_id=digest(event_name, time, email_id, email, None),
                metadata=DOCS,
            )
        ]

    def test_a_grouped_batch_in_order(self) -> None:
        sent = [
            ("18858825588804172", 1424873938, "1424873937 fn1si2587485pab.205"),
            ("18858825588803684", 1424873938, "1424873937 av4si15414111pbd.46"),
            ("18014400413866302", 1424873939, "1424873938 j6si29391363wif.14"),
            ("18858825588804459", 1424873940, "1424873939 r6si17223863wjx.75"),
        ]
        occurred_at = [
            "2015-02-25T14:18:58Z",
            "2015-02-25T14:18:58Z",
            "2015-02-25T14:18:59Z",
            "2015-02-25T14:19:00Z",
        ]
        assert normalize(sample("grouped.json")) == [
            Event(
                type="email.delivered",
                email_id=email_id,  # no MessageID in the docs' grouped sample: mj_message_id
                occurred_at=at,
                provider="mailjet",
                recipient="api@mailjet.com",
                provider_event_id=digest("sent", time, email_id, "api@mailjet.com", None),
                metadata={"customcampaign": "test"},
                mta_response=f"sent (250 2.0.0 OK {reply} - gsmtp)",
            )
            for (email_id, time, reply), at in zip(sent, occurred_at, strict=True)
        ]

    def test_a_payload_that_is_a_json_object_is_the_metadata(self) -> None:
        [normalized] = normalize(sample("sent_payload_grouped.json"))
        assert normalized == Event(
            type="email.delivered",
            email_id="12345678901234567",
            occurred_at="2017-06-22T01:05:27Z",
            provider="mailjet",
            recipient="recipient@example.com",
            provider_event_id=digest(
                "sent", 1498093527, "12345678901234567", "recipient@example.com", None
            ),
            metadata={"meta1": "simple string", "meta2": 2, "customcampaign": "tag1"},
            mta_response="sent (250 2.0.0 OK 1498093527 a67bc12345def.22 - gsmtp)",
        )

    def test_a_greylisted_soft_bounce_is_deferred(self) -> None:
        [normalized] = normalize(sample("bounce_greylisted_grouped.json"))
        assert normalized == Event(
            type="email.deferred",
            email_id="12345678901234567",
            occurred_at="2017-06-22T01:05:27Z",
            provider="mailjet",
            recipient="protected@example.com",
            provider_event_id=digest(
                "bounce", 1498093527, "12345678901234567", "protected@example.com", None
            ),
            reason="greylisted",
        )

    @pytest.mark.parametrize(
        ("hard_bounce", "error", "kind"),
        [
            (True, "user unknown", "hard"),
            (True, "greylisted", "hard"),
            (False, "quota exceeded", "soft"),
            (None, "user unknown", "undetermined"),
        ],
    )
    def test_bounce_kind_is_hard_bounce(
        self, hard_bounce: bool | None, error: str, kind: Literal["hard", "soft", "undetermined"]
    ) -> None:
        [normalized] = normalize(event("bounce.json", hard_bounce=hard_bounce, error=error))
        assert isinstance(normalized, Event)
        assert normalized.bounce == Bounce(kind=kind, reason=error)

    @pytest.mark.parametrize(
        ("payload", "metadata"),
        [
            ("", {"CustomID": "c1"}),
            ('{"account_id": "a1"}', {"account_id": "a1", "CustomID": "c1"}),
            ('{"CustomID": "mine"}', {"CustomID": "c1"}),
            ("order-42", {"payload": "order-42", "CustomID": "c1"}),
            ("[1, 2]", {"payload": "[1, 2]", "CustomID": "c1"}),
            ('"quoted"', {"payload": '"quoted"', "CustomID": "c1"}),
            ("{not json", {"payload": "{not json", "CustomID": "c1"}),
        ],
    )
    def test_payload_metadata(self, payload: str, metadata: dict[str, Any]) -> None:
        [normalized] = normalize(event("sent.json", Payload=payload, CustomID="c1"))
        assert isinstance(normalized, Event)
        assert normalized.metadata == metadata

    def test_no_metadata_is_none(self) -> None:
        [normalized] = normalize(event("sent.json", CustomID="", Payload=None))
        assert isinstance(normalized, Event)
        assert normalized.metadata is None

    @pytest.mark.parametrize(
        ("changes", "email_id"),
        [
            ({"MessageID": "19421777835146490"}, "19421777835146490"),
            ({"MessageID": 0, "Message_GUID": "1ab23cd4-e567"}, "1ab23cd4-e567"),
            ({"MessageID": None, "Message_GUID": None}, "19421777835146490"),  # mj_message_id
        ],
    )
    def test_email_id(self, changes: dict[str, Any], email_id: str) -> None:
        [normalized] = normalize(event("sent.json", **changes))
        assert isinstance(normalized, Event)
        assert normalized.email_id == email_id

    def test_message_ids_beyond_53_bits_stay_exact(self) -> None:
        body = sample("sent.json").replace(b"19421777835146490,", b"18446744073709551615,")
        [normalized] = normalize(body)
        assert isinstance(normalized, Event)
        assert normalized.email_id == "18446744073709551615"

    def test_unknown_types_are_ignored(self) -> None:
        assert normalize(event("sent.json", event="sms_sent")) == [
            Ignored(provider="mailjet", provider_type="sms_sent")
        ]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (event("sent.json", time=None), "time"),
            (event("sent.json", time="yesterday"), "time"),
            (event("sent.json", event=""), "event"),
            (event("sent.json", MessageID=None, mj_message_id=None), "MessageID"),
            (event("sent.json", time=10**20), "time"),
            (
                json.dumps([json.loads(sample("sent.json")), {"event": "open"}]).encode(),
                "[1].time",
            ),
            (
                json.dumps(
                    [{**json.loads(sample("sent.json")), "MessageID": 0, "mj_message_id": ""}]
                ).encode(),
                "[0].MessageID",
            ),
        ],
    )
    def test_invalid_fields_are_named(self, body: bytes, field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(body)
        assert info.value.field == field

    @pytest.mark.parametrize("body", [b"", b"null", b"[1]", b'"sent"', b"{}"])
    def test_wrong_shape(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload):
            normalize(body)

    def test_an_empty_group_holds_no_event(self) -> None:
        assert normalize(b"[]") == []


class TestProvider:
    PROVIDER = mailjet.PROVIDER
    SECRET = "mailjet:hook-pass"

    def test_basic_auth(self) -> None:
        body = sample("sent.json")
        self.PROVIDER.verify(body, basic_auth("mailjet", "hook-pass"), self.SECRET, now=0)
        with pytest.raises(InvalidCredentials):
            self.PROVIDER.verify(body, basic_auth("mailjet", "hook-pas"), self.SECRET, now=0)

    def test_malformed_secret_fails_at_start_up(self) -> None:
        with pytest.raises(InvalidSignature, match="user:password"):
            self.PROVIDER.check_secret("hook-pass")

    @pytest.mark.parametrize(
        ("body", "detected"),
        [
            (sample("sent.json"), True),
            (sample("grouped.json"), True),
            (b'{"event": "open", "mj_contact_id": 1}', True),
            (b'[{"event": "open", "MessageID": 1}]', True),
            (b'{"event": "open", "Message_GUID": "g"}', True),
            (b'{"event": "open", "message-id": "<m>"}', False),  # Brevo's
            (b'[{"event": "open", "sg_message_id": "m"}]', False),  # SendGrid's
            (b'{"MessageID": "m", "RecordType": "Open"}', False),  # Postmark's
            (b'{"data": {"event": "open", "MessageID": 1}}', False),
            (b"[]", False),
            (b'{"event": "open", "MessageID": 1', False),
        ],
    )
    def test_detected_by_event_and_a_mailjet_id(self, body: bytes, detected: bool) -> None:
        assert self.PROVIDER.detects({}, body) is detected
