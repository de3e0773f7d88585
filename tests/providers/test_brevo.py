from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from service.core.errors import InvalidCredentials, InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import brevo
from tests import FIXTURES
from tests.signers import basic_auth, bearer

SAMPLES = FIXTURES / "providers" / "brevo"
MESSAGE = "<201803011158.9876543210@smtp-relay.mailin.fr>"
AT = "2018-03-06T19:10:23Z"  # ts_epoch 1520363423000 (milliseconds)
EPOCH_MS = 1520363423000


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def event(name: str, **changes: Any) -> bytes:
    payload = json.loads(sample(name))
    payload.update(changes)
    return json.dumps(payload).encode()


def normalize(body: bytes) -> list[Event | Ignored]:
    return brevo.normalize(body, {}, received_at="2026-01-01T00:00:00Z")


def digest(*fields: object) -> str:
    """The documented derived event id, computed here independently: SHA-256 of the JSON
    array of (event, message-id, email, ts_epoch, ts_event, link)."""
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def expected(
    kind: str, brevo_event: str, recipient: str = "recipient@example.com", **fields: Any
) -> Event:
    """An event of the samples that share MESSAGE and ts_epoch."""
    link = fields["click"].url if "click" in fields else None
    return Event(
        type=kind,
        email_id=MESSAGE,
        occurred_at=AT,
        provider="brevo",
        recipient=recipient,
        provider_event_id=digest(brevo_event, MESSAGE, recipient, EPOCH_MS, None, link),
        **fields,
    )


