"""Tracking tokens: what they carry, and that nothing else verifies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.tracking import (
    CLICK,
    OPEN,
    PIXEL_GIF,
    UNSUBSCRIBE,
    Claims,
    InvalidLink,
    LinkMaker,
    Signer,
    check_link,
    is_tracking_url,
    unsubscribe_headers,
)

KEY = "k" * 32
OTHER = "o" * 32
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def claims(kind: str = OPEN, url: str = "") -> Claims:
    return Claims(kind, "acc_0kx8q2m4n1a7b3c9d2e5", "msg_1", "Alex@Example.com", 1772532000, url)


def flip(token: str, position: int) -> str:
    char = ALPHABET[(ALPHABET.index(token[position]) + 1) % 64]
    return token[:position] + char + token[position + 1 :]


class TestSigner:
    def test_round_trip(self) -> None:
        signer = Signer([KEY])
        token = signer.sign(claims(CLICK, "https://shop.example.com/a?b=c"))
        found = signer.verify(token, CLICK)
        assert found is not None
        assert found.claims == claims(CLICK, "https://shop.example.com/a?b=c")
        again = signer.verify(token, CLICK)
        assert again is not None
        assert again.tag == found.tag

    def test_compact_and_url_safe(self) -> None:
        token = Signer([KEY]).sign(claims())
        assert set(token) <= set(ALPHABET)
        # 1 version byte, msgpack of the six fields (50 bytes of data), a 16-byte tag
        assert len(token) < 100

    def test_another_kind_is_refused(self) -> None:
        signer = Signer([KEY])
        token = signer.sign(claims(OPEN))
        assert signer.verify(token, CLICK) is None
        assert signer.verify(token, UNSUBSCRIBE) is None

    def test_a_foreign_key_is_refused(self) -> None:
        assert Signer([KEY]).verify(Signer([OTHER]).sign(claims()), OPEN) is None

    def test_rotation_the_first_signs_every_one_verifies(self) -> None:
        old_token = Signer([OTHER]).sign(claims())
        rotated = Signer([KEY, OTHER])
        assert rotated.verify(old_token, OPEN) is not None
        new_token = rotated.sign(claims())
        assert Signer([KEY]).verify(new_token, OPEN) is not None
        assert Signer([OTHER]).verify(new_token, OPEN) is None

    @pytest.mark.parametrize(
        "bad",
        ["", "A", "AQ", "not a token", "AQ==", "AQ+/", "x" * 7000, "é" * 10, "AQ.AQ"],
    )
    def test_garbage_is_refused(self, bad: str) -> None:
        assert Signer([KEY]).verify(bad, OPEN) is None

    def test_a_plus_or_slash_for_a_dash_or_underscore_is_refused(self) -> None:
        signer = Signer([KEY])
        token = next(
            t
            for n in range(100)
            if ("-" in (t := signer.sign(Claims(OPEN, "acc", f"m{n}", "a@b", n))))
        )
        assert signer.verify(token.replace("-", "+"), OPEN) is None

    def test_another_version_is_refused(self) -> None:
        raw = base64.urlsafe_b64decode(Signer([KEY]).sign(claims()) + "==")
        token = base64.urlsafe_b64encode(b"\x02" + raw[1:]).rstrip(b"=").decode()
        assert Signer([KEY]).verify(token, OPEN) is None

    @given(st.integers(min_value=0))
    def test_every_changed_character_is_refused(self, seed: int) -> None:
        signer = Signer([KEY])
        made = claims(CLICK, "https://example.com/")
        token = signer.sign(made)
        position = seed % len(token)
        found = signer.verify(flip(token, position), CLICK)
        # Only the last character may carry padding bits that decode to the same bytes.
        assert found is None or (position == len(token) - 1 and found.claims == made)

    @given(
        account=st.text(min_size=1, max_size=40),
        email_id=st.text(min_size=1, max_size=200),
        recipient=st.text(min_size=1, max_size=100),
        issued_at=st.integers(min_value=0, max_value=2**40),
    )
    def test_any_claims_round_trip(
        self, account: str, email_id: str, recipient: str, issued_at: int
    ) -> None:
        signer = Signer([KEY, OTHER])
        made = Claims(UNSUBSCRIBE, account, email_id, recipient, issued_at)
        found = signer.verify(signer.sign(made), UNSUBSCRIBE)
        assert found is not None
        assert found.claims == made

    @pytest.mark.parametrize("length", [32, 63, 64, 65, 200])
    def test_the_tag_is_hmac_sha256(self, length: int) -> None:
        key = "K" * length
        token = Signer([key]).sign(claims())
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        expected = hmac.new(key.encode(), raw[:-16], hashlib.sha256).digest()[:16]
        assert raw[-16:] == expected

    def test_needs_a_key(self) -> None:
        with pytest.raises(ValueError, match="at least one key"):
            Signer([])


class TestLinks:
    @pytest.mark.parametrize(
        "url",
        [
            "https://example.com",
            "http://example.com/a?b=1&c=2#frag",
            "HTTPS://EXAMPLE.COM/",
            "https://user@example.com/",
            "https://example.com:8443/x",
        ],
    )
    def test_accepted(self, url: str) -> None:
        assert check_link(url) == url

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("javascript:alert(1)", "absolute http"),
            ("/relative", "absolute http"),
            ("//example.com/", "absolute http"),
            ("ftp://example.com/", "absolute http"),
            ("mailto:a@example.com", "absolute http"),
            ("https://", "host"),
            ("https:///path", "host"),
            ("https://@/path", "host"),
            ("https://example.com/a b", "spaces"),
            ("https://example.com/\r\nSet-Cookie: x=1", "control"),
            ("https://example.com/" + "a" * 2100, "at most"),
        ],
    )
    def test_refused(self, url: str, message: str) -> None:
        with pytest.raises(InvalidLink, match=message):
            check_link(url)

    def test_beyond_ascii_is_percent_encoded(self) -> None:
        assert check_link("https://example.com/café?q=ü") == (
            "https://example.com/caf%C3%A9?q=%C3%BC"
        )

    def test_link_maker(self) -> None:
        signer = Signer([KEY])
        maker = LinkMaker(signer, "https://t.example.com", "acc_1", "msg_1", "a@b.c", 5)
        open_url, click_url = maker.open_url(), maker.click_url("https://x.example/")
        assert open_url.startswith("https://t.example.com/t/o/")
        assert click_url.startswith("https://t.example.com/t/c/")
        assert maker.unsubscribe_url().startswith("https://t.example.com/t/u/")
        found = signer.verify(click_url.rsplit("/", 1)[1], CLICK)
        assert found is not None
        assert found.claims == Claims(CLICK, "acc_1", "msg_1", "a@b.c", 5, "https://x.example/")
        assert is_tracking_url("https://t.example.com", click_url)
        assert not is_tracking_url("https://t.example.com", "https://x.example/")

    def test_unsubscribe_headers(self) -> None:
        assert unsubscribe_headers("https://t.example.com/t/u/AQ") == {
            "List-Unsubscribe": "<https://t.example.com/t/u/AQ>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }


def test_the_pixel_is_a_transparent_1x1_gif() -> None:
    assert PIXEL_GIF[:6] == b"GIF89a"
    assert struct.unpack("<HH", PIXEL_GIF[6:10]) == (1, 1)
    extension = PIXEL_GIF.index(b"\x21\xf9\x04")
    packed, transparent_index = PIXEL_GIF[extension + 3], PIXEL_GIF[extension + 6]
    assert packed & 1
    assert transparent_index == 0
    assert PIXEL_GIF.endswith(b";")
    assert len(PIXEL_GIF) == 43
