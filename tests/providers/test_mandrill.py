from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from typing import Any

import pytest

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import mandrill
from tests import FIXTURES
from tests.signers import MANDRILL_KEY, MANDRILL_URL, mandrill_request

SAMPLES = FIXTURES / "providers" / "mandrill"
NOW = 1_772_532_000
RECEIVED_AT = "2026-03-03T10:00:00Z"
PROBE_KEY = "test-webhook"  # what Mandrill signs the empty batch with when a webhook is added
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.6; en-US; rv:1.9.1.8) Gecko/20100317 "
    "Postbox/1.1.3"
)


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return event


def normalize(events: list[Any]) -> list[Event | Ignored]:
    body, headers = mandrill_request(events)
    return mandrill.normalize(body, headers, received_at=RECEIVED_AT)


def verify(body: bytes, headers: dict[str, str], url: str = MANDRILL_URL) -> None:
    mandrill.verify(body, headers, MANDRILL_KEY, now=NOW, url=url)


class TestVerify:
    def test_signed_as_documented(self) -> None:
        verify(*mandrill_request([sample("open")]))

    def test_a_signature_computed_by_hand(self) -> None:
        # The docs' recipe, spelled out: URL, then each field's name and value, sorted by name.
        body = b"b=2&mandrill_events=%5B%5D&a=1"
        signed = (MANDRILL_URL + "a1" + "b2" + "mandrill_events[]").encode()
        digest = hmac.new(MANDRILL_KEY.encode(), signed, hashlib.sha1).digest()
        verify(body, {"x-mandrill-signature": base64.b64encode(digest).decode()})

    @pytest.mark.parametrize(
        "url",
        [
            MANDRILL_URL + "/",
            MANDRILL_URL.replace("https://", "http://"),
            MANDRILL_URL + "?a=1",
            "https://user:pass@hooks.example.com/api/webhooks/mandrill",
        ],
        ids=["trailing-slash", "http", "query", "credentials"],
    )
    def test_another_url_is_refused(self, url: str) -> None:
        body, headers = mandrill_request([sample("open")])
        with pytest.raises(InvalidSignature, match="does not match"):
            verify(body, headers, url=url)

    def test_signed_for_another_url(self) -> None:
        body, headers = mandrill_request([sample("open")], url="https://elsewhere.example/x")
        with pytest.raises(InvalidSignature, match="does not match"):
            verify(body, headers)

    def test_wrong_key(self) -> None:
        body, headers = mandrill_request([sample("open")], key="another-key")
        with pytest.raises(InvalidSignature, match="does not match"):
            verify(body, headers)

    def test_tampered_body(self) -> None:
        body, headers = mandrill_request([sample("open")])
        tampered = body.replace(b"example.webhook", b"attacker.webhook")
        assert tampered != body
        with pytest.raises(InvalidSignature, match="does not match"):
            verify(tampered, headers)

    def test_an_added_field_is_signed_too(self) -> None:
        body, headers = mandrill_request([sample("open")])
        with pytest.raises(InvalidSignature, match="does not match"):
            verify(body + b"&extra=1", headers)

    def test_a_repeated_field_is_refused(self) -> None:
        body, headers = mandrill_request([])
        with pytest.raises(InvalidSignature, match="repeated"):
            verify(body + b"&mandrill_events=%5B%5D", headers)

    def test_without_the_url(self) -> None:
        with pytest.raises(InvalidSignature, match="set MANDRILL_WEBHOOK_URL"):
            verify(*mandrill_request([]), url="")

    @pytest.mark.parametrize(
        ("headers", "message"),
        [
            ({}, "missing x-mandrill-signature"),
            ({"x-mandrill-signature": " "}, "missing x-mandrill-signature"),
            ({"x-mandrill-signature": "not base64!"}, "not base64"),
            ({"x-mandrill-signature": "AAAA"}, "does not match"),
        ],
    )
    def test_missing_or_malformed_signature(self, headers: dict[str, str], message: str) -> None:
        body, _ = mandrill_request([])
        with pytest.raises(InvalidSignature, match=message):
            verify(body, headers)

    @pytest.mark.parametrize("body", [b"\xff", b"mandrill_events=%ff"])
    def test_a_body_that_is_not_a_form(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload, match="mandrill body is not a form"):
            verify(body, {"x-mandrill-signature": "AAAA"})


