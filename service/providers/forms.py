"""HTML form bodies, for the providers that post them (Mandrill, Mailgun's legacy webhooks): pure
parsing of `application/x-www-form-urlencoded` and `multipart/form-data` into ordered fields.

A multipart body is read with the boundary its first line opens with, so that a provider's
`verify`, `normalize` and `replay_token` read one body the same way from its bytes alone (the
replay token is taken without the headers). Every failure is InvalidPayload naming the provider.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value

from service.core.errors import InvalidPayload

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
MEDIA_TYPES = (URLENCODED, MULTIPART)
MAX_FIELDS = 1000
# RFC 2046: a boundary is 1 to 70 characters.
_MAX_BOUNDARY = 70
_HEADER_PARSER = HeaderParser(policy=compat32)


def media_type(headers: Mapping[str, str]) -> str:
    """The request's Content-Type, lower case, without parameters ("" when there is none)."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Form:
    """A form's fields in body order; a name may repeat (Mailgun repeats `tag`)."""

    fields: tuple[tuple[str, str], ...]

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def first(self, name: str) -> str | None:
        return next((value for key, value in self.fields if key == name), None)

    def last(self, name: str) -> str | None:
        found = self.all(name)
        return found[-1] if found else None

    def names(self) -> list[str]:
        """Each name once, in order of first appearance."""
        return list(dict.fromkeys(key for key, _ in self.fields))


def parse(body: bytes, *, provider: str) -> Form:
    """A multipart body (it opens with `--`, its boundary) or else a URL-encoded one."""
    if body.startswith(b"--"):
        return parse_multipart(body, provider=provider)
    return parse_urlencoded(body, provider=provider)


def parse_urlencoded(body: bytes, *, provider: str) -> Form:
    """`a=1&b=%C3%A9` → (("a", "1"), ("b", "é")); percent-escapes must be UTF-8."""
    try:
        text = body.decode("ascii")
        pairs = urllib.parse.parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    # UnicodeDecodeError (not ASCII, or escapes that are not UTF-8) is a ValueError, and so is
    # parse_qsl's "too many fields".
    except ValueError as exc:
        raise _error(provider, f"{exc}"[:120]) from None
    return Form(tuple(pairs))


def parse_multipart(body: bytes, *, provider: str) -> Form:
    """Fields of a `multipart/form-data` body; file parts (with a filename) are skipped."""
    opening, crlf, _ = body.partition(b"\r\n")
    boundary = opening[2:].rstrip(b" \t")
    if not crlf or not boundary or len(boundary) > _MAX_BOUNDARY:
        raise _error(provider, "a multipart body must open with --boundary and CRLF")
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary)
    fields: list[tuple[str, str]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter; what follows is the epilogue
            return Form(tuple(fields))
        field = _part(chunk, provider)
        if field is not None:
            fields.append(field)
        if len(fields) > MAX_FIELDS:
            raise _error(provider, f"more than {MAX_FIELDS} fields")
    raise _error(provider, "the multipart body has no closing boundary")


def _part(chunk: bytes, provider: str) -> tuple[str, str] | None:
    padding, crlf, part = chunk.partition(b"\r\n")
    head, end, content = part.partition(b"\r\n\r\n")
    if padding.strip(b" \t") or not crlf or not end:
        raise _error(provider, "a multipart part has no headers")
    try:
        headers = _HEADER_PARSER.parsestr(head.decode() + "\r\n\r\n")  # RFC 7578: UTF-8
    except UnicodeDecodeError:
        raise _error(provider, "a multipart part's headers are not UTF-8") from None
    if headers.get_content_disposition() != "form-data":
        raise _error(provider, "a multipart part is not form-data")
    if headers.get_filename() is not None:
        return None  # a file (Mailgun attaches the original message to some events)
    name = _name(headers)
    if name is None:
        raise _error(provider, "a multipart part has no name")
    try:
        return name, content.decode(headers.get_content_charset("utf-8"))
    except (LookupError, UnicodeDecodeError):
        raise _error(provider, f"field {name!r:.40} is not text in its charset") from None


def _name(headers: Message) -> str | None:
    raw = headers.get_param("name", header="content-disposition")
    return None if raw is None else collapse_rfc2231_value(raw)


def _error(provider: str, reason: str) -> InvalidPayload:
    return InvalidPayload(f"{provider} body is not a form: {reason}")
