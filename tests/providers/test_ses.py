from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from service.core.errors import Forbidden, InvalidPayload, InvalidSignature
from service.core.models import Bounce, Click, Event
from service.core.normalized import Ignored
from service.providers import ses
from service.providers.registry import BY_NAME
from tests import FIXTURES
from tests.signers import SNS_TOPIC, SnsSigner, self_signed, sns_request, sns_string_to_sign

SAMPLES = FIXTURES / "providers" / "amazon_ses"
NOW = datetime(2026, 3, 3, 10, 0, 0, tzinfo=UTC)
SIGNER = SnsSigner()
OTHER = SnsSigner()
MESSAGE_ID = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
SES_MESSAGE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
RECEIVED_AT = "2026-03-03T10:00:00Z"


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return loaded


def signed(message: dict[str, Any] | str = "Hello world!", **fields: Any) -> bytes:
    return sns_request(SIGNER.notification(message, NOW, **fields))[0]


def verify(body: bytes, *, topics: str = "", certificate: bytes | None = None, **at: Any) -> None:
    now = at.get("now", NOW).timestamp()
    key = SIGNER.certificate if certificate is None else certificate
    ses.verify(body, {}, topics, key, now=now)


def normalize(body: bytes) -> list[Event | Ignored]:
    return ses.normalize(body, {}, received_at=RECEIVED_AT)


def events(body: bytes) -> list[Event]:
    found = normalize(body)
    assert all(isinstance(item, Event) for item in found), found
    return [item for item in found if isinstance(item, Event)]