class TestProvider:
    PROVIDER = mandrill.PROVIDER

    def test_the_handler_passes_the_configured_url(self) -> None:
        body, headers = mandrill_request([sample("send")])
        self.PROVIDER.verify_request(body, headers, MANDRILL_KEY, now=NOW, url=MANDRILL_URL)
        assert self.PROVIDER.url_variable == "MANDRILL_WEBHOOK_URL"
        with pytest.raises(InvalidSignature, match="MANDRILL_WEBHOOK_URL"):
            self.PROVIDER.verify(body, headers, MANDRILL_KEY, now=NOW)

    def test_accepts_only_form_bodies(self) -> None:
        assert self.PROVIDER.accepts_media_type("application/x-www-form-urlencoded")
        assert not self.PROVIDER.accepts_media_type("application/json")
        assert not self.PROVIDER.accepts_media_type("multipart/form-data")

    @pytest.mark.parametrize(
        ("body", "probe"),
        [
            (mandrill_request([], key=PROBE_KEY)[0], True),
            (b"mandrill_events=%5B+%5D", True),
            (mandrill_request([sample("send")])[0], False),
            (b"mandrill_events=%5B%5D&x=1", False),
            (b"mandrill_events=", False),
            (b"mandrill_events=%7B%7D", False),
            (b"events=%5B%5D", False),
            (b"\xff", False),
        ],
    )
    def test_the_empty_batch_is_a_probe(self, body: bytes, probe: bool) -> None:
        assert self.PROVIDER.is_probe(body, {}) is probe

    @pytest.mark.parametrize(
        ("headers", "body", "detected"),
        [
            ({"x-mandrill-signature": "x"}, b"", True),
            (
                {"content-type": "application/x-www-form-urlencoded"},
                b"mandrill_events=%5B%5D",
                True,
            ),
            ({"content-type": "application/x-www-form-urlencoded"}, b"a=1&mandrill_events=", True),
            ({}, b"mandrill_events=%5B%5D", False),
            ({"content-type": "application/json"}, b'{"mandrill_events=": 1}', False),
            ({"content-type": "application/x-www-form-urlencoded"}, b"xmandrill_events=1", False),
        ],
    )
    def test_detects(self, headers: dict[str, str], body: bytes, detected: bool) -> None:
        assert self.PROVIDER.detects(headers, body) is detected

    def test_any_key_and_no_replay_token(self) -> None:
        self.PROVIDER.check_secret("anything")
        assert self.PROVIDER.replay_token(mandrill_request([])[0]) is None


EXAMPLE_ID = "exampleaaaaaaaaaaaaaaaaaaaaaaaaa"
WHEN = "2020-02-03T20:34:34Z"  # ts 1580762074
METADATA = {"user_id": 111, "tags": ["webhook-example"]}


def expected(name: str, suffix: str, event_type: str, **fields: Any) -> Event:
    return Event(
        type=event_type,
        email_id=EXAMPLE_ID + suffix,
        occurred_at=WHEN,
        provider="mandrill",
        recipient="example.webhook@mandrillapp.com",
        provider_event_id=f"{EXAMPLE_ID}{suffix}:{name}:1580762074",
        metadata=METADATA,
        **fields,
    )


SAMPLE_EVENTS = [
    (
        "deferral",
        expected(
            "deferral",
            "1",
            "email.deferred",
            mta_response="451 4.3.5 Temporarily unavailable, try again later.",
            reason="451 4.3.5 Temporarily unavailable, try again later.",
        ),
    ),
    (
        "hard_bounce",
        expected(
            "hard_bounce",
            "2",
            "email.bounce",
            bounce=Bounce(kind="hard", reason="bad_mailbox"),
            mta_response="smtp;550 5.1.1 The email account that you tried to reach does not "
            "exist. Please try double-checking the recipient's email address for typos or "
            "unnecessary spaces.",
        ),
    ),
    (
        "soft_bounce",
        expected(
            "soft_bounce",
            "3",
            "email.bounce",
            bounce=Bounce(kind="soft", reason="mailbox_full"),
            mta_response="smtp;552 5.2.2 Over Quota",
        ),
    ),
    ("open", expected("open", "4", "email.open", user_agent=USER_AGENT)),
    (
        "click",
        expected(
            "click",
            "5",
            "email.click",
            click=Click(url="http://mandrill.com"),
            user_agent=USER_AGENT,
        ),
    ),
    ("spam", expected("spam", "6", "email.complaint")),
    ("unsub", expected("unsub", "7", "email.unsubscribe")),
    ("reject", expected("reject", "8", "email.rejected")),
]


