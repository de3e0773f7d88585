from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Literal

import pytest

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import mailgun
from tests import FIXTURES

SAMPLES = FIXTURES / "providers" / "mailgun"
VECTOR = json.loads((SAMPLES / "signature_vector.json").read_text())
KEY = VECTOR["webhook_signing_key"]
TOKEN = VECTOR["token"]
VECTOR_TIME = int(VECTOR["timestamp"])
VECTOR_SIGNATURE = {
    "timestamp": VECTOR["timestamp"],
    "token": TOKEN,
    "signature": VECTOR["expected_signature_hex"],
}
NOW = 1_772_532_000
MESSAGE_ID_FIELD = "event-data.message.headers.message-id"


def event_data(name: str = "delivered", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.event-data.json").read_bytes())
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def request(data: dict[str, Any] | None = None, signature: Any = VECTOR_SIGNATURE) -> bytes:
    """The full request: the docs' samples show only `event-data`."""
    return json.dumps({"signature": signature, "event-data": data or event_data()}).encode()


def sign(timestamp: int | str, token: str = TOKEN, key: str = KEY) -> dict[str, Any]:
    """A signature block computed here, independently of the code under test."""
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


def normalize(raw: bytes) -> list[Event | Ignored]:
    return mailgun.normalize(raw, {}, received_at="2026-03-03T10:00:00Z")


class TestVerify:
    def test_vector(self) -> None:
        mailgun.verify(request(), {}, KEY, now=VECTOR_TIME)

    def test_vector_is_stale_today(self) -> None:
        with pytest.raises(InvalidSignature, match="too old"):
            mailgun.verify(request(), {}, KEY, now=NOW)
        mailgun.verify(request(), {}, KEY, now=NOW, tolerance=None)

    @pytest.mark.parametrize(
        ("signature", "key", "message"),
        [
            (VECTOR_SIGNATURE, "WRONG_KEY", "does not match"),
            ({**VECTOR_SIGNATURE, "token": TOKEN[:-1] + "0"}, KEY, "does not match"),
            ({**VECTOR_SIGNATURE, "timestamp": str(VECTOR_TIME + 1)}, KEY, "does not match"),
            (
                {**VECTOR_SIGNATURE, "signature": VECTOR["expected_signature_hex"][:-1] + "d"},
                KEY,
                "does not match",
            ),
            ({**VECTOR_SIGNATURE, "signature": "not hex"}, KEY, "not a hex"),
        ],
        ids=["wrong-key", "other-token", "other-timestamp", "forged", "malformed"],
    )
    def test_vector_refuses_changes(self, signature: Any, key: str, message: str) -> None:
        with pytest.raises(InvalidSignature, match=message):
            mailgun.verify(request(signature=signature), {}, key, now=VECTOR_TIME)

    def test_uppercase_hex_and_integer_timestamp(self) -> None:
        block = sign(NOW)
        block["signature"] = block["signature"].upper()
        mailgun.verify(request(signature=block), {}, KEY, now=NOW)

    @pytest.mark.parametrize(("offset", "message"), [(-301, "too old"), (301, "in the future")])
    def test_outside_tolerance(self, offset: int, message: str) -> None:
        raw = request(signature=sign(str(NOW + offset)))
        with pytest.raises(InvalidSignature, match=message):
            mailgun.verify(raw, {}, KEY, now=NOW)

    def test_event_data_is_not_covered(self) -> None:
        # Mailgun signs only timestamp + token, which is why the caller must refuse reused tokens.
        mailgun.verify(request(event_data("failed_permanent")), {}, KEY, now=VECTOR_TIME)

    def test_published_signature_block_needs_its_own_key(self) -> None:
        block = json.loads((SAMPLES / "signature_block.json").read_bytes())
        with pytest.raises(InvalidSignature, match="does not match"):
            mailgun.verify(request(signature=block), {}, KEY, now=1770920772)

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"event-data": {}}',
            b'{"signature": null, "event-data": {}}',
            b'{"signature": "abc"}',
            b'{"signature": {"timestamp": "1", "token": "t"}}',
            b'{"signature": {"timestamp": "1", "token": "", "signature": "ab"}}',
            b'{"signature": {"timestamp": 1.5, "token": "t", "signature": "ab"}}',
        ],
        ids=["absent", "null", "string", "no-signature", "empty-token", "float-timestamp"],
    )
    def test_missing_or_malformed_signature_block(self, raw: bytes) -> None:
        with pytest.raises(InvalidSignature, match="signature block"):
            mailgun.verify(raw, {}, KEY, now=NOW)

    @pytest.mark.parametrize("timestamp", ["", "soon", "-1", "1534108637.5"])
    def test_malformed_timestamp(self, timestamp: str) -> None:
        with pytest.raises(InvalidSignature, match=r"signature\.timestamp"):
            mailgun.verify(request(signature=sign(timestamp)), {}, KEY, now=NOW)

    @pytest.mark.parametrize("raw", [b"[]", b'"signature"', b"[{}]"])
    def test_json_that_is_not_an_object(self, raw: bytes) -> None:
        with pytest.raises(InvalidPayload):
            mailgun.verify(raw, {}, KEY, now=NOW)

    @pytest.mark.parametrize(
        ("raw", "field"),
        [(b"", "timestamp"), (b"token=abc&signature=def", "timestamp"), (b"timestamp=1", "token")],
    )
    def test_a_form_without_its_signature_fields(self, raw: bytes, field: str) -> None:
        with pytest.raises(InvalidSignature, match=f"no {field} field"):
            mailgun.verify(raw, {}, KEY, now=NOW)


