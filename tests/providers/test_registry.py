"""The provider registry: every registered provider gets a route, an OpenAPI operation, a
config variable and a start-up check, and so does a provider added to a copy of it."""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from redis.asyncio import Redis
from starlette.routing import Route

from config import Config, ConfigError
from service.app import check_inbound_secrets, create_app
from service.app import routes as app_routes
from service.core.errors import InvalidSignature
from service.core.models import Event
from service.core.normalized import Ignored, Normalized
from service.http.inbound import inbound_paths, inbound_routes
from service.http.openapi import build_spec, operations
from service.providers.base import Provider, header
from service.providers.detect import detect
from service.providers.registry import BY_NAME, PROVIDERS, by_name
from service.storage import keys
from service.storage.events import seen_digest
from tests import REPO
from tests.cert_server import CertServer
from tests.conftest import API_KEY, FIXED_NOW, serve


@dataclass(frozen=True)
class Fake:
    """A provider the registry has never heard of, implementing `Provider` structurally."""

    name: str = "fake"
    secret_variable: str = "FAKE_WEBHOOK_SECRET"
    summary: str = "Fake events (test-signed)"
    tolerance_seconds: int = 60
    replay_token_field: str = "token"
    url_variable: str | None = None

    def accepts_media_type(self, media_type: str) -> bool:
        return media_type == "application/json"

    def check_secret(self, secret: str) -> None:
        if not secret.startswith("fake_"):
            raise InvalidSignature("the fake secret does not start with fake_")

    def read_secret(self, variable: Callable[[str], str]) -> str:
        return variable(self.secret_variable)

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
        if header(headers, "x-fake-signature") != secret:
            raise InvalidSignature("x-fake-signature does not match")

    def verify_request(
        self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float, url: str
    ) -> None:
        self.verify(body, headers, secret, now=now)

    def is_probe(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return body == b"ping"

    def signing_key_url(
        self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float
    ) -> str | None:
        return None

    def verify_with_key(
        self, body: bytes, headers: Mapping[str, str], secret: str, key: bytes, *, now: float
    ) -> None:
        raise InvalidSignature("the fake signs with its secret")

    def normalize(
        self, body: bytes, headers: Mapping[str, str], *, received_at: str
    ) -> list[Normalized]:
        data = json.loads(body)
        event = Event(
            type="email.open",
            email_id=data["email"],
            occurred_at=received_at,
            provider=self.name,
            provider_event_id=data["id"],
        )
        return [event]

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        return header(headers, "x-fake-signature") is not None

    def replay_token(self, body: bytes) -> str | None:
        token: str | None = json.loads(body).get("token")
        return token


FAKE = Fake()
FAKE_SECRET = "fake_secret"
# The fake inserted before the fallback, which stays last.
WITH_FAKE: tuple[Provider, ...] = (*PROVIDERS[:-1], FAKE, PROVIDERS[-1])
REGISTRIES = pytest.mark.parametrize("providers", [PROVIDERS, WITH_FAKE], ids=["real", "fake"])
# A secret each provider's `check_secret` refuses, for those that check.
MALFORMED = {
    "resend": "whsec_!!",
    "sendgrid": "not-a-key",
    "postmark": "no-colon",
    "sparkpost": ":no-user",
    "mailjet": "no-colon",
    "brevo": "no-colon",
    "ses": "arn:aws:sns:us-west-2:123456789012:ok,not-an-arn",
    "postal": "not-a-key",
    "fake": "wrong",
}


EVERY = pytest.mark.parametrize(
    ("providers", "provider"),
    [(providers, provider) for providers in (PROVIDERS, WITH_FAKE) for provider in providers],
    ids=[f"real-{p.name}" for p in PROVIDERS] + [f"fake-{p.name}" for p in WITH_FAKE],
)


def path_of(provider: Provider, providers: Sequence[Provider]) -> str:
    return "/api/webhooks" if provider is providers[-1] else f"/api/webhooks/{provider.name}"


class TestRegistry:
    def test_names_and_secret_variables_are_unique(self) -> None:
        assert len({p.name for p in PROVIDERS}) == len(PROVIDERS)
        assert len({p.secret_variable for p in PROVIDERS}) == len(PROVIDERS)
        assert set(BY_NAME) == {p.name for p in PROVIDERS}

    def test_keeps_the_variable_names(self) -> None:
        assert {p.name: p.secret_variable for p in PROVIDERS} == {
            "resend": "RESEND_WEBHOOK_SECRET",
            "sendgrid": "SENDGRID_WEBHOOK_PUBLIC_KEY",
            "mailersend": "MAILERSEND_WEBHOOK_SECRET",
            "mandrill": "MANDRILL_WEBHOOK_KEY",
            "mailgun": "MAILGUN_WEBHOOK_SIGNING_KEY",
            "postmark": "POSTMARK_WEBHOOK_BASIC_AUTH",
            "sparkpost": "SPARKPOST_WEBHOOK_BASIC_AUTH",
            "mailjet": "MAILJET_WEBHOOK_BASIC_AUTH",
            "brevo": "BREVO_WEBHOOK_BASIC_AUTH",
            "ses": "SES_TOPIC_ARNS",
            "postal": "POSTAL_WEBHOOK_PUBLIC_KEY",
            "generic": "INBOUND_SECRET",
        }
        assert {p.name: p.url_variable for p in PROVIDERS if p.url_variable} == {
            "mandrill": "MANDRILL_WEBHOOK_URL"
        }

    @pytest.mark.parametrize(
        "clash",
        [
            dataclasses.replace(FAKE, name="resend"),
            dataclasses.replace(FAKE, secret_variable="INBOUND_SECRET"),
        ],
        ids=["name", "variable"],
    )
    def test_by_name_refuses_a_clash(self, clash: Fake) -> None:
        with pytest.raises(ValueError, match="its own name and its own secret variable"):
            by_name((*PROVIDERS, clash))

    @REGISTRIES
    def test_the_fallback_is_last_and_takes_anything(self, providers: Sequence[Provider]) -> None:
        assert providers[-1].name == "generic"
        assert detect({}, b"", providers) is providers[-1]
        assert detect({}, b"\x00 not json", providers) is providers[-1]

    def test_the_fake_is_detected_in_its_place(self) -> None:
        headers = {"x-fake-signature": "x"}
        assert detect(headers, b"{}", WITH_FAKE) is FAKE
        assert detect(headers, b"{}", PROVIDERS).name == "generic"
        # Earlier providers still win: Svix headers are Resend's.
        assert detect({**headers, "svix-id": "msg_1"}, b"{}", WITH_FAKE).name == "resend"


class TestDerived:
    @EVERY
    def test_a_route(self, providers: Sequence[Provider], provider: Provider) -> None:
        routes = {
            route.path: route for route in inbound_routes(providers) if isinstance(route, Route)
        }
        route = routes[path_of(provider, providers)]
        assert route.methods is not None
        assert "POST" in route.methods
        assert len(routes) == len(providers)

    @EVERY
    def test_an_openapi_operation(self, providers: Sequence[Provider], provider: Provider) -> None:
        spec = build_spec(operations(providers))
        operation = spec["paths"][path_of(provider, providers)]["post"]
        assert provider.summary in operation["summary"]
        assert operation["security"] == []
        assert set(operation["responses"]) == {"200", "401", "403", "413", "422", "503"}

    def test_the_openapi_document_with_a_fake_is_valid(self) -> None:
        validate(build_spec(operations(WITH_FAKE)))  # the real one: tests/test_openapi.py

    @EVERY
    def test_a_config_variable(self, providers: Sequence[Provider], provider: Provider) -> None:
        config = Config.from_env({provider.secret_variable: " s3cret-value "}, providers)
        assert config.provider_secrets == {provider.name: "s3cret-value"}
        assert f"inbound_secrets=<{provider.name}>" in repr(config)
        assert "s3cret-value" not in repr(config)

    @REGISTRIES
    def test_unset_and_blank_variables_configure_nothing(
        self, providers: Sequence[Provider]
    ) -> None:
        blank = {provider.secret_variable: "  " for provider in providers}
        assert Config.from_env(blank, providers).provider_secrets == {}
        assert "inbound_secrets=<none>" in repr(Config.from_env({}, providers))

    @pytest.mark.parametrize(
        "provider",
        [p for p in WITH_FAKE if p.name in MALFORMED],
        ids=lambda provider: provider.name,
    )
    def test_a_start_up_check_naming_the_variable(self, provider: Provider) -> None:
        config = Config(provider_secrets={provider.name: MALFORMED[provider.name]})
        with pytest.raises(ConfigError) as info:
            check_inbound_secrets(config, WITH_FAKE)
        assert str(info.value).startswith(f"{provider.secret_variable}: ")
        assert MALFORMED[provider.name] not in str(info.value)

    def test_a_signed_url_is_read_and_required_with_its_secret(self) -> None:
        url = "https://user:pw@hooks.example.com/api/webhooks/mandrill"
        env = {"MANDRILL_WEBHOOK_KEY": "key", "MANDRILL_WEBHOOK_URL": f" {url} "}
        config = Config.from_env(env)
        assert config.provider_urls == {"mandrill": url}
        assert "pw@" not in repr(config)
        check_inbound_secrets(config)
        without = Config.from_env({"MANDRILL_WEBHOOK_KEY": "key"})
        with pytest.raises(ConfigError, match=r"^MANDRILL_WEBHOOK_URL is required with"):
            check_inbound_secrets(without)
        check_inbound_secrets(Config.from_env({"MANDRILL_WEBHOOK_URL": url}))  # no key, no check

    @pytest.mark.parametrize("url", ["hooks.example.com/x", "ftp://h/x", "https:///x", "/x"])
    def test_a_signed_url_must_be_absolute(self, url: str) -> None:
        with pytest.raises(ConfigError, match=r"^MANDRILL_WEBHOOK_URL must be an absolute") as info:
            Config.from_env({"MANDRILL_WEBHOOK_URL": url})
        assert url not in str(info.value)

    def test_secrets_that_pass_their_check_start(self) -> None:
        config = Config.from_env(
            {"FAKE_WEBHOOK_SECRET": FAKE_SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": "any"}, WITH_FAKE
        )
        check_inbound_secrets(config, WITH_FAKE)

    def test_the_app_serves_the_registry(self) -> None:
        served = {
            route.path
            for route in app_routes
            if isinstance(route, Route) and (route.name or "").startswith("inbound")
        }
        assert served == {path for path, _ in inbound_paths()}


def fake_body(event_id: str, token: str) -> bytes:
    return json.dumps({"email": "msg_fake", "id": event_id, "token": token}).encode()


@pytest.mark.anyio
class TestFakeEndToEnd:
    """The inbound handler has no per-provider branch: the fake verifies, normalises, claims
    its replay token and is stored like any registered provider."""

    async def post(
        self, redis: Redis, secrets: dict[str, str], path: str, body: bytes, signature: str
    ) -> tuple[int, dict[str, object], list[dict[str, object]]]:
        app = create_app(
            Config(api_keys=(API_KEY,), provider_secrets=secrets),
            redis=redis,
            clock=lambda: FIXED_NOW,
        )
        app.router.routes[:0] = inbound_routes(WITH_FAKE)  # first match wins
        async with serve(app, {"Authorization": f"Bearer {API_KEY}"}) as client:
            response = await client.post(
                path,
                content=body,
                headers={"x-fake-signature": signature, "content-type": "application/json"},
            )
            stored = (await client.get("/api/events")).json()["events"]
        return response.status_code, response.json(), stored

    @pytest.mark.parametrize("path", ["/api/webhooks/fake", "/api/webhooks"])
    async def test_stored_under_its_name(self, fake_redis: Redis, path: str) -> None:
        status, answer, stored = await self.post(
            fake_redis, {"fake": FAKE_SECRET}, path, fake_body("e1", "t1"), FAKE_SECRET
        )
        assert (status, answer) == (200, {"received": True})
        assert [(e["provider"], e["provider_event_id"]) for e in stored] == [("fake", "e1")]
        ttl = await fake_redis.ttl(keys.token("fake", seen_digest("t1")))
        assert 0 < ttl <= FAKE.tolerance_seconds * 2

    @pytest.mark.parametrize("path", ["/api/webhooks/fake", "/api/webhooks"])
    async def test_its_probe_is_answered_unverified_and_stores_nothing(
        self, fake_redis: Redis, path: str
    ) -> None:
        status, answer, stored = await self.post(fake_redis, {}, path, b"ping", "unsigned")
        assert (status, answer, stored) == (200, {"received": True}, [])
        # Nothing but the default account, recorded when the app started.
        assert sorted(await fake_redis.keys("mh:*")) == [b"mh:account:acc_default", b"mh:accounts"]

    async def test_head_answers_on_every_inbound_url(self, fake_redis: Redis) -> None:
        app = create_app(Config(api_keys=(API_KEY,)), redis=fake_redis, clock=lambda: FIXED_NOW)
        app.router.routes[:0] = inbound_routes(WITH_FAKE)
        async with serve(app, {}) as client:
            for path, _ in inbound_paths(WITH_FAKE):
                response = await client.head(path)
                assert (response.status_code, response.content) == (200, b""), path

    async def test_wrong_signature(self, fake_redis: Redis) -> None:
        status, answer, stored = await self.post(
            fake_redis, {"fake": FAKE_SECRET}, "/api/webhooks/fake", fake_body("e1", "t1"), "x"
        )
        assert status == 401
        assert answer["error"] == {
            "code": "invalid_signature",
            "message": "x-fake-signature does not match",
        }
        assert stored == []

    async def test_a_reused_token_is_a_replay(self, fake_redis: Redis) -> None:
        secrets = {"fake": FAKE_SECRET}
        path = "/api/webhooks/fake"
        first = await self.post(fake_redis, secrets, path, fake_body("e1", "t1"), FAKE_SECRET)
        retry = await self.post(fake_redis, secrets, path, fake_body("e1", "t1"), FAKE_SECRET)
        forged = await self.post(fake_redis, secrets, path, fake_body("e2", "t1"), FAKE_SECRET)
        assert (first[0], retry[0], forged[0]) == (200, 200, 401)
        assert forged[1]["error"] == {
            "code": "invalid_signature",
            "message": "token was already used for another event",
        }
        assert [e["provider_event_id"] for e in forged[2]] == ["e1"]

    async def test_without_its_secret_names_its_variable(self, fake_redis: Redis) -> None:
        status, answer, stored = await self.post(
            fake_redis, {}, "/api/webhooks/fake", fake_body("e1", "t1"), FAKE_SECRET
        )
        assert status == 401
        assert answer["error"] == {
            "code": "invalid_signature",
            "message": "fake events are refused: set FAKE_WEBHOOK_SECRET to verify them",
        }
        assert stored == []


@dataclass(frozen=True)
class Published(Fake):
    """A fake that signs with a key it publishes, as SNS does: `x-fake-key-url` says where, and
    the signature must be the document there. Its unsubscribes carry a notice."""

    name: str = "published"
    secret_variable: str = "PUBLISHED_ALLOWED"

    def signing_key_url(
        self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float
    ) -> str | None:
        url = header(headers, "x-fake-key-url")
        if url is None:
            raise InvalidSignature("missing x-fake-key-url")
        return url

    def verify_with_key(
        self, body: bytes, headers: Mapping[str, str], secret: str, key: bytes, *, now: float
    ) -> None:
        if header(headers, "x-fake-signature") != key.decode():
            raise InvalidSignature("x-fake-signature is not the published key")

    def normalize(
        self, body: bytes, headers: Mapping[str, str], *, received_at: str
    ) -> list[Normalized]:
        if json.loads(body).get("unsubscribed"):
            return [Ignored(provider=self.name, provider_type="gone", notice="we were dropped")]
        return super().normalize(body, headers, received_at=received_at)


PUBLISHED = Published()


@pytest.mark.anyio
class TestPublishedKeyEndToEnd:
    """A provider with a `signing_key_url` is verified with the key the edge fetches, from an
    allowed URL only, whether its variable is set or not; its notices are logged."""

    @pytest.fixture
    def server(self) -> Iterator[CertServer]:
        with CertServer() as server:
            yield server

    async def post(
        self, redis: Redis, server: CertServer, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, object], list[dict[str, object]]]:
        config = Config(api_keys=(API_KEY,), sns_cert_url_pattern=server.pattern)
        app = create_app(config, redis=redis, clock=lambda: FIXED_NOW)
        app.router.routes[:0] = inbound_routes((PUBLISHED, PROVIDERS[-1]))
        async with serve(app, {"Authorization": f"Bearer {API_KEY}"}) as client:
            response = await client.post(
                "/api/webhooks/published",
                content=body,
                headers={"content-type": "application/json", **headers},
            )
            stored = (await client.get("/api/events")).json()["events"]
        return response.status_code, response.json(), stored

    async def test_verified_with_the_published_key_without_a_secret(
        self, fake_redis: Redis, server: CertServer
    ) -> None:
        url = server.serve("/key.pem", b"published-key")
        headers = {"x-fake-key-url": url, "x-fake-signature": "published-key"}
        for event_id in ("e1", "e2"):
            body = fake_body(event_id, f"t-{event_id}")
            assert (await self.post(fake_redis, server, body, headers))[0] == 200
        stored = (await self.post(fake_redis, server, fake_body("e3", "t-e3"), headers))[2]
        assert [e["provider_event_id"] for e in stored] == ["e3", "e2", "e1"]
        assert server.requested == ["/key.pem"] * 3  # one fetch per app, each its own cache

    @pytest.mark.parametrize(
        ("path", "signature", "status", "code"),
        [
            ("/key.pem", "forged", 401, "invalid_signature"),
            ("/missing.pem", "published-key", 401, "invalid_signature"),
            ("/failing.pem", "published-key", 503, "signing_key_unavailable"),
            ("/key.txt", "published-key", 401, "invalid_signature"),
        ],
    )
    async def test_refusals(
        self,
        fake_redis: Redis,
        server: CertServer,
        path: str,
        signature: str,
        status: int,
        code: str,
    ) -> None:
        server.serve("/key.pem", b"published-key")
        server.serve("/key.txt", b"published-key")
        server.serve("/failing.pem", b"down", status=502)
        headers = {"x-fake-key-url": server.url(path), "x-fake-signature": signature}
        answer = await self.post(fake_redis, server, fake_body("e1", "t"), headers)
        assert (answer[0], answer[1]["error"]["code"]) == (status, code)  # type: ignore[index]
        assert answer[2] == []
        if path.endswith(".txt"):
            assert server.requested == []  # not an allowed URL: never fetched

    async def test_a_notice_is_logged(
        self, fake_redis: Redis, server: CertServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        headers = {
            "x-fake-key-url": server.serve("/key.pem", b"published-key"),
            "x-fake-signature": "published-key",
        }
        body = json.dumps({"unsubscribed": True}).encode()
        status, _, stored = await self.post(fake_redis, server, body, headers)
        assert (status, stored) == (200, [])
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelname == "WARNING" and r.name == "mailhooks.inbound"
        ]
        assert warnings == ["inbound published: we were dropped"]


ALLOWED_IMPORTS = ("service.core", "service.providers", "msgspec", "cryptography")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    "path",
    sorted((REPO / "service" / "providers").glob("*.py")),
    ids=lambda path: path.name,
)
def test_providers_import_only_the_core_and_pure_libraries(path: Path) -> None:
    """Providers are pure: no HTTP, no Redis, no storage; the registry's consumers import
    them, never the other way round."""
    outside = {
        module
        for module in imported_modules(path)
        if module.split(".")[0] not in sys.stdlib_module_names
        and not any(module == a or module.startswith(a + ".") for a in ALLOWED_IMPORTS)
    }
    assert outside == set()
