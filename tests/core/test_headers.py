from __future__ import annotations

import pytest

from service.core.headers import (
    MAX_HEADERS,
    InvalidHeader,
    check_headers,
    decode_headers,
    encode_headers,
)


class TestCheckHeaders:
    def test_accepts_tokens_and_visible_values_in_order(self) -> None:
        headers = {"Authorization": "Bearer abc.def", "X-Tenant": " acme ", "x_odd~name": "a\tb"}
        assert check_headers(headers) == (
            ("Authorization", "Bearer abc.def"),
            ("X-Tenant", "acme"),
            ("x_odd~name", "a\tb"),
        )
        assert check_headers({}) == ()

    @pytest.mark.parametrize(
        "name",
        [
            "Content-Type",
            "content-length",
            "Host",
            "User-Agent",
            "X-Webhook-Signature",
            "webhook-id",
            "Webhook-Timestamp",
            "webhook-signature",
            "webhook-anything-new",
            "Accept-Encoding",
            "Content-Encoding",
        ],
    )
    def test_refuses_what_every_delivery_sets(self, name: str) -> None:
        with pytest.raises(InvalidHeader, match="set by every delivery") as info:
            check_headers({name: "x"})
        assert info.value.field == f"headers.{name}"

    @pytest.mark.parametrize(
        "name",
        [
            "Connection",
            "Keep-Alive",
            "Proxy-Authorization",
            "proxy-connection",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
        ],
    )
    def test_refuses_hop_by_hop(self, name: str) -> None:
        with pytest.raises(InvalidHeader, match="hop-by-hop") as info:
            check_headers({name: "x"})
        assert info.value.field == f"headers.{name}"

    @pytest.mark.parametrize("name", ["", "X Foo", "X-Foo:", "X-Föö", "X-Foo\r\nX-Bar", "a" * 257])
    def test_refuses_invalid_names(self, name: str) -> None:
        with pytest.raises(InvalidHeader, match="not a valid HTTP header name") as info:
            check_headers({name: "x"})
        assert info.value.field == f"headers.{name}"

    @pytest.mark.parametrize(
        "value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "nul\x00", "é", "\x7f"]
    )
    def test_refuses_values_that_could_break_the_request(self, value: str) -> None:
        with pytest.raises(InvalidHeader, match="visible ASCII") as info:
            check_headers({"X-Foo": value})
        assert info.value.field == "headers.X-Foo"

    def test_refuses_a_name_twice_in_any_case(self) -> None:
        with pytest.raises(InvalidHeader, match="twice") as info:
            check_headers({"X-Foo": "1", "x-foo": "2"})
        assert info.value.field == "headers.x-foo"

    def test_limits(self) -> None:
        check_headers({f"X-H{n}": "v" for n in range(MAX_HEADERS)})
        with pytest.raises(InvalidHeader, match="at most 20") as info:
            check_headers({f"X-H{n}": "v" for n in range(MAX_HEADERS + 1)})
        assert info.value.field == "headers"
        check_headers({"X-A": "v" * 4000, "X-B": "v" * 4000})
        with pytest.raises(InvalidHeader, match="8192 bytes") as info:
            check_headers({"X-A": "v" * 4000, "X-B": "v" * 4000, "X-C": "v" * 200})
        assert info.value.field == "headers.X-C"

    def test_messages_never_carry_values(self) -> None:
        with pytest.raises(InvalidHeader) as info:
            check_headers({"X-Foo": "token-s3cret\n"})
        assert "s3cret" not in str(info.value)


class TestEncoding:
    def test_round_trip(self) -> None:
        headers = (("Authorization", "Bearer x"), ("X-Quote", 'say "hi"'))
        assert decode_headers(encode_headers(headers)) == headers
        assert encode_headers(()) == ""
        assert decode_headers("") == ()
