"""The providers that authenticate with basic auth (Postmark, SparkPost, Mailjet) or basic auth
or a bearer token (Brevo), through HTTP, with Redis state checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from config import Config, ConfigError
from service.app import create_app
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.models import Event
from service.providers import brevo
from service.providers.registry import BY_NAME
from service.storage import keys
from tests import FIXTURES
from tests.conftest import API_KEY, MakeClient
from tests.http.test_inbound import post_on_fresh_app
from tests.signers import basic_auth, bearer

pytestmark = pytest.mark.anyio

SAMPLES = FIXTURES / "providers"
PROVIDERS = ("postmark", "sparkpost", "mailjet", "brevo")
PASSWORDS = {name: f"{name}-pass:with colon" for name in PROVIDERS}
BREVO_TOKEN = "brevo-token_123"
SECRETS = {
    **{name: f"{name}:{PASSWORDS[name]}" for name in PROVIDERS[:3]},
    "brevo": brevo.combine_secret(f"brevo:{PASSWORDS['brevo']}", BREVO_TOKEN),
}
VARIABLES = {
    "postmark": "POSTMARK_WEBHOOK_BASIC_AUTH",
    "sparkpost": "SPARKPOST_WEBHOOK_BASIC_AUTH",
    "mailjet": "MAILJET_WEBHOOK_BASIC_AUTH",
    "brevo": "BREVO_WEBHOOK_BASIC_AUTH",
}
BASIC_CHALLENGE = 'Basic realm="mailhooks"'


def credentials(provider: str) -> dict[str, str]:
    return basic_auth(provider, PASSWORDS[provider])


def sample(provider: str, name: str) -> bytes:
    return (SAMPLES / provider / name).read_bytes()


def sample_names(provider: str) -> list[str]:
    return sorted(path.name for path in (SAMPLES / provider).glob("*.json"))


EVERY_SAMPLE = [(provider, name) for provider in PROVIDERS for name in sample_names(provider)]


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config(provider_secrets=SECRETS)


@pytest.fixture
async def client(make_client: MakeClient, config: Config) -> httpx.AsyncClient:
    """An API client (its default Authorization is the API key: each inbound request sets
    its own)."""
    return await make_client(config)


@pytest.fixture
async def anonymous(make_client: MakeClient, config: Config) -> httpx.AsyncClient:
    """A client that sends no Authorization header of its own."""
    return await make_client(config, auth=False)


async def stored_events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/api/events", params={"limit": "1000"})
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events[::-1]  # oldest first


async def stream_length(redis: Redis) -> int:
    return int(await redis.xlen(keys.EVENTS_STREAM))


def assert_credentials_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE


class TestSamples:
    @pytest.mark.parametrize(("provider", "name"), EVERY_SAMPLE)
    async def test_stored_as_normalised(
        self, client: httpx.AsyncClient, provider: str, name: str
    ) -> None:
        body = sample(provider, name)
        response = await client.post(
            f"/api/webhooks/{provider}", content=body, headers=credentials(provider)
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"received": True}
        normalized = BY_NAME[provider].normalize(body, {}, received_at="unused")
        # Stored once per provider event id (SparkPost's samples all share one).
        unique = {e.provider_event_id: e for e in reversed(normalized) if isinstance(e, Event)}
        expected = [
            {**msgspec.to_builtins(e), "account_id": DEFAULT_ACCOUNT}  # single-account mode
            for e in reversed(unique.values())
        ]
        stored = await stored_events(client)
        assert [{k: v for k, v in e.items() if k != "id"} for e in stored] == expected

    @pytest.mark.parametrize("provider", PROVIDERS)
    async def test_detected_on_the_shared_url(
        self, client: httpx.AsyncClient, provider: str
    ) -> None:
        names = [name for name in sample_names(provider) if name != "ping.json"]
        for name in names:
            response = await client.post(
                "/api/webhooks", content=sample(provider, name), headers=credentials(provider)
            )
            assert response.status_code == 200, (name, response.text)
        stored = await stored_events(client)
        assert stored
        assert {event["provider"] for event in stored} == {provider}


class TestBatches:
    async def test_a_sparkpost_batch(self, client: httpx.AsyncClient, fake_redis: Redis) -> None:
        names = ("bounce.json", "delay.json", "delivery.json", "injection.json", "ping.json")
        batch = [event for name in names for event in json.loads(sample("sparkpost", name))]
        body = json.dumps(batch).encode()
        for _ in range(2):  # SparkPost retries the whole batch: stored once
            response = await client.post(
                "/api/webhooks/sparkpost", content=body, headers=credentials("sparkpost")
            )
            assert response.json() == {"received": True}
        stored = await stored_events(client)
        assert [(e["type"], e["provider_event_id"]) for e in stored] == [
            ("email.bounce", "84345317653491230"),
            ("email.deferred", "84345317653675522"),
            ("email.delivered", "92356927693813856"),
        ]
        counts = await fake_redis.hgetall(keys.INBOUND_COUNTS)
        assert counts[b"sparkpost:stored"] == b"3"
        assert counts[b"sparkpost:duplicate"] == b"3"
        assert counts[b"sparkpost:ignored:injection"] == b"2"

    @pytest.mark.parametrize("body", [b'[{"msys": {}}]', b"[]"], ids=["ping", "empty"])
    async def test_sparkpost_pings_answer_200(
        self, client: httpx.AsyncClient, fake_redis: Redis, body: bytes
    ) -> None:
        response = await client.post(
            "/api/webhooks/sparkpost", content=body, headers=credentials("sparkpost")
        )
        assert response.json() == {"received": True}
        assert await stream_length(fake_redis) == 0

    async def test_the_ping_on_the_shared_url(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/webhooks", content=b'[{"msys": {}}]', headers=credentials("sparkpost")
        )
        assert response.json() == {"received": True}

    async def test_a_mailjet_group_and_its_retry(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body = sample("mailjet", "grouped.json")
        for _ in range(2):
            response = await client.post(
                "/api/webhooks/mailjet", content=body, headers=credentials("mailjet")
            )
            assert response.json() == {"received": True}
        stored = await stored_events(client)
        assert [e["email_id"] for e in stored] == [
            "18858825588804172",
            "18858825588803684",
            "18014400413866302",
            "18858825588804459",
        ]
        assert await stream_length(fake_redis) == 4

    async def test_a_brevo_batch(self, client: httpx.AsyncClient) -> None:
        names = ("request.json", "delivered.json", "click.json", "hard_bounce.json")
        body = json.dumps([json.loads(sample("brevo", name)) for name in names]).encode()
        response = await client.post("/api/webhooks", content=body, headers=bearer(BREVO_TOKEN))
        assert response.json() == {"received": True}
        stored = await stored_events(client)
        assert [(e["provider"], e["type"]) for e in stored] == [
            ("brevo", "email.delivered"),
            ("brevo", "email.click"),
            ("brevo", "email.bounce"),
        ]

    async def test_a_postmark_retry_is_stored_once(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        for name in ("open.json", "open.json", "click.json", "click.json"):
            response = await client.post(
                "/api/webhooks/postmark",
                content=sample("postmark", name),
                headers=credentials("postmark"),
            )
            assert response.json() == {"received": True}
        assert await stream_length(fake_redis) == 2


class TestCredentials:
    @pytest.mark.parametrize("path", ["/api/webhooks/{provider}", "/api/webhooks"])
    @pytest.mark.parametrize("provider", PROVIDERS)
    @pytest.mark.parametrize(
        "make_headers",
        [
            pytest.param(lambda p: basic_auth(p, "wrong"), id="wrong-password"),
            pytest.param(lambda p: basic_auth("someone", PASSWORDS[p]), id="wrong-user"),
            pytest.param(lambda p: {"content-type": "application/json"}, id="missing"),
            pytest.param(lambda p: {"authorization": "Basic !!not base64"}, id="not-base64"),
            pytest.param(lambda p: {"authorization": "Basic"}, id="no-credentials"),
            pytest.param(lambda p: bearer("brevo-token_12"), id="wrong-bearer"),
            pytest.param(lambda p: {"authorization": PASSWORDS[p]}, id="no-scheme"),
        ],
    )
    async def test_refused_with_a_basic_challenge(
        self,
        anonymous: httpx.AsyncClient,
        fake_redis: Redis,
        path: str,
        provider: str,
        make_headers: Callable[[str], dict[str, str]],
    ) -> None:
        body = sample(provider, sample_names(provider)[0])
        response = await anonymous.post(
            path.format(provider=provider), content=body, headers=make_headers(provider)
        )
        assert_credentials_refused(response)
        assert PASSWORDS[provider] not in response.text
        assert await stream_length(fake_redis) == 0

    async def test_the_api_key_is_not_a_providers_credential(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        # The API client's own `Authorization: Bearer <API key>` goes to the inbound route.
        body = sample("postmark", "delivery.json")
        response = await client.post("/api/webhooks/postmark", content=body)
        assert_credentials_refused(response)
        assert API_KEY not in response.text
        assert await stream_length(fake_redis) == 0

    async def test_another_providers_credentials_are_refused(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        body = sample("mailjet", "sent.json")
        response = await client.post(
            "/api/webhooks/mailjet", content=body, headers=credentials("postmark")
        )
        assert_credentials_refused(response)
        assert await stream_length(fake_redis) == 0

    @pytest.mark.parametrize(
        "headers",
        [credentials("brevo"), bearer(BREVO_TOKEN)],
        ids=["basic", "bearer"],
    )
    async def test_brevo_takes_basic_auth_or_its_bearer_token(
        self, anonymous: httpx.AsyncClient, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        body = sample("brevo", "delivered.json")
        response = await anonymous.post("/api/webhooks/brevo", content=body, headers=headers)
        assert response.json() == {"received": True}
        assert [e["provider"] for e in await stored_events(client)] == ["brevo"]

    async def test_brevo_with_a_token_only_refuses_basic_auth(
        self, make_client: MakeClient, make_config: Callable[..., Config], fake_redis: Redis
    ) -> None:
        config = make_config(provider_secrets={"brevo": brevo.combine_secret("", BREVO_TOKEN)})
        client = await make_client(config, auth=False)
        body = sample("brevo", "delivered.json")
        response = await client.post(
            "/api/webhooks/brevo", content=body, headers=bearer(BREVO_TOKEN)
        )
        assert response.status_code == 200
        refused = await client.post(
            "/api/webhooks/brevo", content=body, headers=credentials("brevo")
        )
        assert_credentials_refused(refused)
        assert await stream_length(fake_redis) == 1

    async def test_a_body_that_is_not_json_is_415_once_authenticated(
        self, anonymous: httpx.AsyncClient
    ) -> None:
        body = sample("postmark", "delivery.json")
        headers = {**credentials("postmark"), "content-type": "text/plain"}
        response = await anonymous.post("/api/webhooks/postmark", content=body, headers=headers)
        assert response.status_code == 415


class TestUnconfigured:
    @pytest.mark.parametrize("provider", PROVIDERS)
    async def test_refused_unless_unsigned_inbound_is_allowed(
        self,
        make_client: MakeClient,
        make_config: Callable[..., Config],
        fake_redis: Redis,
        provider: str,
    ) -> None:
        body = sample(provider, sample_names(provider)[-1])
        strict = await make_client(make_config(), auth=False)
        response = await strict.post(
            f"/api/webhooks/{provider}", content=body, headers=credentials(provider)
        )
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "invalid_signature",
            "message": f"{provider} events are refused: set {VARIABLES[provider]} to verify them",
        }
        assert "www-authenticate" not in response.headers
        assert await stream_length(fake_redis) == 0

        lenient = await make_client(make_config(allow_unsigned_inbound=True), auth=False)
        headers = {"content-type": "application/json"}  # no credentials at all
        response = await lenient.post(f"/api/webhooks/{provider}", content=body, headers=headers)
        assert response.json() == {"received": True}


class TestConfiguration:
    def test_variables(self) -> None:
        config = Config.from_env(
            {
                "POSTMARK_WEBHOOK_BASIC_AUTH": " pm:pm-pass ",
                "SPARKPOST_WEBHOOK_BASIC_AUTH": "sp:sp-pass",
                "MAILJET_WEBHOOK_BASIC_AUTH": "mj:mj-pass",
                "BREVO_WEBHOOK_BASIC_AUTH": "bv:bv-pass",
                "BREVO_WEBHOOK_TOKEN": " tok-1 ",
            }
        )
        assert config.provider_secrets == {
            "postmark": "pm:pm-pass",
            "sparkpost": "sp:sp-pass",
            "mailjet": "mj:mj-pass",
            "brevo": "bv:bv-pass\0tok-1",
        }
        assert "-pass" not in repr(config)
        assert "tok-1" not in repr(config)
        assert Config.from_env({"BREVO_WEBHOOK_TOKEN": "tok-1"}).provider_secrets == {
            "brevo": "\0tok-1"
        }

    @pytest.mark.parametrize(
        ("variables", "message"),
        [
            ({"POSTMARK_WEBHOOK_BASIC_AUTH": "just-a-password"}, "POSTMARK_WEBHOOK_BASIC_AUTH: "),
            (
                {"SPARKPOST_WEBHOOK_BASIC_AUTH": ":just-a-password"},
                "SPARKPOST_WEBHOOK_BASIC_AUTH: ",
            ),
            ({"MAILJET_WEBHOOK_BASIC_AUTH": "just-a-password"}, "MAILJET_WEBHOOK_BASIC_AUTH: "),
            ({"BREVO_WEBHOOK_BASIC_AUTH": "just-a-password"}, "BREVO_WEBHOOK_BASIC_AUTH: "),
            ({"BREVO_WEBHOOK_TOKEN": "two words"}, "BREVO_WEBHOOK_TOKEN is malformed"),
        ],
    )
    def test_malformed_credentials_stop_start_up(
        self, variables: dict[str, str], message: str
    ) -> None:
        config = Config.from_env({"API_KEYS": API_KEY, **variables})
        with pytest.raises(ConfigError, match=message) as info:
            create_app(config)
        for value in variables.values():
            assert value not in str(info.value)


BODIES = [
    path.read_bytes()
    for provider in PROVIDERS
    for path in sorted((SAMPLES / provider).glob("*.json"))
    if path.stat().st_size < 20_000
]
PROVIDER_BODIES = {
    provider: {path.read_bytes() for path in (SAMPLES / provider).glob("*.json")}
    for provider in PROVIDERS
}
AUTHORIZATIONS = [
    *(credentials(provider)["authorization"] for provider in PROVIDERS),
    f"Bearer {BREVO_TOKEN}",
    "Basic",
    "Bearer",
    "Basic !!",
    "Basic AAAA",
    "Digest x",
]


@st.composite
def inbound_requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """Mostly plausible requests (a sample or a mutated one, the provider's credentials,
    JSON), so that most get past authentication; the rest anything."""
    provider = draw(st.sampled_from(PROVIDERS))
    path = draw(st.sampled_from(["", f"/{provider}"]))
    samples = [body for body in BODIES if body in PROVIDER_BODIES[provider]]
    body = draw(
        st.sampled_from(
            ["sample", "mutated", "mutated", "mutated", "wrapped", "other", "bytes", "bytes"]
        ).flatmap(
            lambda kind: {
                "sample": st.sampled_from(samples),
                "mutated": st.tuples(
                    st.sampled_from(samples), st.integers(0, 400), st.binary(max_size=8)
                ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]),
                "wrapped": st.sampled_from(samples).map(lambda b: b"[" + b + b"]"),
                "other": st.sampled_from(BODIES),
                "bytes": st.binary(max_size=300),
            }[kind]
        )
    )
    printable = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
    own = credentials(provider)["authorization"]
    authorization = draw(
        st.sampled_from(["own"] * 6 + ["known", "text", "none"]).flatmap(
            lambda kind: {
                "own": st.just(own),
                "known": st.sampled_from(AUTHORIZATIONS),
                "text": printable,
                "none": st.none(),
            }[kind]
        )
    )
    content_type = draw(
        st.sampled_from(["json"] * 6 + ["text", "none"]).flatmap(
            lambda kind: {
                "json": st.sampled_from(["application/json", "application/json; charset=utf-8"]),
                "text": printable,
                "none": st.none(),
            }[kind]
        )
    )
    headers = {}
    if authorization is not None:
        headers["authorization"] = authorization
    if content_type is not None:
        headers["content-type"] = content_type
    return f"/api/webhooks{path}", body, headers


class TestArbitraryInput:
    @pytest.mark.parametrize("configured", [True, False], ids=["configured", "unsigned-allowed"])
    def test_never_a_500(self, configured: bool) -> None:
        config = Config(
            api_keys=(API_KEY,),
            allow_unsigned_inbound=not configured,
            provider_secrets=SECRETS if configured else {},
        )

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(inbound_requests())
        def check(request: tuple[str, bytes, dict[str, str]]) -> None:
            path, body, headers = request

            response = post_on_fresh_app(config, path, body, headers)
            assert response.status_code in (200, 401, 413, 415, 422), response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json()
            if response.status_code == 401 and path != "/api/webhooks":
                challenge = response.headers.get("www-authenticate")
                assert challenge in (None, BASIC_CHALLENGE)

        check()
