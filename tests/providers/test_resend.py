from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Literal

import pytest

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import resend
from tests import FIXTURES

SAMPLES = FIXTURES / "providers" / "resend"
VECTOR = json.loads((SAMPLES / "signature_vector.json").read_text())
KEY = b"resend-test-signing-key-32-bytes"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
NOW = 1_772_532_000
RECEIVED_AT = "2026-03-03T10:00:00Z"
EMAIL_ID = "56761188-7520-42d8-8898-ff6fc54ce618"


def sign(body: bytes, *, msg_id: str = "msg_1", timestamp: int = NOW, key: bytes = KEY) -> str:
    """`v1,<base64>` computed here, independently of the code under test."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers_for(body: bytes, *, msg_id: str = "msg_1", timestamp: int = NOW) -> dict[str, str]:
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(timestamp),
        "svix-signature": sign(body, msg_id=msg_id, timestamp=timestamp),
    }


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def normalize(body: bytes) -> list[Event | Ignored]:
    return resend.normalize(body, {"svix-id": "msg_2W2D3qXLS5fOaPja1GDg7rF2CwB"}, received_at="x")


def email_data(**changes: Any) -> bytes:
    payload = json.loads(sample("bounce_hard.json"))
    payload["data"].update(changes)
    return json.dumps(payload).encode()


class TestVerify:
    BODY = sample("delivered.json")

    def test_published_vector(self) -> None:
        body = VECTOR["raw_body"].encode()
        now = int(VECTOR["headers"]["svix-timestamp"])
        resend.verify(body, VECTOR["headers"], VECTOR["secret"], now=now)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"secret": "whsec_" + base64.b64encode(b"wrong key").decode()}, "does not match"),
            ({"body": b'{"test": 2432232315}'}, "does not match"),
            ({"body": b'{"test":2432232314}'}, "does not match"),
            ({"svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJel"}, "does not match"),
            ({"now": 1614265330 + 301}, "too old"),
            ({"now": 1614265330 - 301}, "in the future"),
        ],
        ids=["wrong-key", "tampered", "reserialised", "other-id", "late", "early"],
    )
    def test_published_vector_refuses_changes(self, change: dict[str, Any], message: str) -> None:
        headers = {**VECTOR["headers"], **{k: v for k, v in change.items() if k == "svix-id"}}
        with pytest.raises(InvalidSignature, match=message):
            resend.verify(
                change.get("body", VECTOR["raw_body"].encode()),
                headers,
                change.get("secret", VECTOR["secret"]),
                now=change.get("now", 1614265330),
            )

    @pytest.mark.parametrize("offset", [-300, 0, 300])
    def test_accepts_within_tolerance(self, offset: int) -> None:
        resend.verify(self.BODY, headers_for(self.BODY, timestamp=NOW + offset), SECRET, now=NOW)

    @pytest.mark.parametrize(("offset", "message"), [(-301, "too old"), (301, "in the future")])
    def test_refuses_outside_tolerance(self, offset: int, message: str) -> None:
        headers = headers_for(self.BODY, timestamp=NOW + offset)
        with pytest.raises(InvalidSignature, match=message):
            resend.verify(self.BODY, headers, SECRET, now=NOW)

    def test_tolerance_none_skips_freshness(self) -> None:
        headers = headers_for(self.BODY, timestamp=NOW - 86_400)
        resend.verify(self.BODY, headers, SECRET, now=NOW, tolerance=None)
        resend.verify(self.BODY, headers, SECRET, now=NOW, tolerance=86_400)

    def test_secret_without_prefix_is_base64_too(self) -> None:
        resend.verify(self.BODY, headers_for(self.BODY), base64.b64encode(KEY).decode(), now=NOW)

    def test_forged_with_another_key(self) -> None:
        headers = {**headers_for(self.BODY), "svix-signature": sign(self.BODY, key=b"forger")}
        with pytest.raises(InvalidSignature, match="does not match"):
            resend.verify(self.BODY, headers, SECRET, now=NOW)

    def test_tampered_body(self) -> None:
        tampered = self.BODY.replace(b"delivered@", b"attacker@")
        with pytest.raises(InvalidSignature, match="does not match"):
            resend.verify(tampered, headers_for(self.BODY), SECRET, now=NOW)

    def test_replayed_signature_with_a_new_timestamp(self) -> None:
        headers = {**headers_for(self.BODY), "svix-timestamp": str(NOW + 1)}
        with pytest.raises(InvalidSignature, match="does not match"):
            resend.verify(self.BODY, headers, SECRET, now=NOW)

    @pytest.mark.parametrize("name", ["svix-id", "svix-timestamp", "svix-signature"])
    def test_missing_header(self, name: str) -> None:
        headers = headers_for(self.BODY)
        del headers[name]
        with pytest.raises(InvalidSignature, match=f"missing {name}"):
            resend.verify(self.BODY, headers, SECRET, now=NOW)

    @pytest.mark.parametrize(
        ("signature", "message"),
        [
            ("v1,not-base64!!", "no v1,<base64>"),
            (sign(BODY).removeprefix("v1,"), "no v1,<base64>"),
            ("v2," + sign(BODY).removeprefix("v1,"), "no v1,<base64>"),
            ("v1,", "no v1,<base64>"),
            ("v1," + base64.b64encode(b"short").decode(), "does not match"),
        ],
        ids=["not-base64", "no-prefix", "v2", "empty", "wrong-length"],
    )
    def test_malformed_signature_header(self, signature: str, message: str) -> None:
        headers = {**headers_for(self.BODY), "svix-signature": signature}
        with pytest.raises(InvalidSignature, match=message):
            resend.verify(self.BODY, headers, SECRET, now=NOW)

    @pytest.mark.parametrize("timestamp", ["", "abc", "1614265330.5", "-1614265330", "١٢٣"])
    def test_malformed_timestamp(self, timestamp: str) -> None:
        headers = {**headers_for(self.BODY), "svix-timestamp": timestamp}
        with pytest.raises(InvalidSignature, match="svix-timestamp"):
            resend.verify(self.BODY, headers, SECRET, now=NOW)

    @pytest.mark.parametrize(
        "entries",
        [
            "{bad} {good}",
            "{good} {bad}",
            "v1,not-base64!! {good}",
            "v2,AAAA {bad} {good}",
        ],
    )
    def test_any_of_several_signatures_may_match(self, entries: str) -> None:
        good = sign(self.BODY)
        bad = sign(self.BODY, key=b"old rotated key")
        headers = {**headers_for(self.BODY), "svix-signature": entries.format(good=good, bad=bad)}
        resend.verify(self.BODY, headers, SECRET, now=NOW)

    def test_only_wrong_signatures(self) -> None:
        bad = [sign(self.BODY, key=key) for key in (b"one", b"two")]
        headers = {**headers_for(self.BODY), "svix-signature": " ".join(bad)}
        with pytest.raises(InvalidSignature, match="does not match"):
            resend.verify(self.BODY, headers, SECRET, now=NOW)

    @pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!", "not base64 at all"])
    def test_unusable_secret(self, secret: str) -> None:
        with pytest.raises(InvalidSignature, match="signing secret"):
            resend.verify(self.BODY, headers_for(self.BODY), secret, now=NOW)


class TestProvider:
    PROVIDER = resend.PROVIDER

    @pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!", "not base64 at all"])
    def test_unusable_secret_fails_at_start_up(self, secret: str) -> None:
        with pytest.raises(InvalidSignature, match="signing secret"):
            self.PROVIDER.check_secret(secret)

    def test_usable_secret(self) -> None:
        self.PROVIDER.check_secret(SECRET)

    @pytest.mark.parametrize(("offset", "accepted"), [(300, True), (301, False)])
    def test_five_minute_tolerance(self, offset: int, accepted: bool) -> None:
        body = sample("delivered.json")
        headers = headers_for(body, timestamp=NOW - offset)
        if accepted:
            self.PROVIDER.verify(body, headers, SECRET, now=NOW)
        else:
            with pytest.raises(InvalidSignature, match="too old"):
                self.PROVIDER.verify(body, headers, SECRET, now=NOW)

    def test_detected_by_its_svix_id_header_alone(self) -> None:
        assert self.PROVIDER.detects({"svix-id": "msg_1"}, b"[]")
        assert not self.PROVIDER.detects({"svix-id": " "}, sample("delivered.json"))

    def test_no_replay_token(self) -> None:
        assert self.PROVIDER.replay_token(sample("delivered.json")) is None


SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.1 Safari/605.1.15"
)


def sample_event(type_: str, occurred_at: str = "2024-02-22T23:41:12.126Z", **fields: Any) -> Event:
    return Event(
        type=type_,
        email_id=EMAIL_ID,
        occurred_at=occurred_at,
        provider="resend",
        recipient="delivered@resend.dev",
        provider_event_id="msg_2W2D3qXLS5fOaPja1GDg7rF2CwB",
        metadata={"category": "confirm_email"},
        **fields,
    )


LATE = "2024-11-22T23:41:12.126Z"
SAMPLE_EVENTS = [
    ("delivered.json", sample_event("email.delivered")),
    ("open.json", sample_event("email.open")),
    ("complaint.json", sample_event("email.complaint")),
    (
        "click.json",
        sample_event("email.click", LATE, click=Click(url="https://resend.com"), user_agent=SAFARI),
    ),
    ("delivery_delayed.json", sample_event("email.deferred")),
    (
        # Resend (SES) did not send to an address on its suppression list: not a bounce.
        "bounce_hard.json",
        sample_event(
            "email.rejected",
            LATE,
            reason="The recipient's email address is on the suppression list because it has "
            "a recent history of producing hard bounces.",
        ),
    ),
    (
        "suppressed.json",
        sample_event(
            "email.rejected",
            LATE,
            reason="Resend has suppressed sending to this address because it is on the "
            "account-level suppression list. This does not count toward your bounce rate metric",
        ),
    ),
    ("failed.json", sample_event("email.rejected", LATE, reason="reached_daily_quota")),
]


class TestNormalize:
    @pytest.mark.parametrize(("name", "event"), SAMPLE_EVENTS, ids=[n for n, _ in SAMPLE_EVENTS])
    def test_email_samples(self, name: str, event: Event) -> None:
        assert normalize(sample(name)) == [event]

    def test_a_contact_update_that_is_no_unsubscribe_is_ignored(self) -> None:
        assert normalize(sample("unsubscribe_contact_updated.json")) == [
            Ignored(provider="resend", provider_type="contact.updated")
        ]

    def test_a_bounce_with_its_details(self) -> None:
        bounce = {
            "type": "Permanent",
            "subType": "General",
            "message": "The recipient's mail server permanently rejected the email.",
            "diagnosticCode": ["smtp; 550 5.1.1 user unknown", "smtp; 550 again"],
        }
        [event] = normalize(email_data(bounce=bounce))
        assert event == sample_event(
            "email.bounce",
            LATE,
            bounce=Bounce(kind="hard", reason=bounce["message"]),
            mta_response="smtp; 550 5.1.1 user unknown; smtp; 550 again",
        )

    @pytest.mark.parametrize("sub_type", ["Suppressed", "OnAccountSuppressionList"])
    def test_a_bounce_for_a_suppressed_address_is_a_rejection(self, sub_type: str) -> None:
        [event] = normalize(email_data(bounce={"type": "Permanent", "subType": sub_type}))
        assert isinstance(event, Event)
        assert (event.type, event.bounce, event.reason) == ("email.rejected", None, sub_type)

    def test_an_open_with_its_user_agent(self) -> None:
        [event] = normalize(email_data(open={"userAgent": "Mail/1.0", "ipAddress": "1.2.3.4"}))
        assert isinstance(event, Event)
        assert event.user_agent is None  # the body is a bounce: only opens and clicks have one
        payload = json.loads(sample("open.json"))
        payload["data"]["open"] = {"userAgent": "Mail/1.0", "ipAddress": "1.2.3.4"}
        [event] = normalize(json.dumps(payload).encode())
        assert isinstance(event, Event)
        assert event.user_agent == "Mail/1.0"

    def test_contact_unsubscribe_uses_the_contact_id(self) -> None:
        payload = json.loads(sample("unsubscribe_contact_updated.json"))
        payload["data"]["unsubscribed"] = True
        assert normalize(json.dumps(payload).encode()) == [
            Event(
                type="email.unsubscribe",
                email_id="e169aa45-1ecf-4183-9955-b1499d5701d3",
                occurred_at="2024-10-11T23:47:56.678Z",
                provider="resend",
                recipient="steve.wozniak@gmail.com",
                provider_event_id="msg_2W2D3qXLS5fOaPja1GDg7rF2CwB",
            )
        ]

    def test_contact_unsubscribe_without_id(self) -> None:
        body = b'{"type": "contact.updated", "created_at": "2024-10-11T23:47:56Z", '
        body += b'"data": {"unsubscribed": true}}'
        with pytest.raises(InvalidPayload) as info:
            normalize(body)
        assert info.value.field == "data.id"

    @pytest.mark.parametrize(
        ("bounce_type", "kind"),
        [
            ("Permanent", "hard"),
            ("Transient", "soft"),
            ("Temporary", "soft"),
            ("Undetermined", "undetermined"),
            ("Unheard-of", "undetermined"),
            (None, "undetermined"),
        ],
    )
    def test_bounce_kind(
        self, bounce_type: str | None, kind: Literal["hard", "soft", "undetermined"]
    ) -> None:
        [event] = normalize(email_data(bounce={"type": bounce_type, "subType": "General"}))
        assert isinstance(event, Event)
        assert event.bounce == Bounce(kind=kind, reason="General")

    def test_bounce_without_details_is_undetermined(self) -> None:
        payload = json.loads(sample("bounce_hard.json"))
        del payload["data"]["bounce"]
        [event] = normalize(json.dumps(payload).encode())
        assert isinstance(event, Event)
        assert event.bounce == Bounce(kind="undetermined")

    def test_tags_as_a_list_of_name_value_objects(self) -> None:
        tags = [{"name": "category", "value": "welcome"}, {"name": "user", "value": "42"}]
        [event] = normalize(email_data(tags=tags))
        assert isinstance(event, Event)
        assert event.metadata == {"category": "welcome", "user": "42"}

    @pytest.mark.parametrize("tags", [{}, [], None])
    def test_no_tags_is_no_metadata(self, tags: Any) -> None:
        [event] = normalize(email_data(tags=tags))
        assert isinstance(event, Event)
        assert event.metadata is None

    @pytest.mark.parametrize(
        ("to", "recipient"),
        [
            ([], None),
            ("a@example.com", "a@example.com"),
            (["Ann Example <ann@example.com>", "b@example.com"], "ann@example.com"),
            ('"Doe, Jane" <jane@example.com>', "jane@example.com"),
            ([" b@example.com "], "b@example.com"),
        ],
    )
    def test_recipient_shapes(self, to: Any, recipient: str | None) -> None:
        [event] = normalize(email_data(to=to))
        assert isinstance(event, Event)
        assert event.recipient == recipient

    def test_without_svix_id_there_is_no_event_id(self) -> None:
        [event] = resend.normalize(sample("open.json"), {}, received_at=RECEIVED_AT)
        assert isinstance(event, Event)
        assert event.provider_event_id is None

    def test_unknown_data_shape_of_ignored_types_is_not_checked(self) -> None:
        body = b'{"type": "domain.updated", "created_at": "2024-01-01T00:00:00Z", "data": [1]}'
        assert normalize(body) == [Ignored(provider="resend", provider_type="domain.updated")]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (b'{"created_at": "2024-01-01T00:00:00Z", "data": {}}', "type"),
            (b'{"type": "email.opened", "data": {"email_id": "e"}}', "created_at"),
            (b'{"type": "email.opened", "created_at": "2024-01-01T00:00:00Z"}', "data"),
            (b'{"type": "email.opened", "created_at": "2024-01-01T00:00:00Z", "data": 1}', "data"),
            (
                b'{"type": "email.opened", "created_at": "2024-01-01T00:00:00Z", "data": {}}',
                "data.email_id",
            ),
            (
                b'{"type": "email.opened", "created_at": "2024-01-01T00:00:00Z", '
                b'"data": {"email_id": "e", "to": [1]}}',
                "data.to[0]",
            ),
            (
                b'{"type": "email.opened", "created_at": "last week", "data": {"email_id": "e"}}',
                "created_at",
            ),
        ],
    )
    def test_invalid_fields_are_named(self, body: bytes, field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(body)
        assert info.value.field == field

    @pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"null", b'{"type": 1}'])
    def test_wrong_shape(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload):
            normalize(body)