class TestSignatureToken:
    def test_returns_the_token(self) -> None:
        assert mailgun.signature_token(request()) == TOKEN

    def test_published_block(self) -> None:
        block = json.loads((SAMPLES / "signature_block.json").read_bytes())
        token = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
        assert mailgun.signature_token(request(signature=block)) == token

    def test_missing_block(self) -> None:
        with pytest.raises(InvalidSignature):
            mailgun.signature_token(b'{"event-data": {}}')


class TestProvider:
    PROVIDER = mailgun.PROVIDER

    @pytest.mark.parametrize("age", [8 * 3600, 12 * 3600, -12 * 3600])
    def test_tolerates_mailgun_retries(self, age: int) -> None:
        # Mailgun retries for about 8 hours with the original signature block.
        self.PROVIDER.verify(request(signature=sign(NOW - age)), {}, KEY, now=NOW)

    @pytest.mark.parametrize(("age", "message"), [(12 * 3600 + 1, "too old"), (-43201, "future")])
    def test_refuses_past_twelve_hours(self, age: int, message: str) -> None:
        with pytest.raises(InvalidSignature, match=message):
            self.PROVIDER.verify(request(signature=sign(NOW - age)), {}, KEY, now=NOW)

    def test_the_replay_token_is_the_signature_token(self) -> None:
        assert self.PROVIDER.replay_token(request()) == TOKEN
        assert self.PROVIDER.replay_token_field == "signature.token"

    def test_any_signing_key_is_accepted_at_start_up(self) -> None:
        self.PROVIDER.check_secret("anything")

    @pytest.mark.parametrize(
        ("body", "detected"),
        [
            (request(), True),
            (b' {"event-data": {}, "signature": {}}', True),
            (b'{"event-data": {}}', False),
            (b'[{"signature": {}, "event-data": {}}]', False),
            (b'{"signature": {}, "event-data": {}', False),
        ],
    )
    def test_detects(self, body: bytes, detected: bool) -> None:
        assert self.PROVIDER.detects({}, body) is detected


CLICK_AGENT = (
    "Mozilla/5.0 (Linux; Android 9; itel A27) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/133.0.6943.143 Mobile Safari/537.36"
)
OPEN_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/144.0.0.0 Safari/537.36"
)
OUTLOOK_550 = (
    "5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
    "[BN3PEPF0000B36D.namprd21.prod.outlook.com 2026-02-12T17:42:55.527Z 08DE657A58651558]"
)
TEMPORARY_421 = (
    "Your IP (161.38.194.10) is temporary blacklisted by an anti-troyan rule, "
    "retry later and/or visit http://sample.mailgun.com/"
)


def sample_event(data_id: str, **fields: Any) -> Event:
    fields.setdefault("recipient", "recipient@sample.mailgun.com")
    fields.setdefault("metadata", {"tags": ["webhook_payload"]})
    return Event(provider="mailgun", provider_event_id=f"{data_id}:{TOKEN}", **fields)


