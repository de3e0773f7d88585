from __future__ import annotations

import httpx
import pytest

from service.core.errors import InvalidPayload
from service.providers import forms
from service.providers.forms import Form


def parse(body: bytes) -> Form:
    return forms.parse(body, provider="test")


class TestUrlencoded:
    def test_fields_in_order_with_repeats(self) -> None:
        form = parse(b"a=1&b=%C3%A9+x&a=2&empty=&bare")
        assert form.fields == (("a", "1"), ("b", "é x"), ("a", "2"), ("empty", ""), ("bare", ""))
        assert (form.first("a"), form.last("a"), form.all("a")) == ("1", "2", ["1", "2"])
        assert (form.first("nope"), form.last("nope"), form.all("nope")) == (None, None, [])
        assert form.names() == ["a", "b", "empty", "bare"]

    def test_empty(self) -> None:
        assert parse(b"").fields == ()

    @pytest.mark.parametrize("body", [b"a=\xff", b"a=%ff", b"%c3=1", b"&" * (forms.MAX_FIELDS + 1)])
    def test_refused(self, body: bytes) -> None:
        with pytest.raises(InvalidPayload, match=r"^test body is not a form"):
            parse(body)


def httpx_multipart(data: dict[str, str], files: dict[str, bytes] | None = None) -> bytes:
    """Encoded by httpx, independently of the parser under test."""
    request = httpx.Request("POST", "https://example.com", data=data, files=files or None)
    return request.read()


class TestMultipart:
    def test_an_encoding_of_httpx(self) -> None:
        body = httpx_multipart({"event": "opened", "note": "zoë\r\nline"}, {"attachment-1": b"x"})
        assert parse(body).fields == (("event", "opened"), ("note", "zoë\r\nline"))

    def test_headers_charset_and_rfc2231_names(self) -> None:
        body = (
            b"--B\r\n"
            b'Content-Disposition: form-data; name="latin"\r\n'
            b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\n"
            b"caf\xe9\r\n"
            b"--B\r\n"
            b"Content-Disposition: form-data; name*=utf-8''%C3%A9t%C3%A9\r\n\r\n"
            b"summer\r\n"
            b"--B\r\n"
            b'Content-Disposition: form-data; name="hiver \xe2\x9d\x84"\r\n\r\n'
            b"winter\r\n"
            b"--B--\r\nepilogue"
        )
        assert parse(body).fields == (("latin", "café"), ("été", "summer"), ("hiver ❄", "winter"))

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"--\r\n", "must open with --boundary"),
            (b"--B", "must open with --boundary"),
            (b"--" + b"b" * 71 + b"\r\n", "must open with --boundary"),
            (b"--B\r\nno blank line", "has no headers"),
            (b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n1', "no closing boundary"),
            (b"--B\r\nContent-Type: text/plain\r\n\r\n1\r\n--B--", "is not form-data"),
            (b"--B\r\nContent-Disposition: form-data\r\n\r\n1\r\n--B--", "has no name"),
            (
                b'--B\r\nContent-Disposition: form-data; name="\xff"\r\n\r\n1\r\n--B--',
                "headers are not UTF-8",
            ),
            (
                b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\r\n--B--',
                "is not text",
            ),
            (
                b'--B\r\nContent-Disposition: form-data; name="a"\r\n'
                b"Content-Type: text/plain; charset=nope\r\n\r\n1\r\n--B--",
                "is not text",
            ),
        ],
    )
    def test_refused(self, body: bytes, reason: str) -> None:
        with pytest.raises(InvalidPayload, match=reason):
            parse(body)

    def test_too_many_fields(self) -> None:
        part = b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        with pytest.raises(InvalidPayload, match="more than"):
            parse(part * (forms.MAX_FIELDS + 1) + b"--B--")


@pytest.mark.parametrize(
    ("headers", "media_type"),
    [
        ({}, ""),
        ({"content-type": "Multipart/Form-Data; boundary=x"}, "multipart/form-data"),
        (
            {"content-type": " application/x-www-form-urlencoded "},
            "application/x-www-form-urlencoded",
        ),
    ],
)
def test_media_type(headers: dict[str, str], media_type: str) -> None:
    assert forms.media_type(headers) == media_type
