"""Mailgun's legacy (form-encoded) webhooks, on the same provider as its JSON ones."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import mailgun
from tests import FIXTURES
from tests.signers import MAILGUN_KEY, mailgun_legacy_fields, multipart, urlencoded

SAMPLES = FIXTURES / "providers" / "mailgun" / "legacy"
NOW = 1_772_532_000
WHEN = "2026-03-03T10:00:00Z"
TOKEN = "06c96bafc3f42a66b9edd546347a2fe18dc23461fe80dc52f0"
# anymail's samples leave out fields their test does not need, Message-Id among them.
ADDED_ID = "20160421180324.1.ADDED@example.com"

Pairs = list[tuple[str, str]]
Encode = Callable[[Pairs], tuple[bytes, dict[str, str]]]
ENCODINGS = pytest.mark.parametrize(
    "encode", [urlencoded, multipart], ids=["urlencoded", "multipart"]
)


def fields(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    if "Message-Id" not in loaded and "message-id" not in loaded:
        loaded = {"Message-Id": f"<{ADDED_ID}>", **loaded}
    return loaded


def signed(name: str, token: str = TOKEN, timestamp: float = NOW) -> Pairs:
    return mailgun_legacy_fields(fields(name), timestamp, token=token)


def event_id(pairs: Pairs, token: str = TOKEN) -> str:
    """The documented recipe: a digest of the fields but the signature's, then the token."""
    unsigned = [(k, v) for k, v in pairs if k not in ("signature", "timestamp", "token")]
    return hashlib.sha256(urllib.parse.urlencode(unsigned).encode()).hexdigest()[:16] + ":" + token


def normalize(body: bytes) -> list[Event | Ignored]:
    return mailgun.normalize(body, {}, received_at="2026-01-01T00:00:00Z")


class TestVerify:
    @ENCODINGS
    def test_signed_like_the_json_webhooks(self, encode: Encode) -> None:
        body, headers = encode(signed("delivered"))
        mailgun.verify(body, headers, MAILGUN_KEY, now=NOW)

    @ENCODINGS
    def test_wrong_key(self, encode: Encode) -> None:
        body, headers = encode(signed("delivered"))
        with pytest.raises(InvalidSignature, match="does not match"):
            mailgun.verify(body, headers, "another-key", now=NOW)

    @pytest.mark.parametrize(("age", "message"), [(301, "too old"), (-301, "in the future")])
    def test_outside_tolerance(self, age: int, message: str) -> None:
        body, headers = urlencoded(signed("delivered", timestamp=NOW - age))
        with pytest.raises(InvalidSignature, match=message):
            mailgun.verify(body, headers, MAILGUN_KEY, now=NOW)

    def test_the_body_is_not_covered(self) -> None:
        pairs = signed("delivered")
        forged = [(k, "attacker@example.com" if k == "recipient" else v) for k, v in pairs]
        mailgun.verify(urlencoded(forged)[0], {}, MAILGUN_KEY, now=NOW)

    def test_mailguns_values_are_the_last_ones(self) -> None:
        # A custom variable named `token` comes first; checking it would fail the signature.
        pairs = signed("metadata_key_conflicts")
        assert [v for k, v in pairs if k == "token"] == ["metadata-token", TOKEN]
        mailgun.verify(urlencoded(pairs)[0], {}, MAILGUN_KEY, now=NOW)

    @pytest.mark.parametrize("missing", ["timestamp", "token", "signature"])
    def test_a_missing_signature_field(self, missing: str) -> None:
        pairs = [(k, v) for k, v in signed("delivered") if k != missing]
        with pytest.raises(InvalidSignature, match=f"no {missing} field"):
            mailgun.verify(urlencoded(pairs)[0], {}, MAILGUN_KEY, now=NOW)

    @pytest.mark.parametrize(
        "body", [b"\xff", b"token=%ff", b"--b\r\nno headers", b"--b\r\n\r\n\r\n--b--"]
    )
    def test_a_body_that_is_not_a_form(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload, match="mailgun body is not a form"):
            mailgun.verify(body, {}, MAILGUN_KEY, now=NOW)