class TestNormalize:
    @pytest.mark.parametrize(("name", "event"), SAMPLE_EVENTS, ids=[n for n, _ in SAMPLE_EVENTS])
    def test_samples(self, name: str, event: Event) -> None:
        assert normalize([sample(name)]) == [event]

    @pytest.mark.parametrize(
        ("name", "provider_type"),
        [
            ("send", "send"),
            ("sync_blacklist_add", "blacklist"),
            ("sync_whitelist_add", "whitelist"),
        ],
    )
    def test_samples_without_a_canonical_type_are_ignored(
        self, name: str, provider_type: str
    ) -> None:
        assert normalize([sample(name)]) == [
            Ignored(provider="mandrill", provider_type=provider_type)
        ]

    def test_the_whole_test_batch_in_order(self) -> None:
        names = [name for name, _ in SAMPLE_EVENTS]
        batch = [sample("send"), *(sample(name) for name in names), sample("sync_blacklist_add")]
        assert normalize(batch) == [
            Ignored(provider="mandrill", provider_type="send"),
            *(event for _, event in SAMPLE_EVENTS),
            Ignored(provider="mandrill", provider_type="blacklist"),
        ]

    def test_an_inbound_message_is_ignored(self) -> None:
        assert normalize([{"event": "inbound", "ts": 1, "msg": {}}]) == [
            Ignored(provider="mandrill", provider_type="inbound")
        ]

    def test_empty_batch(self) -> None:
        assert normalize([]) == []

    def test_message_id_falls_back_to_the_event_id(self) -> None:
        event = sample("spam")
        del event["msg"]["_id"]
        [normalized] = normalize([event])
        assert isinstance(normalized, Event)
        assert normalized.email_id == "exampleaaaaaaaaaaaaaaaaaaaaaaaaa6"

    def test_deferral_reports_its_last_attempt(self) -> None:
        event = sample("deferral")
        event["msg"]["smtp_events"].append({"diag": "421 try later", "type": "deferred"})
        event["msg"]["diag"] = "older"
        [normalized] = normalize([event])
        assert isinstance(normalized, Event)
        assert (normalized.mta_response, normalized.reason) == ("421 try later", "421 try later")

    def test_bounce_without_description_gives_the_smtp_reply(self) -> None:
        event = sample("soft_bounce")
        del event["msg"]["bounce_description"]
        [normalized] = normalize([event])
        assert isinstance(normalized, Event)
        assert normalized.bounce == Bounce(kind="soft", reason="smtp;552 5.2.2 Over Quota")

    @pytest.mark.parametrize(
        ("metadata", "tags", "expected_metadata"),
        [
            ([], [], None),
            ({}, None, None),
            ({"account_id": "acc_1"}, [], {"account_id": "acc_1"}),
            ({"tags": "mine"}, ["theirs"], {"tags": ["theirs"]}),
        ],
    )
    def test_metadata(self, metadata: Any, tags: Any, expected_metadata: Any) -> None:
        event = sample("open")
        event["msg"]["metadata"], event["msg"]["tags"] = metadata, tags
        [normalized] = normalize([event])
        assert isinstance(normalized, Event)
        assert normalized.metadata == expected_metadata

    @pytest.mark.parametrize(
        ("event", "field"),
        [
            ({"ts": 1, "msg": {"_id": "m"}}, "mandrill_events[0].event"),
            ({"event": "open", "msg": {"_id": "m"}}, "mandrill_events[0].ts"),
            ({"event": "open", "ts": 1}, "mandrill_events[0].msg._id"),
            (
                {"event": "open", "ts": 1, "msg": {"_id": "m", "email": 7}},
                "mandrill_events[0].msg.email",
            ),
            ({"event": "open", "ts": 1e300, "msg": {"_id": "m"}}, "mandrill_events[0].ts"),
            ({"type": 5}, "mandrill_events[0].event"),
        ],
    )
    def test_invalid_fields_are_named(self, event: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize([event])
        assert info.value.field == field

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (b"", "mandrill_events"),
            (b"events=%5B%5D", "mandrill_events"),
            (b"mandrill_events=GARBAGE", "mandrill_events"),
            (b"mandrill_events=%7B%7D", "mandrill_events"),
            (b"mandrill_events=%5B1%5D", "mandrill_events[0]"),
        ],
    )
    def test_wrong_shape(self, body: bytes, field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            mandrill.normalize(body, {}, received_at=RECEIVED_AT)
        assert info.value.field == field

    def test_json_escapes_and_unicode_survive_the_form(self) -> None:
        event = sample("click")
        event["msg"]["email"] = "zoë@example.com"
        value = json.dumps([event], ensure_ascii=False).replace("/", "\\/")
        body = urllib.parse.urlencode({"mandrill_events": value}).encode()
        [normalized] = mandrill.normalize(body, {}, received_at=RECEIVED_AT)
        assert isinstance(normalized, Event)
        assert normalized.recipient == "zoë@example.com"
        assert normalized.click == Click(url="http://mandrill.com")