def tags(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = sample(name)["mail"]["tags"]
    return found


class TestStringToSign:
    def test_the_docs_notification(self) -> None:
        # AWS's sample notification (with a Subject): every signed field, in byte order.
        envelope = ses._ENVELOPE.decode((SAMPLES / "sns_notification_envelope.json").read_bytes())
        assert ses.string_to_sign(envelope) == (
            b"Message\nHello world!\n"
            b"MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
            b"Subject\nMy First Message\n"
            b"Timestamp\n2012-05-02T00:54:06.655Z\n"
            b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n"
            b"Type\nNotification\n"
        )

    def test_the_docs_subscription_confirmation(self) -> None:
        raw = (SAMPLES / "sns_subscription_confirmation.json").read_bytes()
        message = json.loads(raw)
        expected = "".join(
            f"{name}\n{message[name]}\n"
            for name in ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token")
        )
        expected += f"TopicArn\n{message['TopicArn']}\nType\nSubscriptionConfirmation\n"
        assert ses.string_to_sign(ses._ENVELOPE.decode(raw)) == expected.encode()

    def test_agrees_with_the_test_signer(self) -> None:
        for name in ("sns_notification_envelope.json", "sns_unsubscribe_confirmation.json"):
            raw = (SAMPLES / name).read_bytes()
            assert ses.string_to_sign(ses._ENVELOPE.decode(raw)) == sns_string_to_sign(
                json.loads(raw)
            )

    def test_unsigned_fields_are_left_out(self) -> None:
        message = {**sample("sns_notification_envelope.json"), "UnsubscribeURL": "x", "Extra": 1}
        del message["Subject"]
        text = ses.string_to_sign(ses._ENVELOPE.decode(json.dumps(message).encode()))
        assert b"Subject" not in text
        assert b"UnsubscribeURL" not in text
        assert b"Extra" not in text


class TestVerify:
    @pytest.mark.parametrize("version", ["1", "2"])
    def test_both_signature_versions(self, version: str) -> None:
        verify(signed(version=version))

    def test_with_a_subject(self) -> None:
        verify(signed(Subject="Amazon SES Email Event Notification"))

    def test_a_confirmation(self) -> None:
        message = SIGNER.sign(
            {**sample("sns_subscription_confirmation.json"), "Timestamp": "2026-03-03T10:00:00Z"}
        )
        del message["SignatureVersion"]  # absent means 1 to SNS's own SDKs, not to us
        with pytest.raises(InvalidSignature, match="no SignatureVersion"):
            verify(json.dumps(message).encode())
        verify(json.dumps(SIGNER.sign({**message, "SignatureVersion": "1"})).encode())

    @pytest.mark.parametrize(
        "change",
        [
            {"Message": "Hello world?"},
            {"MessageId": "another-id"},
            {"Subject": "added"},
            {"Timestamp": "2026-03-03T10:00:01.000Z"},
            {"TopicArn": "arn:aws:sns:us-west-2:123456789012:Other"},
            {"Type": "SubscriptionConfirmation", "SubscribeURL": "x", "Token": "t"},
            {"SignatureVersion": "2"},
        ],
        ids=lambda change: next(iter(change)),
    )
    def test_a_changed_field_is_refused(self, change: dict[str, str]) -> None:
        message = {**SIGNER.notification("Hello world!", NOW), **change}
        with pytest.raises(InvalidSignature, match="does not match"):
            verify(json.dumps(message).encode())

    def test_another_certificate_is_refused(self) -> None:
        with pytest.raises(InvalidSignature, match="does not match"):
            verify(signed(), certificate=OTHER.certificate)

    @pytest.mark.parametrize(
        ("certificate", "message"),
        [
            (b"", "not a PEM X.509 certificate"),
            (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a PEM"),
            (self_signed(ec.generate_private_key(ec.SECP256R1()), "x"), "does not hold an RSA"),
        ],
        ids=["empty", "garbage", "ec-key"],
    )
    def test_a_certificate_that_is_not_one(self, certificate: bytes, message: str) -> None:
        with pytest.raises(InvalidSignature, match=message):
            verify(signed(), certificate=certificate)

    @pytest.mark.parametrize(
        ("offset", "message"),
        [
            (timedelta(hours=2, seconds=1), "Timestamp is too old"),
            (-timedelta(hours=2, seconds=1), "Timestamp is in the future"),
        ],
    )
    def test_outside_two_hours(self, offset: timedelta, message: str) -> None:
        body = signed()
        verify(body, now=NOW + timedelta(hours=2))  # SNS retries for an hour at most
        with pytest.raises(InvalidSignature, match=message):
            verify(body, now=NOW + offset)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"SignatureVersion": "3"}, "SignatureVersion '3' is neither 1 nor 2"),
            ({"Signature": "not base64!"}, "Signature is not base64"),
            ({"Signature": ""}, "no Signature"),
            ({"SigningCertURL": None}, "no SigningCertURL"),
            ({"MessageId": None}, "no MessageId"),
            ({"Timestamp": "yesterday"}, "Timestamp is not an ISO 8601 timestamp"),
            ({"Type": "Advert"}, "'Advert' is not an SNS message type"),
            ({"Type": None}, "None is not an SNS message type"),
        ],
    )
    def test_malformed(self, change: dict[str, Any], message: str) -> None:
        signed_message = SIGNER.notification("Hello world!", NOW)
        changed = {k: v for k, v in {**signed_message, **change}.items() if v is not None}
        with pytest.raises(InvalidSignature, match=message):
            verify(json.dumps(changed).encode())

    @pytest.mark.parametrize("body", [b"", b"[]", b"not json", b'{"Type": 5}'])
    def test_not_an_sns_message(self, body: bytes) -> None:
        with pytest.raises((InvalidPayload, InvalidSignature)):
            verify(body)

    def test_the_topic_must_be_listed_when_a_list_is_set(self) -> None:
        body = signed()
        verify(body, topics=f"arn:aws:sns:us-east-1:123456789012:Other, {SNS_TOPIC}")
        with pytest.raises(Forbidden, match="is not in SES_TOPIC_ARNS") as info:
            verify(body, topics="arn:aws:sns:us-east-1:123456789012:Other")
        assert info.value.status == 403

    def test_the_topic_is_checked_before_the_certificate_is_asked_for(self) -> None:
        with pytest.raises(Forbidden):
            ses.signing_certificate_url(
                signed(), {}, "arn:aws:sns:us-east-1:123456789012:Other", now=NOW.timestamp()
            )

    def test_signing_certificate_url(self) -> None:
        url = ses.signing_certificate_url(signed(), {}, "", now=NOW.timestamp())
        assert url == SIGNER.cert_url
        with pytest.raises(InvalidSignature, match="too old"):
            ses.signing_certificate_url(signed(), {}, "", now=NOW.timestamp() + 3 * 3600)

    def test_a_lone_surrogate_is_refused(self) -> None:
        body = signed().replace(b"Hello world!", b"Hello \\ud800!")
        with pytest.raises((InvalidPayload, InvalidSignature)):
            verify(body)