class TestNormalize:
    @pytest.mark.parametrize(
        ("name", "event_"),
        [
            ("delivered.json", expected("email.delivered", "delivered")),
            ("opened.json", expected("email.open", "opened")),
            ("unique_opened.json", expected("email.open", "unique_opened")),
            (
                "click.json",
                expected("email.click", "click", click=Click(url="https://example.com/click/me")),
            ),
            ("spam.json", expected("email.complaint", "spam")),
            ("unsubscribe.json", expected("email.unsubscribe", "unsubscribe")),
            (
                "hard_bounce.json",
                expected(
                    "email.bounce",
                    "hard_bounce",
                    "not-a-user@example.com",
                    bounce=Bounce(
                        kind="hard",
                        reason="RecipientError: 550 5.5.0 Requested action not taken: "
                        "mailbox unavailable.",
                    ),
                    metadata={"tags": ["header-tag"]},
                    mta_response="RecipientError: 550 5.5.0 Requested action not taken: "
                    "mailbox unavailable.",
                ),
            ),
            (
                "soft_bounce.json",
                expected(
                    "email.bounce",
                    "soft_bounce",
                    "recipient@no-mx.example.com",
                    bounce=Bounce(
                        kind="soft",
                        reason="undefined Unable to find MX of domain no-mx.example.com",
                    ),
                    mta_response="undefined Unable to find MX of domain no-mx.example.com",
                ),
            ),
            (
                "blocked.json",
                expected("email.rejected", "blocked", reason="blocked : due to blacklist user"),
            ),
            (
                "invalid_email.json",
                expected(
                    "email.rejected",
                    "invalid_email",
                    reason="(guessing invalid_email includes a reason)",
                ),
            ),
            (
                "deferred.json",
                expected(
                    "email.deferred",
                    "deferred",
                    "notauser@example.com",
                    mta_response="550 RecipientError: 550 5.1.1 <notauser@example.com>: "
                    "Recipient address rejected: User unknown in virtual alias table",
                    reason="550 RecipientError: 550 5.1.1 <notauser@example.com>: "
                    "Recipient address rejected: User unknown in virtual alias table",
                ),
            ),
        ],
    )
    def test_samples(self, name: str, event_: Event) -> None:
        assert normalize(sample(name)) == [event_]

    def test_a_complaint_without_ts_epoch_uses_ts_event(self) -> None:
        message = "201798300811.5787683@relay.domain.com"
        assert normalize(sample("complaint.json")) == [
            Event(
                type="email.complaint",
                email_id=message,
                occurred_at="2020-11-09T14:54:14Z",  # ts_event 1604933654, not ts nor date
                provider="brevo",
                recipient="example@domain.com",
                provider_event_id=digest(
                    "complaint", message, "example@domain.com", None, 1604933654, None
                ),
                metadata={"meta": "data", "tags": ["transac_messages"]},
            )
        ]

    @pytest.mark.parametrize(
        ("name", "brevo_event"), [("request.json", "request"), ("error.json", "error")]
    )
    def test_sent_and_error_are_ignored(self, name: str, brevo_event: str) -> None:
        assert normalize(sample(name)) == [Ignored(provider="brevo", provider_type=brevo_event)]

    @pytest.mark.parametrize(
        ("times", "occurred_at"),
        [
            ({"ts_epoch": 1520363423123}, "2018-03-06T19:10:23.123Z"),
            ({"ts_epoch": 1604933623}, "2020-11-09T14:53:43Z"),  # seconds, as in Brevo's docs
            ({"ts_epoch": 1520363423000, "ts_event": 1}, AT),
            ({"ts_event": 1520363423, "ts": 1}, AT),
            ({"ts": 1520363423}, AT),
        ],
    )
    def test_time(self, times: dict[str, int], occurred_at: str) -> None:
        body = json.dumps({"event": "delivered", "message-id": MESSAGE, **times}).encode()
        [normalized] = normalize(body)
        assert isinstance(normalized, Event)
        assert normalized.occurred_at == occurred_at

    @pytest.mark.parametrize(
        ("fields", "metadata"),
        [
            ({"X-Mailin-custom": '{"account_id": "a1"}'}, {"account_id": "a1"}),
            ({"X-Mailin-custom": "order-42"}, {"X-Mailin-custom": "order-42"}),
            ({"tags": ["a", "b"], "tag": '["a","b"]'}, {"tags": ["a", "b"]}),
            ({"tag": "one"}, {"tags": ["one"]}),
            ({"tag": ["transactionalTag"]}, {"tags": ["transactionalTag"]}),
            ({"tag": "", "tags": []}, None),
            ({"X-Mailin-custom": '{"tags": "mine"}', "tags": ["t"]}, {"tags": ["t"]}),
            ({"tag": None, "tags": None, "X-Mailin-custom": None}, None),
        ],
    )
    def test_metadata(self, fields: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        [normalized] = normalize(event("delivered.json", **fields))
        assert isinstance(normalized, Event)
        assert normalized.metadata == metadata

    def test_user_agent_of_opens_and_clicks(self) -> None:
        agent = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com)"
        for name in ("opened.json", "click.json"):
            [normalized] = normalize(event(name, user_agent=agent))
            assert isinstance(normalized, Event)
            assert normalized.user_agent == agent
        [normalized] = normalize(event("delivered.json", user_agent=agent))
        assert isinstance(normalized, Event)
        assert normalized.user_agent is None

    def test_a_batched_array(self) -> None:
        batch = [
            json.loads(sample(name)) for name in ("request.json", "delivered.json", "click.json")
        ]
        result = normalize(json.dumps(batch).encode())
        assert [getattr(item, "type", None) for item in result] == [
            None,
            "email.delivered",
            "email.click",
        ]
        assert result[0] == Ignored(provider="brevo", provider_type="request")
        assert normalize(b"[]") == []

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (event("delivered.json", **{"message-id": None}), "message-id"),
            (b'{"event": "delivered", "ts": 1}', "message-id"),
            (event("delivered.json", **{"message-id": " "}), "message-id"),
            (event("delivered.json", ts_epoch=None), "ts_event"),
            (event("delivered.json", ts_epoch="today"), "ts_epoch"),
            (event("delivered.json", ts_epoch=1e30), "ts_epoch"),
            (event("delivered.json", tags="a"), "tags"),
            (
                json.dumps([json.loads(sample("delivered.json")), {"event": "x"}]).encode(),
                "[1].message-id",
            ),
        ],
    )
    def test_invalid_fields_are_named(self, body: bytes, field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(body)
        assert info.value.field == field

    @pytest.mark.parametrize("body", [b"", b"null", b"[1]", b"{}", b'{"items": []}'])
    def test_wrong_shape(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload):
            normalize(body)


BASIC = "brevo:hook-pass"
TOKEN = "tok_3xAmple-Token"


class TestSecret:
    @pytest.mark.parametrize(
        ("variables", "secret"),
        [
            ({"BREVO_WEBHOOK_BASIC_AUTH": BASIC}, BASIC),
            ({"BREVO_WEBHOOK_TOKEN": TOKEN}, f"\0{TOKEN}"),
            (
                {"BREVO_WEBHOOK_BASIC_AUTH": BASIC, "BREVO_WEBHOOK_TOKEN": TOKEN},
                f"{BASIC}\0{TOKEN}",
            ),
            ({}, ""),
        ],
    )
    def test_read_from_either_variable_or_both(
        self, variables: dict[str, str], secret: str
    ) -> None:
        assert brevo.PROVIDER.read_secret(lambda name: variables.get(name, "")) == secret
        assert brevo.split_secret(secret) == (
            variables.get("BREVO_WEBHOOK_BASIC_AUTH", ""),
            variables.get("BREVO_WEBHOOK_TOKEN", ""),
        )

    @pytest.mark.parametrize("secret", [BASIC, f"\0{TOKEN}", f"{BASIC}\0{TOKEN}"])
    def test_well_formed(self, secret: str) -> None:
        brevo.PROVIDER.check_secret(secret)

    @pytest.mark.parametrize(
        ("secret", "message"),
        [
            ("no-colon", "user:password"),
            (f"no-colon\0{TOKEN}", "user:password"),
            ("\0has space", "BREVO_WEBHOOK_TOKEN is malformed"),
            (f"{BASIC}\0tök", "BREVO_WEBHOOK_TOKEN is malformed"),
        ],
    )
    def test_malformed_fails_at_start_up(self, secret: str, message: str) -> None:
        with pytest.raises(InvalidSignature, match=message) as info:
            brevo.PROVIDER.check_secret(secret)
        assert "has space" not in str(info.value)


class TestVerify:
    BODY = sample("delivered.json")

    @pytest.mark.parametrize(
        ("secret", "headers"),
        [
            (BASIC, basic_auth("brevo", "hook-pass")),
            (f"\0{TOKEN}", bearer(TOKEN)),
            (f"{BASIC}\0{TOKEN}", basic_auth("brevo", "hook-pass")),
            (f"{BASIC}\0{TOKEN}", bearer(TOKEN)),
        ],
        ids=["basic", "bearer", "both-basic", "both-bearer"],
    )
    def test_accepted(self, secret: str, headers: dict[str, str]) -> None:
        brevo.PROVIDER.verify(self.BODY, headers, secret, now=0)

    @pytest.mark.parametrize(
        ("secret", "headers", "message"),
        [
            (BASIC, basic_auth("brevo", "wrong"), "do not match"),
            (BASIC, bearer(TOKEN), "not Basic credentials"),
            (BASIC, {}, "missing Authorization"),
            (f"\0{TOKEN}", bearer("tok_other"), "does not match"),
            (f"\0{TOKEN}", basic_auth("brevo", "hook-pass"), "not Bearer credentials"),
            (f"\0{TOKEN}", {}, "missing Authorization"),
            (f"{BASIC}\0{TOKEN}", bearer("tok_other"), "does not match"),
            (f"{BASIC}\0{TOKEN}", basic_auth("brevo", TOKEN), "do not match"),
            (f"{BASIC}\0{TOKEN}", {"authorization": "Token " + TOKEN}, "not Basic"),
            (f"{BASIC}\0{TOKEN}", {}, "missing Authorization"),
        ],
        ids=[
            "basic-wrong",
            "basic-given-bearer",
            "basic-missing",
            "bearer-wrong",
            "bearer-given-basic",
            "bearer-missing",
            "both-wrong-bearer",
            "both-wrong-basic",
            "both-other-scheme",
            "both-missing",
        ],
    )
    def test_refused(self, secret: str, headers: dict[str, str], message: str) -> None:
        with pytest.raises(InvalidCredentials, match=message):
            brevo.PROVIDER.verify(self.BODY, headers, secret, now=0)


class TestProvider:
    PROVIDER = brevo.PROVIDER

    @pytest.mark.parametrize(
        ("body", "detected"),
        [
            (sample("delivered.json"), True),
            (sample("request.json"), True),
            (b'[{"event": "delivered", "message-id": "<m>"}]', True),
            (b'{"event": "delivered", "MessageID": 1}', False),  # Mailjet's
            (b'{"message-id": "<m>"}', False),
            (b'{"event": "opened", "camp_id": 1, "email": "a@b"}', False),  # marketing
            (b'{"data": {"event": "x", "message-id": "m"}}', False),
            (b'{"event": "delivered", "message-id": "<m>"', False),
        ],
    )
    def test_detected_by_event_and_message_id(self, body: bytes, detected: bool) -> None:
        assert self.PROVIDER.detects({}, body) is detected

    def test_no_replay_token(self) -> None:
        assert self.PROVIDER.replay_token(sample("delivered.json")) is None