class TestProvider:
    PROVIDER = mailgun.PROVIDER

    @ENCODINGS
    def test_the_replay_token_is_the_last_token(self, encode: Encode) -> None:
        body, _ = encode(signed("metadata_key_conflicts", token="t" * 50))
        assert self.PROVIDER.replay_token(body) == "t" * 50

    @pytest.mark.parametrize(
        "media_type",
        ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"],
    )
    def test_accepts_json_and_forms(self, media_type: str) -> None:
        assert self.PROVIDER.accepts_media_type(media_type)
        assert not self.PROVIDER.accepts_media_type("text/plain")

    @ENCODINGS
    def test_detects_a_signed_form(self, encode: Encode) -> None:
        body, headers = encode(signed("delivered"))
        assert self.PROVIDER.detects(headers, body)
        assert not self.PROVIDER.detects({}, body)  # a form must say it is one

    @pytest.mark.parametrize(
        "body",
        [b"event=delivered&token=t&timestamp=1", b"mandrill_events=%5B%5D", b"\xff", b"--x"],
    )
    def test_does_not_detect_other_forms(self, body: bytes) -> None:
        headers = {"content-type": "application/x-www-form-urlencoded"}
        assert not self.PROVIDER.detects(headers, body)


def legacy_event(pairs: Pairs, **fields: Any) -> Event:
    fields.setdefault("email_id", ADDED_ID)
    return Event(occurred_at=WHEN, provider="mailgun", provider_event_id=event_id(pairs), **fields)


# (sample, what it normalises to, given its signed fields)
SAMPLE_EVENTS: list[tuple[str, Callable[[Pairs], Event]]] = [
    (
        "delivered",
        lambda pairs: legacy_event(
            pairs,
            type="email.delivered",
            email_id="20160421175529.19495.89030.B3AE3728@example.com",
            recipient="recipient@example.com",
        ),
    ),
    (
        "dropped_bounce",
        lambda pairs: legacy_event(
            pairs,
            type="email.rejected",
            email_id="20160421180324.70521.79375.96884DDB@example.com",
            recipient="bounce@example.com",
            reason="Not delivering to previously bounced address",
        ),
    ),
    (
        "dropped_spam",
        lambda pairs: legacy_event(
            pairs,
            type="email.rejected",
            recipient="complaint@example.com",
            reason="Not delivering to a user who marked your messages as spam",
        ),
    ),
    (
        "dropped_timed_out",
        # Dropped after retrying for too long: a soft bounce, as a JSON `failed` with `old`.
        lambda pairs: legacy_event(
            pairs,
            type="email.bounce",
            recipient="complaint@example.com",
            bounce=Bounce(kind="soft", reason="Unable to connect to MX servers: [example.com]"),
        ),
    ),
    (
        "bounced_invalid_mailbox",
        lambda pairs: legacy_event(
            pairs,
            type="email.bounce",
            recipient="noreply@example.com",
            bounce=Bounce(kind="hard", reason=dict(pairs)["error"]),
            mta_response=dict(pairs)["error"],
        ),
    ),
    (
        "bounced_alt_smtp_code",
        lambda pairs: legacy_event(
            pairs,
            type="email.bounce",
            recipient="noreply@example.com",
            bounce=Bounce(
                kind="hard", reason="smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"
            ),
            mta_response="smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
        ),
    ),
    (
        "metadata_message_headers",
        lambda pairs: legacy_event(
            pairs,
            type="email.delivered",
            metadata={"custom1": "value1", "custom2": '{"key":"value"}'},
        ),
    ),
    (
        "metadata_post_fields",
        lambda pairs: legacy_event(
            pairs,
            type="email.click",
            metadata={"custom1": "value1", "custom2": '{"key":"value"}'},
        ),
    ),
    (
        "metadata_key_conflicts",
        lambda pairs: legacy_event(
            pairs,
            type="email.click",
            recipient="actual-recipient@example.com",
            click=Click(url="http://clicked.example.com/actual/event/param"),
            metadata={
                "event": "metadata-event",
                "recipient": "metadata-recipient",
                "token": "metadata-token",
                "timestamp": "metadata-timestamp",
                "signature": "metadata-signature",
                "ordinary field": "ordinary metadata value",
                "tags": ["actual-tag-1", "actual-tag-2"],
            },
        ),
    ),
    (
        "tags",
        lambda pairs: legacy_event(pairs, type="email.open", metadata={"tags": ["tag1", "tag2"]}),
    ),
    (
        "x_tags",
        lambda pairs: legacy_event(
            pairs, type="email.delivered", metadata={"tags": ["tag1", "tag2"]}
        ),
    ),
]


