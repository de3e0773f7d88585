"""The basic auth (and bearer token) checks shared by the providers that sign nothing."""

from __future__ import annotations

import base64

import pytest

from service.core.errors import InvalidCredentials, InvalidSignature
from service.providers import basic_auth
from service.providers.basic_auth import BasicAuthProvider
from tests.signers import basic_auth as basic_headers
from tests.signers import bearer

SECRET = "hooks:s3cret-pass"


def authorization(value: str) -> dict[str, str]:
    return {"authorization": value}


def encoded(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


class TestCheckCredentials:
    @pytest.mark.parametrize(
        "secret", [SECRET, "u:", "user:pass:with:colons", "üser:pässword", "a b:c d"]
    )
    def test_user_colon_password(self, secret: str) -> None:
        basic_auth.check_credentials(secret)

    @pytest.mark.parametrize(
        ("secret", "message"),
        [("no-colon", "there is no colon"), (":password", "the user is empty"), (":", "empty")],
    )
    def test_refused(self, secret: str, message: str) -> None:
        with pytest.raises(InvalidSignature, match=message):
            basic_auth.check_credentials(secret)


class TestCheckBearerToken:
    @pytest.mark.parametrize("token", ["abc", "A-b.c_d~e+f/g==", "0" * 64])
    def test_b64token(self, token: str) -> None:
        basic_auth.check_bearer_token(token)

    @pytest.mark.parametrize("token", ["with space", "tab\there", 'quote"', "é", "a=b", "=="])
    def test_refused(self, token: str) -> None:
        with pytest.raises(InvalidSignature, match="bearer token"):
            basic_auth.check_bearer_token(token)


class TestVerifyBasic:
    def test_accepts_the_credentials(self) -> None:
        basic_auth.verify_basic(basic_headers("hooks", "s3cret-pass"), SECRET)

    @pytest.mark.parametrize(
        "value",
        [
            encoded(SECRET.encode()),
            "basic " + base64.b64encode(SECRET.encode()).decode(),
            "BASIC  " + base64.b64encode(SECRET.encode()).decode() + " ",
        ],
        ids=["as-sent", "lower-case-scheme", "spaces"],
    )
    def test_scheme_is_case_insensitive_and_spaces_are_trimmed(self, value: str) -> None:
        basic_auth.verify_basic(authorization(value), SECRET)

    def test_utf8_credentials(self) -> None:
        secret = "üser:pässwörd"
        basic_auth.verify_basic(authorization(encoded(secret.encode())), secret)

    @pytest.mark.parametrize(
        ("headers", "message"),
        [
            (basic_headers("hooks", "wrong"), "do not match"),
            (basic_headers("other", "s3cret-pass"), "do not match"),
            (basic_headers("hooks", "s3cret-pass-and-more"), "do not match"),
            (basic_headers("hooks", "s3cret-pas"), "do not match"),
            (authorization(encoded(b"hooks")), "do not match"),
            (authorization(encoded(b"")), "not Basic credentials"),
            ({}, "missing Authorization"),
            (authorization(""), "missing Authorization"),
            (authorization("Basic"), "not Basic credentials"),
            (authorization("Basic !!!not-base64"), "not base64"),
            (authorization("Basic aG9va3M6czNjcmV0LXBhc3M"), "not base64"),  # unpadded
            (authorization("Bearer " + SECRET), "not Basic credentials"),
            (authorization("Digest username=hooks"), "not Basic credentials"),
            (authorization(SECRET), "not Basic credentials"),
            (bearer("hooks"), "not Basic credentials"),
        ],
        ids=[
            "wrong-password",
            "wrong-user",
            "longer",
            "shorter",
            "user-only",
            "empty-credentials",
            "missing",
            "blank",
            "scheme-only",
            "not-base64",
            "unpadded",
            "bearer",
            "digest",
            "no-scheme",
            "bearer-user",
        ],
    )
    def test_refused_with_a_basic_challenge(self, headers: dict[str, str], message: str) -> None:
        with pytest.raises(InvalidCredentials, match=message) as info:
            basic_auth.verify_basic(headers, SECRET)
        assert "s3cret" not in info.value.message
        assert info.value.code == "invalid_credentials"
        assert info.value.status == 401


class TestVerifyBearer:
    def test_accepts_the_token(self) -> None:
        basic_auth.verify_bearer(bearer("tok-123"), "tok-123")
        basic_auth.verify_bearer(authorization("bearer tok-123"), "tok-123")

    @pytest.mark.parametrize(
        ("headers", "message"),
        [
            (bearer("tok-124"), "does not match"),
            (bearer("tok-1234"), "does not match"),
            (authorization("Bearer"), "not Bearer credentials"),
            ({}, "missing Authorization"),
            (basic_headers("tok", "123"), "not Bearer credentials"),
            (authorization("Bearer tök-123"), "does not match"),
        ],
    )
    def test_refused(self, headers: dict[str, str], message: str) -> None:
        with pytest.raises(InvalidCredentials, match=message):
            basic_auth.verify_bearer(headers, "tok-123")


def test_authorization_scheme() -> None:
    assert basic_auth.authorization_scheme(bearer("t")) == "bearer"
    assert basic_auth.authorization_scheme(authorization("BASIC x")) == "basic"
    assert basic_auth.authorization_scheme({}) == ""


class Example(BasicAuthProvider):
    name = "example"
    secret_variable = "EXAMPLE_WEBHOOK_BASIC_AUTH"
    summary = "examples"


class TestBasicAuthProvider:
    PROVIDER = Example()

    def test_checks_the_secret_at_start_up(self) -> None:
        self.PROVIDER.check_secret(SECRET)
        with pytest.raises(InvalidSignature, match="no colon"):
            self.PROVIDER.check_secret("s3cret")

    def test_verifies_the_header_whatever_the_body_and_time(self) -> None:
        for body, now in ((b"", 0.0), (b"\xff not json", 1e12)):
            self.PROVIDER.verify(body, basic_headers("hooks", "s3cret-pass"), SECRET, now=now)
        with pytest.raises(InvalidCredentials):
            self.PROVIDER.verify(b"{}", {}, SECRET, now=0.0)

    def test_reads_its_one_variable(self) -> None:
        variables = {"EXAMPLE_WEBHOOK_BASIC_AUTH": SECRET, "OTHER": "x"}
        assert self.PROVIDER.read_secret(lambda name: variables.get(name, "")) == SECRET

    def test_no_replay_token(self) -> None:
        assert self.PROVIDER.replay_token(b"{}") is None