class TestTopicArns:
    def test_parsed(self) -> None:
        assert ses.topic_arns("") == frozenset()
        assert ses.topic_arns(
            " arn:aws:sns:eu-west-1:123456789012:ses-events ,arn:aws-cn:sns:cn-north-1:"
            "123456789012:a.fifo,"
        ) == {
            "arn:aws:sns:eu-west-1:123456789012:ses-events",
            "arn:aws-cn:sns:cn-north-1:123456789012:a.fifo",
        }

    @pytest.mark.parametrize(
        ("value", "position"),
        [
            ("not-an-arn", 1),
            (f"{SNS_TOPIC},arn:aws:sqs:us-west-2:123456789012:queue", 2),
            (f"{SNS_TOPIC},arn:aws:sns:us-west-2:12345:MyTopic", 2),
        ],
    )
    def test_refused_by_position(self, value: str, position: int) -> None:
        with pytest.raises(InvalidSignature, match=f"entry #{position} is not an SNS topic ARN"):
            BY_NAME["ses"].check_secret(value)


def event(type_: str, name: str, **fields: Any) -> Event:
    """The canonical event of sample `name` (SES's own message id), as `provider_event_id`
    index 0 unless given."""
    defaults: dict[str, Any] = {
        "email_id": SES_MESSAGE_ID,
        "provider": "ses",
        "provider_event_id": f"{MESSAGE_ID}:0",
        "metadata": tags(name) if "tags" in sample(name)["mail"] else None,
    }
    return Event(type=type_, **{**defaults, **fields})


EXPECTED: dict[str, list[Event | Ignored]] = {
    "bounce_permanent.json": [
        event(
            "email.bounce",
            "bounce_permanent.json",
            recipient="recipient@example.com",
            occurred_at="2017-08-05T00:41:02.669Z",
            bounce=Bounce(kind="hard", reason="General"),
            mta_response="smtp; 550 5.1.1 user unknown",
        )
    ],
    "bounce_notification_format_with_dsn.json": [
        event(
            "email.bounce",
            "bounce_notification_format_with_dsn.json",
            email_id="00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
            recipient="jane@example.com",
            occurred_at="2016-01-27T14:59:38.237Z",
            bounce=Bounce(kind="hard", reason="General"),
            mta_response="smtp; 550 5.1.1 <jane@example.com>... User",
        )
    ],
    "complaint.json": [
        event(
            "email.complaint",
            "complaint.json",
            recipient="recipient@example.com",
            occurred_at="2017-08-05T00:41:02.669Z",
        )
    ],
    "complaint_notification_format.json": [
        event(
            "email.complaint",
            "complaint_notification_format.json",
            email_id="000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
            recipient="richard@example.com",
            occurred_at="2016-01-27T14:59:38.237Z",
        )
    ],
    "delivery.json": [
        event(
            "email.delivered",
            "delivery.json",
            recipient="recipient@example.com",
            occurred_at="2016-10-19T23:21:04.133Z",
            mta_response="250 2.6.0 Message received",
        )
    ],
    "open.json": [
        event(
            "email.open",
            "open.json",
            recipient="recipient@example.com",
            occurred_at="2017-08-09T22:00:19.652Z",
            user_agent=sample("open.json")["open"]["userAgent"],
        )
    ],
    "click.json": [
        event(
            "email.click",
            "click.json",
            recipient="recipient@example.com",
            occurred_at="2017-08-09T23:51:25.570Z",
            click=Click(
                url="http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"
            ),
            user_agent=sample("click.json")["click"]["userAgent"],
        )
    ],
    "reject.json": [
        # A Reject has no time of its own: the SNS message's.
        event(
            "email.rejected",
            "reject.json",
            recipient="sender@example.com",
            occurred_at="2026-03-03T10:00:00.000Z",
            reason="Bad content",
        )
    ],
    "delivery_delay.json": [
        event(
            "email.deferred",
            "delivery_delay.json",
            recipient="recipient@example.com",
            occurred_at="2020-06-16T00:25:40.095Z",
            reason="TransientCommunicationFailure",
            mta_response="smtp; 421 4.4.1 Unable to connect to remote host",
        )
    ],
    "subscription_unsubscribe.json": [
        event(
            "email.unsubscribe",
            "subscription_unsubscribe.json",
            email_id="EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000",
            recipient="recipient@example.com",
            occurred_at="2022-01-12T01:00:17.910Z",
        )
    ],
    "send.json": [Ignored(provider="ses", provider_type="Send")],
}