class TestNormalize:
    @ENCODINGS
    @pytest.mark.parametrize(("name", "expected"), SAMPLE_EVENTS, ids=[n for n, _ in SAMPLE_EVENTS])
    def test_samples(self, encode: Encode, name: str, expected: Callable[[Pairs], Event]) -> None:
        pairs = signed(name)
        assert normalize(encode(pairs)[0]) == [expected(pairs)]

    def test_open_and_click_details(self) -> None:
        pairs = [
            *signed("metadata_post_fields"),
            ("user-agent", "Mozilla/5.0"),
            ("url", "https://x"),
        ]
        [event] = normalize(urlencoded(pairs)[0])
        assert isinstance(event, Event)
        assert (event.user_agent, event.click) == ("Mozilla/5.0", Click(url="https://x"))

    def test_a_lowercase_message_id_without_brackets(self) -> None:
        pairs = [*signed("tags"), ("message-id", "abc@mg.example.com")]
        pairs = [(k, v) for k, v in pairs if k != "Message-Id"]
        [event] = normalize(urlencoded(pairs)[0])
        assert isinstance(event, Event)
        assert event.email_id == "abc@mg.example.com"

    def test_file_parts_are_not_fields(self) -> None:
        body, _ = multipart(signed("dropped_bounce"), files={"attachment-1": b"From: x\r\n\r\nhi"})
        [event] = normalize(body)
        assert isinstance(event, Event)
        assert event.metadata is None

    def test_a_retry_is_the_same_event_and_a_reused_token_another(self) -> None:
        first = signed("delivered")
        again = normalize(multipart(first)[0])
        assert normalize(urlencoded(first)[0]) == again
        forged = [(k, "attacker@example.com" if k == "recipient" else v) for k, v in first]
        [original], [other] = again, normalize(urlencoded(forged)[0])
        assert isinstance(original, Event)
        assert isinstance(other, Event)
        assert original.provider_event_id != other.provider_event_id
        assert other.provider_event_id is not None
        assert other.provider_event_id.endswith(":" + TOKEN)

    @pytest.mark.parametrize("event", ["accepted", "stored", "list_member_uploaded"])
    def test_other_events_are_ignored(self, event: str) -> None:
        pairs = [(k, event if k == "event" else v) for k, v in signed("delivered")]
        assert normalize(urlencoded(pairs)[0]) == [Ignored(provider="mailgun", provider_type=event)]

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"event": None}, "event"),
            ({"event": ""}, "event"),
            ({"Message-Id": None}, "Message-Id"),
            ({"Message-Id": "<>"}, "Message-Id"),
            ({"timestamp": "yesterday"}, "timestamp"),
            ({"timestamp": None}, "timestamp"),
            ({"message-headers": "not json"}, "message-headers"),
        ],
    )
    def test_invalid_fields_are_named(self, change: dict[str, str | None], field: str) -> None:
        pairs = [(k, change.get(k, v)) for k, v in signed("delivered")]
        body = urlencoded([(k, v) for k, v in pairs if v is not None])[0]
        with pytest.raises(InvalidPayload) as info:
            normalize(body)
        assert info.value.field == field