SAMPLE_EVENTS = [
    (
        "delivered",
        sample_event(
            "MXcc2gEpS-eN8HfkOnmK2w",
            type="email.delivered",
            email_id="20260203192030.53383e583ab41f62@sample.mailgun.com",
            occurred_at="2026-02-03T19:20:31.658Z",
            mta_response="OK",
        ),
    ),
    (
        "opened",
        sample_event(
            "q7DMpbLFRKW1QuiLC9XV4Q",
            type="email.open",
            email_id="20260205213049.8e3a7bf607f78309@sample.mailgun.com",
            occurred_at="2026-02-05T21:31:14.554Z",
            user_agent=OPEN_AGENT,
        ),
    ),
    (
        "clicked",
        sample_event(
            "A9dLUrCXQjK92TlnW3zkIA",
            type="email.click",
            email_id="20260205213049.8e3a7bf607f78309@sample.mailgun.com",
            occurred_at="2026-02-05T21:31:58.664Z",
            click=Click(url="https://sample.mailgun.com"),
            user_agent=CLICK_AGENT,
        ),
    ),
    (
        "complained",
        sample_event(
            "rIVDlyk8SY-mJauQoYmNFA",
            type="email.complaint",
            email_id="20260212182531.0d5ed3254c319957@sample.mailgun.com",
            occurred_at="2026-02-12T18:26:12.268Z",
        ),
    ),
    (
        "failed_permanent",
        sample_event(
            "2kFItcrLQuKTdp-Ia2Xr7w",
            type="email.bounce",
            email_id="20260212174255.58bbb7ce85a423e5@mailgun.com",
            occurred_at="2026-02-12T17:42:55.592Z",
            recipient="badrecipient@sample.mailgun.com",
            bounce=Bounce(kind="hard", reason=OUTLOOK_550),
            mta_response=OUTLOOK_550,
        ),
    ),
    (
        "failed_temporary",
        sample_event(
            "YusK9KhoTwe2C00iRxsEqQ",
            type="email.deferred",
            email_id="20260212180106.5c8f35804ae3fd54@sample.mailgun.com",
            occurred_at="2026-02-12T18:01:07.428Z",
            recipient="tempfailrecipient@sample.mailgun.com",
            mta_response=TEMPORARY_421,
            reason=TEMPORARY_421,
        ),
    ),
    (
        "unsubscribed",
        # Its `tags: ["*"]` and `storage: []` are as published.
        sample_event(
            "89QcW8YuSv6lhSeN3n4qnA",
            type="email.unsubscribe",
            email_id="20260205213049.8e3a7bf607f78309@sample.mailgun.com",
            occurred_at="2026-02-05T21:31:30.465Z",
            metadata={"tags": ["*"]},
        ),
    ),
]


