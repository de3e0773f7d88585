"""Amazon SES through SNS, through HTTP: the signing certificate is fetched from a real local
server (SNS_CERT_URL_PATTERN allows only it), and what is stored is read back from the API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from config import Config
from service.storage import keys
from tests import FIXTURES
from tests.cert_server import CertServer
from tests.conftest import API_KEY, FIXED_NOW, MakeClient
from tests.http.test_inbound import assert_refused, events, post_on_fresh_app, stored
from tests.signers import SNS_TOPIC, SnsSigner, sns_request, sns_timestamp

pytestmark = pytest.mark.anyio

SAMPLES = FIXTURES / "providers" / "amazon_ses"
CERT_PATH = "/SimpleNotificationService-test.pem"
EVENT_SAMPLES = sorted(p.name for p in SAMPLES.glob("*.json") if not p.name.startswith("sns_"))
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:someone-elses"


@pytest.fixture(scope="module")
def server() -> Iterator[CertServer]:
    with CertServer() as server:
        yield server


@pytest.fixture(scope="module")
def signer(server: CertServer) -> SnsSigner:
    signer = SnsSigner(cert_url=server.url(CERT_PATH))
    server.serve(CERT_PATH, signer.certificate)
    return signer


@pytest.fixture
def ses_config(make_config: Callable[..., Config], server: CertServer) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        return make_config(**{"sns_cert_url_pattern": server.pattern, **overrides})

    return make


@pytest.fixture
async def client(make_client: MakeClient, ses_config: Callable[..., Config]) -> httpx.AsyncClient:
    return await make_client(ses_config())


def notification(signer: SnsSigner, name: str, **fields: Any) -> tuple[bytes, dict[str, str]]:
    return sns_request(signer.notification((SAMPLES / name).read_text(), FIXED_NOW, **fields))


def without_ids(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != "id"}


class TestNotifications:
    @pytest.mark.parametrize("version", ["1", "2"])
    @pytest.mark.parametrize("name", EVENT_SAMPLES)
    async def test_each_sample_is_stored_as_documented(
        self, client: httpx.AsyncClient, signer: SnsSigner, name: str, version: str
    ) -> None:
        body, headers = notification(signer, name, version=version)
        response = await client.post("/api/webhooks/ses", content=body, headers=headers)
        assert response.json() == {"received": True}
        found = [without_ids(e) for e in await events(client)]
        ses_event = json.loads((SAMPLES / name).read_text())
        if name == "send.json":
            assert found == []
            return
        [event] = found
        assert event["provider"] == "ses"
        assert event["email_id"] == ses_event["mail"]["messageId"]
        assert event["provider_event_id"] == f"{json.loads(body)['MessageId']}:0"
        assert event.get("metadata") == ses_event["mail"].get("tags")
        assert (
            event["type"]
            == {
                "bounce_permanent.json": "email.bounce",
                "bounce_notification_format_with_dsn.json": "email.bounce",
                "complaint.json": "email.complaint",
                "complaint_notification_format.json": "email.complaint",
                "delivery.json": "email.delivered",
                "delivery_delay.json": "email.deferred",
                "open.json": "email.open",
                "click.json": "email.click",
                "reject.json": "email.rejected",
                "subscription_unsubscribe.json": "email.unsubscribe",
            }[name]
        )

    async def test_the_delivered_event_as_delivered_to_subscribers(
        self, client: httpx.AsyncClient, signer: SnsSigner
    ) -> None:
        body, headers = notification(signer, "delivery.json")
        assert (await client.post("/api/webhooks/ses", content=body, headers=headers)).is_success
        [event] = await events(client)
        assert without_ids(event) == {
            "type": "email.delivered",
            "email_id": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
            "occurred_at": "2016-10-19T23:21:04.133Z",
            "provider": "ses",
            "recipient": "recipient@example.com",
            "provider_event_id": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324:0",
            "metadata": json.loads((SAMPLES / "delivery.json").read_text())["mail"]["tags"],
            "mta_response": "250 2.6.0 Message received",
            "account_id": "acc_default",  # single-account mode: API_KEYS' account
        }

    async def test_several_recipients_are_distinct_events_and_retries_are_stored_once(
        self, client: httpx.AsyncClient, signer: SnsSigner, fake_redis: Redis
    ) -> None:
        delivery = json.loads((SAMPLES / "delivery.json").read_text())
        delivery["delivery"]["recipients"] = ["a@example.com", "b@example.com"]
        body, headers = sns_request(signer.notification(delivery, FIXED_NOW))
        for _ in range(3):  # SNS retries with the same MessageId (and signature)
            response = await client.post("/api/webhooks/ses", content=body, headers=headers)
            assert response.is_success
        assert sorted(e["recipient"] for e in await events(client)) == [
            "a@example.com",
            "b@example.com",
        ]
        counts = await fake_redis.hgetall(keys.INBOUND_COUNTS)
        assert counts[b"ses:stored"] == b"2"
        assert counts[b"ses:duplicate"] == b"4"

    async def test_detected_on_the_shared_url(
        self, client: httpx.AsyncClient, signer: SnsSigner
    ) -> None:
        body, headers = notification(signer, "open.json")
        assert (await client.post("/api/webhooks", content=body, headers=headers)).is_success
        [event] = await events(client)
        assert (event["provider"], event["type"]) == ("ses", "email.open")

    async def test_the_certificate_is_fetched_once(
        self, client: httpx.AsyncClient, signer: SnsSigner, server: CertServer
    ) -> None:
        before = server.requested.count(CERT_PATH)
        for n in range(5):
            body, headers = notification(signer, "open.json", message_id=f"message-{n}")
            assert (
                await client.post("/api/webhooks/ses", content=body, headers=headers)
            ).is_success
        assert server.requested.count(CERT_PATH) - before == 1
        assert len(await events(client)) == 5

    async def test_topics_in_the_allow_list_are_taken(
        self, make_client: MakeClient, ses_config: Callable[..., Config], signer: SnsSigner
    ) -> None:
        topics = f"{OTHER_TOPIC},{SNS_TOPIC}"
        client = await make_client(ses_config(provider_secrets={"ses": topics}))
        body, headers = notification(signer, "complaint.json")
        assert (await client.post("/api/webhooks/ses", content=body, headers=headers)).is_success
        assert [e["type"] for e in await events(client)] == ["email.complaint"]

    @pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
    async def test_media_types(
        self, client: httpx.AsyncClient, signer: SnsSigner, content_type: str
    ) -> None:
        body, headers = notification(signer, "open.json")
        headers["content-type"] = content_type
        assert (await client.post("/api/webhooks/ses", content=body, headers=headers)).is_success

    async def test_another_media_type_is_415(
        self, client: httpx.AsyncClient, signer: SnsSigner
    ) -> None:
        body, headers = notification(signer, "open.json")
        headers["content-type"] = "application/x-www-form-urlencoded"
        response = await client.post("/api/webhooks/ses", content=body, headers=headers)
        assert response.status_code == 415


class TestRefusals:
    async def test_a_tampered_body(
        self, client: httpx.AsyncClient, signer: SnsSigner, fake_redis: Redis
    ) -> None:
        body, headers = notification(signer, "bounce_permanent.json")
        tampered = body.replace(b"recipient@example.com", b"victim@example.com")
        assert tampered != body
        response = await client.post("/api/webhooks/ses", content=tampered, headers=headers)
        assert_refused(response)
        assert await stored(fake_redis) == 0

    async def test_a_certificate_of_another_key(
        self, client: httpx.AsyncClient, server: CertServer, fake_redis: Redis
    ) -> None:
        # An attacker's own key, its certificate served at an allowed URL that is not its own.
        forger = SnsSigner(cert_url=server.url(CERT_PATH))
        body, headers = sns_request(forger.notification("{}", FIXED_NOW))
        assert_refused(await client.post("/api/webhooks/ses", content=body, headers=headers))
        assert await stored(fake_redis) == 0

    async def test_a_certificate_url_that_is_not_allowed_is_never_fetched(
        self, client: httpx.AsyncClient, server: CertServer, fake_redis: Redis
    ) -> None:
        forger = SnsSigner(cert_url=server.url("/forger.crt"))
        server.serve("/forger.crt", forger.certificate)
        for cert_url in (
            server.url("/forger.crt"),
            f"http://localhost:{server.port}/forger.pem",
            "https://sns.us-west-2.amazonaws.com.example.net/forger.pem",
        ):
            forger.cert_url = cert_url
            body, headers = sns_request(forger.notification("{}", FIXED_NOW))
            response = await client.post("/api/webhooks/ses", content=body, headers=headers)
            assert_refused(response)
            assert "not allowed" in response.json()["error"]["message"]
        assert "/forger.crt" not in server.requested
        assert await stored(fake_redis) == 0

    async def test_a_topic_not_in_the_allow_list_is_403(
        self,
        make_client: MakeClient,
        ses_config: Callable[..., Config],
        signer: SnsSigner,
        fake_redis: Redis,
    ) -> None:
        client = await make_client(ses_config(provider_secrets={"ses": OTHER_TOPIC}))
        body, headers = notification(signer, "complaint.json")
        response = await client.post("/api/webhooks/ses", content=body, headers=headers)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
        assert SNS_TOPIC in response.json()["error"]["message"]
        assert await stored(fake_redis) == 0

    @pytest.mark.parametrize("hours", [-2.01, 2.01])
    async def test_a_stale_or_future_timestamp(
        self, client: httpx.AsyncClient, signer: SnsSigner, fake_redis: Redis, hours: float
    ) -> None:
        message = signer.notification("{}", FIXED_NOW + timedelta(hours=hours))
        body, headers = sns_request(message)
        assert_refused(await client.post("/api/webhooks/ses", content=body, headers=headers))
        assert await stored(fake_redis) == 0

    async def test_an_hour_old_retry_is_taken(
        self, client: httpx.AsyncClient, signer: SnsSigner
    ) -> None:
        message = signer.notification(
            (SAMPLES / "open.json").read_text(), FIXED_NOW - timedelta(hours=1)
        )
        body, headers = sns_request(message)
        assert (await client.post("/api/webhooks/ses", content=body, headers=headers)).is_success

    async def test_unsigned_is_refused_even_when_unsigned_inbound_is_allowed(
        self,
        make_client: MakeClient,
        ses_config: Callable[..., Config],
        signer: SnsSigner,
        fake_redis: Redis,
    ) -> None:
        client = await make_client(ses_config(allow_unsigned_inbound=True))
        message = signer.notification((SAMPLES / "open.json").read_text(), FIXED_NOW)
        del message["Signature"]
        body, headers = sns_request(message)
        assert_refused(await client.post("/api/webhooks/ses", content=body, headers=headers))
        assert await stored(fake_redis) == 0

    async def test_a_failing_certificate_host_is_a_503_the_provider_retries(
        self, make_client: MakeClient, ses_config: Callable[..., Config], server: CertServer
    ) -> None:
        signer = SnsSigner(cert_url=server.url("/flaky.pem"))
        server.serve("/flaky.pem", b"unavailable", status=503)
        client = await make_client(ses_config())
        body, headers = sns_request(
            signer.notification((SAMPLES / "open.json").read_text(), FIXED_NOW)
        )
        response = await client.post("/api/webhooks/ses", content=body, headers=headers)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "signing_key_unavailable"
        server.serve("/flaky.pem", signer.certificate)
        assert (await client.post("/api/webhooks/ses", content=body, headers=headers)).is_success


class TestSubscription:
    """Confirming is left to the operator: the web process logs the SubscribeURL as a warning
    and fetches nothing."""

    def confirmation(self, signer: SnsSigner, server: CertServer, kind: str) -> dict[str, Any]:
        name = {
            "SubscriptionConfirmation": "sns_subscription_confirmation.json",
            "UnsubscribeConfirmation": "sns_unsubscribe_confirmation.json",
        }[kind]
        message = json.loads((SAMPLES / name).read_text())
        message["Timestamp"] = sns_timestamp(FIXED_NOW)
        message["SubscribeURL"] = server.url("/?Action=ConfirmSubscription&Token=2336412f37")
        message["SigningCertURL"] = signer.cert_url
        return signer.sign(message)

    @pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
    async def test_logged_for_the_operator_not_confirmed(
        self,
        client: httpx.AsyncClient,
        signer: SnsSigner,
        server: CertServer,
        fake_redis: Redis,
        caplog: pytest.LogCaptureFixture,
        kind: str,
    ) -> None:
        message = self.confirmation(signer, server, kind)
        body, headers = sns_request(message)
        response = await client.post("/api/webhooks/ses", content=body, headers=headers)
        assert response.json() == {"received": True}
        assert await stored(fake_redis) == 0
        assert await fake_redis.hget(keys.INBOUND_COUNTS, f"ses:ignored:{kind}") == b"1"
        [warning] = [
            r.getMessage()
            for r in caplog.records
            if r.name == "mailhooks.inbound" and r.levelname == "WARNING"
        ]
        assert message["SubscribeURL"] in warning
        assert SNS_TOPIC in warning
        assert not [path for path in server.requested if "ConfirmSubscription" in path]

    async def test_a_forged_confirmation_is_refused_and_not_logged(
        self,
        client: httpx.AsyncClient,
        signer: SnsSigner,
        server: CertServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        message = self.confirmation(signer, server, "SubscriptionConfirmation")
        message["SubscribeURL"] = "https://attacker.example/confirm"
        body, headers = sns_request(message)
        assert_refused(await client.post("/api/webhooks/ses", content=body, headers=headers))
        assert "attacker.example" not in caplog.text

    async def test_a_confirmation_from_a_topic_not_allowed_is_403(
        self,
        make_client: MakeClient,
        ses_config: Callable[..., Config],
        signer: SnsSigner,
        server: CertServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        client = await make_client(ses_config(provider_secrets={"ses": OTHER_TOPIC}))
        body, headers = sns_request(self.confirmation(signer, server, "SubscriptionConfirmation"))
        response = await client.post("/api/webhooks/ses", content=body, headers=headers)
        assert response.status_code == 403
        assert "ConfirmSubscription" not in caplog.text


SIGNER_FOR_HYPOTHESIS = SnsSigner()


@st.composite
def sns_requests(draw: st.DrawFn, cert_url: str) -> tuple[str, bytes, dict[str, str]]:
    """Arbitrary bytes, JSON, SNS's samples and correctly signed messages, mangled or not,
    with SNS's headers, some of them changed."""
    SIGNER_FOR_HYPOTHESIS.cert_url = cert_url
    signed = [
        sns_request(SIGNER_FOR_HYPOTHESIS.notification((SAMPLES / name).read_text(), FIXED_NOW))[0]
        for name in ("bounce_permanent.json", "open.json", "send.json")
    ]
    samples = [(SAMPLES / name).read_bytes() for name in ("sns_notification_envelope.json",)]
    bodies = signed + samples
    body = draw(
        st.binary(max_size=300)
        | st.sampled_from(bodies)
        | st.tuples(st.sampled_from(bodies), st.integers(0, 2000), st.binary(max_size=8)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
        )
        | st.dictionaries(
            st.sampled_from(["Type", "MessageId", "Message", "Timestamp", "SignatureVersion"]),
            st.text(max_size=20),
        ).map(lambda d: json.dumps(d).encode())
    )
    overrides = draw(
        st.dictionaries(
            st.sampled_from(["x-amz-sns-message-type", "content-type", "x-amz-sns-message-id"]),
            st.sampled_from(["Notification", "application/json", "text/html", ""])
            | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
            max_size=2,
        )
    )
    headers = {
        "content-type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": "Notification",
    }
    path = draw(st.sampled_from(["/api/webhooks/ses", "/api/webhooks"]))
    return path, body, {**headers, **overrides}


class TestArbitraryInput:
    def test_never_a_500(self, server: CertServer) -> None:
        server.serve("/hypothesis.pem", SIGNER_FOR_HYPOTHESIS.certificate)
        config = Config(
            api_keys=(API_KEY,),
            sns_cert_url_pattern=server.pattern,
            provider_secrets={"ses": SNS_TOPIC},
        )

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(sns_requests(server.url("/hypothesis.pem")))
        def check(request: tuple[str, bytes, dict[str, str]]) -> None:
            path, body, headers = request

            response = post_on_fresh_app(config, path, body, headers)
            assert response.status_code in (200, 401, 403, 415, 422), response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json()

        check()