class TestNormalize:
    def test_every_sample_is_expected(self) -> None:
        events = {p.name for p in SAMPLES.glob("*.json") if not p.name.startswith("sns_")}
        assert events == set(EXPECTED)

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_sample(self, name: str) -> None:
        assert normalize(signed((SAMPLES / name).read_text())) == EXPECTED[name]

    def test_one_event_per_bounced_recipient(self) -> None:
        bounce = sample("bounce_permanent.json")
        first = bounce["bounce"]["bouncedRecipients"][0]
        bounce["bounce"]["bounceType"] = "Transient"
        bounce["bounce"]["bounceSubType"] = "MailboxFull"
        bounce["bounce"]["bouncedRecipients"] = [
            first,
            {"emailAddress": "second@example.com", "diagnosticCode": "smtp; 452 4.2.2 full"},
        ]
        found = events(signed(bounce))
        assert [(e.recipient, e.provider_event_id, e.mta_response) for e in found] == [
            ("recipient@example.com", f"{MESSAGE_ID}:0", "smtp; 550 5.1.1 user unknown"),
            ("second@example.com", f"{MESSAGE_ID}:1", "smtp; 452 4.2.2 full"),
        ]
        assert [e.bounce for e in found] == [Bounce(kind="soft", reason="MailboxFull")] * 2

    @pytest.mark.parametrize(
        ("bounce_type", "kind"), [("Undetermined", "undetermined"), (None, "undetermined")]
    )
    def test_undetermined_bounces(self, bounce_type: str | None, kind: str) -> None:
        bounce = sample("bounce_permanent.json")
        bounce["bounce"]["bounceType"] = bounce_type
        [found] = events(signed(bounce))
        assert found.bounce == Bounce(kind=kind, reason="General")

    def test_one_delivery_per_recipient(self) -> None:
        delivery = sample("delivery.json")
        delivery["delivery"]["recipients"] = ["a@example.com", "b@example.com", "c@example.com"]
        found = events(signed(delivery))
        assert [e.recipient for e in found] == ["a@example.com", "b@example.com", "c@example.com"]
        assert len({e.provider_event_id for e in found}) == 3

    def test_an_open_with_several_destinations_names_no_recipient(self) -> None:
        opened = sample("open.json")
        opened["mail"]["destination"] = ["a@example.com", "b@example.com"]
        [found] = events(signed(opened))
        assert found.recipient is None

    def test_a_reject_is_one_event_per_destination(self) -> None:
        reject = sample("reject.json")
        reject["mail"]["destination"] = ["a@example.com", "b@example.com"]
        found = events(signed(reject))
        assert [(e.recipient, e.reason) for e in found] == [
            ("a@example.com", "Bad content"),
            ("b@example.com", "Bad content"),
        ]

    def test_a_rendering_failure_is_rejected(self) -> None:
        failure = {
            "eventType": "Rendering Failure",
            "mail": sample("send.json")["mail"],
            "failure": {
                "errorMessage": "Attribute 'attributeName' is not present in the rendering data.",
                "templateName": "MyTemplate",
            },
        }
        [found] = events(signed(failure))
        assert found.type == "email.rejected"
        assert found.reason == failure["failure"]["errorMessage"]

    @pytest.mark.parametrize(
        ("new", "old", "unsubscribed"),
        [
            ({"unsubscribeAll": True}, {"unsubscribeAll": False}, True),
            ({"unsubscribeAll": True}, None, True),
            ({"unsubscribeAll": True}, {"unsubscribeAll": True}, False),
            (
                {
                    "topicSubscriptionStatus": [
                        {"topicName": "news", "subscriptionStatus": "OptOut"}
                    ]
                },
                {"topicSubscriptionStatus": [{"topicName": "news", "subscriptionStatus": "OptIn"}]},
                True,
            ),
            (
                {"topicSubscriptionStatus": [{"topicName": "news", "subscriptionStatus": "OptIn"}]},
                {
                    "topicSubscriptionStatus": [
                        {"topicName": "news", "subscriptionStatus": "OptOut"}
                    ]
                },
                False,
            ),
        ],
    )
    def test_subscription_changes(
        self, new: dict[str, Any], old: dict[str, Any] | None, unsubscribed: bool
    ) -> None:
        change = sample("subscription_unsubscribe.json")
        change["subscription"]["newTopicPreferences"] = new
        change["subscription"]["oldTopicPreferences"] = old
        found = normalize(signed(change))
        if unsubscribed:
            assert [e.type for e in found] == ["email.unsubscribe"]
        else:
            assert found == [Ignored(provider="ses", provider_type="Subscription")]

    def test_a_text_message_is_ignored(self) -> None:
        text = "Successfully validated SNS topic for Amazon SES event publishing."
        assert normalize(signed(text)) == [Ignored(provider="ses", provider_type="Notification")]

    def test_the_subscription_confirmation_is_a_notice(self) -> None:
        raw = (SAMPLES / "sns_subscription_confirmation.json").read_bytes()
        [ignored] = normalize(raw)
        assert isinstance(ignored, Ignored)
        assert ignored.provider_type == "SubscriptionConfirmation"
        assert ignored.notice is not None
        assert json.loads(raw)["SubscribeURL"] in ignored.notice
        assert json.loads(raw)["TopicArn"] in ignored.notice

    def test_the_unsubscribe_confirmation_is_a_notice(self) -> None:
        [ignored] = normalize((SAMPLES / "sns_unsubscribe_confirmation.json").read_bytes())
        assert isinstance(ignored, Ignored)
        assert ignored.provider_type == "UnsubscribeConfirmation"
        assert ignored.notice is not None
        assert "unsubscribed from arn:aws:sns:us-west-2:123456789012:MyTopic" in ignored.notice

    @pytest.mark.parametrize(
        ("message", "field"),
        [
            ({"eventType": "Bounce"}, "Message.mail"),
            ({"eventType": "Bounce", "mail": {}}, "Message.mail.messageId"),
            ({"mail": {"messageId": "m"}}, "Message.eventType"),
            ({"eventType": "Bounce", "mail": {"messageId": "m"}}, "Message.bounce"),
            (
                {"eventType": "Open", "mail": {"messageId": "m"}, "open": {"timestamp": "soon"}},
                "Message.open.timestamp",
            ),
            (
                {"eventType": "Delivery", "mail": {"messageId": "m", "tags": []}},
                "Message.mail.tags",
            ),
        ],
    )
    def test_invalid_events_name_the_field(self, message: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(signed(message))
        assert info.value.field == field

    @pytest.mark.parametrize(
        ("message", "field"),
        [
            ({"MessageId": "m"}, "Type"),
            ({"Type": "Notification"}, "MessageId"),
            ({"Type": "Other"}, "Type"),
        ],
    )
    def test_invalid_messages_name_the_field(self, message: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidPayload) as info:
            normalize(json.dumps(message).encode())
        assert info.value.field == field


class TestProvider:
    provider = BY_NAME["ses"]

    def test_detected_by_the_sns_header(self) -> None:
        assert self.provider.detects({"x-amz-sns-message-type": "Notification"}, b"")
        assert not self.provider.detects({}, signed())

    @pytest.mark.parametrize(
        ("media_type", "accepted"),
        [
            ("text/plain", True),
            ("application/json", True),
            ("application/x-www-form-urlencoded", False),
            ("", False),
        ],
    )
    def test_media_types(self, media_type: str, accepted: bool) -> None:
        assert self.provider.accepts_media_type(media_type) is accepted

    def test_verify_alone_always_refuses(self) -> None:
        with pytest.raises(InvalidSignature, match="SigningCertURL"):
            self.provider.verify(signed(), {}, "", now=NOW.timestamp())

    def test_the_protocol_methods(self) -> None:
        body = signed()
        now = NOW.timestamp()
        assert self.provider.signing_key_url(body, {}, "", now=now) == SIGNER.cert_url
        self.provider.verify_with_key(body, {}, "", SIGNER.certificate, now=now)
        assert self.provider.tolerance_seconds == 7200


def test_the_signer_signs_as_sns() -> None:
    """The test signer's SHA1 signature, checked with `cryptography` directly."""
    message = SIGNER.notification("x", NOW)
    key = x509.load_pem_x509_certificate(SIGNER.certificate).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(
        base64.b64decode(message["Signature"]),
        sns_string_to_sign(message),
        padding.PKCS1v15(),
        hashes.SHA1(),  # noqa: S303
    )