class TestNormalize:
    @pytest.mark.parametrize(("name", "event"), SAMPLE_EVENTS, ids=[n for n, _ in SAMPLE_EVENTS])
    def test_samples(self, name: str, event: Event) -> None:
        assert normalize(request(event_data(name))) == [event]

    @pytest.mark.parametrize("kind", ["accepted", "stored", "list_member_uploaded"])
    def test_other_events_are_ignored(self, kind: str) -> None:
        assert normalize(request(event_data(event=kind))) == [
            Ignored(provider="mailgun", provider_type=kind)
        ]

    @pytest.mark.parametrize(
        ("severity", "reason", "bounce_type", "kind"),
        [
            ("permanent", "bounce", None, "hard"),
            ("permanent", "generic", None, "hard"),
            ("permanent", "old", None, "soft"),
            ("permanent", "bounce", "soft", "soft"),
            (None, "bounce", "hard", "hard"),
            (None, "bounce", None, "undetermined"),
            ("unheard-of", None, None, "undetermined"),
        ],
    )
    def test_bounce_kind(
        self,
        severity: str | None,
        reason: str | None,
        bounce_type: str | None,
        kind: Literal["hard", "soft", "undetermined"],
    ) -> None:
        status = {"message": "550 gone", "bounce-type": bounce_type}
        changes = {"severity": severity, "reason": reason, "delivery-status": status}
        [event] = normalize(request(event_data("failed_permanent", **changes)))
        assert isinstance(event, Event)
        assert (event.type, event.bounce) == ("email.bounce", Bounce(kind=kind, reason="550 gone"))

    @pytest.mark.parametrize("bounce_type", [None, "hard"])
    def test_a_temporary_failure_is_a_deferral(self, bounce_type: str | None) -> None:
        status = {"message": "421 later", "description": "Greylisted", "bounce-type": bounce_type}
        changes = {"severity": "temporary", "reason": "greylisted", "delivery-status": status}
        [event] = normalize(request(event_data("failed_permanent", **changes)))
        assert isinstance(event, Event)
        assert (event.type, event.bounce) == ("email.deferred", None)
        assert (event.mta_response, event.reason) == ("421 later", "Greylisted")

    @pytest.mark.parametrize(
        "reason", ["suppress-bounce", "suppress-unsubscribe", "suppress-complaint"]
    )
    def test_a_suppressed_address_is_a_rejection(self, reason: str) -> None:
        status = {"message": "Not delivering to previously bounced address", "code": 605}
        changes = {"severity": "permanent", "reason": reason, "delivery-status": status}
        [event] = normalize(request(event_data("failed_permanent", **changes)))
        assert isinstance(event, Event)
        assert (event.type, event.bounce, event.mta_response) == ("email.rejected", None, None)
        assert event.reason == "Not delivering to previously bounced address"

    def test_a_rejected_event(self) -> None:
        # anymail's sample: Mailgun refusing the send itself names no recipient but in To.
        data = {
            "event": "rejected",
            "timestamp": 1529704976.104692,
            "log-level": "warn",
            "reject": {
                "reason": "Sandbox subdomains are for test purposes only.",
                "description": "",
            },
            "message": {
                "headers": {
                    "to": "Recipient Name <recipient@example.org>",
                    "message-id": "20180622220256.1.B31A451A2E5422BB@sandbox55887.mailgun.org",
                    "from": "test@sandbox55887.mailgun.org",
                    "subject": "Test Subject",
                }
            },
        }
        assert normalize(request(data)) == [
            Event(
                type="email.rejected",
                email_id="20180622220256.1.B31A451A2E5422BB@sandbox55887.mailgun.org",
                occurred_at="2018-06-22T22:02:56.104Z",
                provider="mailgun",
                recipient="recipient@example.org",
                provider_event_id=TOKEN,
                reason="Sandbox subdomains are for test purposes only.",
            )
        ]

    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            ({"description": "Previously bounced", "message": "550 gone"}, "Previously bounced"),
            ({"description": None, "message": "550 gone"}, "550 gone"),
            ({"description": None, "message": ""}, "bounce"),
            (None, "bounce"),
        ],
    )
    def test_bounce_reason_sources(self, status: Any, reason: str) -> None:
        data = event_data("failed_permanent", reason="bounce")
        data["delivery-status"] = status
        [event] = normalize(request(data))
        assert isinstance(event, Event)
        assert event.bounce == Bounce(kind="hard", reason=reason)

    @pytest.mark.parametrize(
        ("message_id", "email_id"),
        [("<abc@mg.example.com>", "abc@mg.example.com"), (" abc@mg ", "abc@mg")],
    )
    def test_message_id_without_brackets(self, message_id: str, email_id: str) -> None:
        data = event_data(message={"headers": {"message-id": message_id}})
        [event] = normalize(request(data))
        assert isinstance(event, Event)
        assert event.email_id == email_id

    def test_user_variables_and_tags_are_metadata(self) -> None:
        data = event_data(tags=["welcome"])
        data["user-variables"] = {"order": "o-17", "n": 2}
        [event] = normalize(request(data))
        assert isinstance(event, Event)
        assert event.metadata == {"order": "o-17", "n": 2, "tags": ["welcome"]}

    def test_no_user_variables_nor_tags_is_no_metadata(self) -> None:
        [event] = normalize(request(event_data(tags=[])))
        assert isinstance(event, Event)
        assert event.metadata is None

    def test_event_without_id_uses_the_token(self) -> None:
        data = event_data()
        del data["id"]
        [event] = normalize(request(data))
        assert isinstance(event, Event)
        assert event.provider_event_id == TOKEN

    @pytest.mark.parametrize(
        ("raw", "field"),
        [
            (request(event_data(message={})), MESSAGE_ID_FIELD),
            (request(event_data(message={"headers": {}})), MESSAGE_ID_FIELD),
            (request(event_data(message={"headers": {"message-id": "<>"}})), MESSAGE_ID_FIELD),
            (request(event_data(timestamp="yesterday")), "event-data.timestamp"),
            (request(event_data(timestamp=1e300)), "event-data.timestamp"),
            (request(event_data(event="")), "event-data.event"),
            (request(event_data(url=7)), "event-data.url"),
            (request({"id": "x"}), "event-data.event"),
            (b'{"signature": ' + json.dumps(VECTOR_SIGNATURE).encode() + b"}", "event-data"),
            (b'{"event-data": {"event": "opened", "timestamp": 1}}', "signature"),
        ],
    )
    def test_invalid_fields_are_named(self, raw: bytes, field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(raw)
        assert info.value.field == field

    @pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null"])
    def test_wrong_shape(self, raw: bytes) -> None:
        with pytest.raises(InvalidPayload):
            normalize(raw)
