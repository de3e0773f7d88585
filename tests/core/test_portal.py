"""service.core.portal: the portal link's token, signed and checked without a clock."""

from __future__ import annotations

import pytest

from service.core.portal import (
    InvalidLink,
    same_token,
    session_digest,
    sign_link,
    verify_link,
)

SECRET = "portal-secret-" + "x" * 32
NOW = 1_772_532_000


def token(**overrides: object) -> str:
    fields: dict[str, object] = {"account": "acc_1", "link_id": "ab" * 16, "expires_at": NOW + 600}
    fields.update(overrides)
    return sign_link(SECRET, **fields)  # type: ignore[arg-type]


class TestVerifyLink:
    def test_a_signed_token_gives_back_its_claims(self) -> None:
        claims = verify_link(SECRET, token(), now=NOW)
        assert (claims.a, claims.j, claims.e) == ("acc_1", "ab" * 16, NOW + 600)

    def test_expired_at_its_expiry(self) -> None:
        with pytest.raises(InvalidLink, match="expired"):
            verify_link(SECRET, token(), now=NOW + 600)
        verify_link(SECRET, token(), now=NOW + 599)

    def test_another_secret_is_refused(self) -> None:
        with pytest.raises(InvalidLink, match="not valid"):
            verify_link("another-secret-" + "y" * 32, token(), now=NOW)

    def test_changed_claims_are_refused(self) -> None:
        claims, _, signature = token().partition(".")
        other_claims, _, _ = token(account="acc_2").partition(".")
        with pytest.raises(InvalidLink, match="not valid"):
            verify_link(SECRET, f"{other_claims}.{signature}", now=NOW)
        assert claims != other_claims

    @pytest.mark.parametrize(
        "text", ["", "nodot", ".", "a.b", "!!.??", token() + "x", "x" * 2000 + "." + "y"]
    )
    def test_garbage_is_refused(self, text: str) -> None:
        with pytest.raises(InvalidLink):
            verify_link(SECRET, text, now=NOW)


class TestSession:
    def test_digest_hides_the_cookie(self) -> None:
        digest = session_digest("the-cookie")
        assert len(digest) == 64
        assert "the-cookie" not in digest
        assert session_digest("the-cookie") == digest

    def test_same_token(self) -> None:
        assert same_token("abc", "abc")
        assert not same_token("abc", "abd")
        assert not same_token("abc", None)
        assert not same_token("", "")
