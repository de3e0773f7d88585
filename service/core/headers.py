"""Custom headers an endpoint asks to receive on every delivery (pure): what is refused.

Names are HTTP tokens (RFC 9110); values visible ASCII, spaces and tabs (no CR, LF or other
control: a value must not be able to start another header). Refused too: every header a
delivery sets itself (its body, signatures and ids: a custom header must not replace them)
and the hop-by-hop headers, which concern one connection, not the endpoint. Values are never
logged: they are often credentials (an Authorization token the endpoint checks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

MAX_HEADERS = 20
MAX_TOTAL_BYTES = 8192  # every "name: value\r\n" together
MAX_NAME_LENGTH = 256

# What a delivery sends itself (service.core.signing, and the HTTP client underneath).
RESERVED = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "expect",
        "x-webhook-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
# Standard Webhooks' names: anything it adds later is ours to send.
RESERVED_PREFIXES = ("webhook-",)
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"}
)
HOP_BY_HOP_PREFIXES = ("proxy-",)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\t\x20-\x7e]*")

CustomHeaders = tuple[tuple[str, str], ...]

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(list[tuple[str, str]])


class InvalidHeader(ValueError):
    """A custom header is refused; `.field` names it (`headers.X-Foo`)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_headers(headers: Mapping[str, str]) -> CustomHeaders:
    """`headers` as (name, value) pairs in the order given, values trimmed, or InvalidHeader
    naming the first one refused."""
    if len(headers) > MAX_HEADERS:
        raise InvalidHeader(f"at most {MAX_HEADERS} custom headers are allowed", "headers")
    checked: list[tuple[str, str]] = []
    seen: set[str] = set()
    total = 0
    for name, raw_value in headers.items():
        field = f"headers.{name}"
        lower = name.lower()
        if not name or len(name) > MAX_NAME_LENGTH or not _TOKEN.fullmatch(name):
            raise InvalidHeader(
                f"header name {name!r} is not a valid HTTP header name (letters, digits and "
                f"!#$%&'*+-.^_`|~, at most {MAX_NAME_LENGTH} characters)",
                field,
            )
        if lower in RESERVED or lower.startswith(RESERVED_PREFIXES):
            raise InvalidHeader(f"header {name} is set by every delivery and cannot be", field)
        if lower in HOP_BY_HOP or lower.startswith(HOP_BY_HOP_PREFIXES):
            raise InvalidHeader(
                f"header {name} is hop-by-hop (it concerns a connection, not the endpoint)",
                field,
            )
        if lower in seen:
            raise InvalidHeader(f"header {name} is given twice (names ignore case)", field)
        value = raw_value.strip(" \t")
        if not _VALUE.fullmatch(value):
            raise InvalidHeader(
                f"header {name}'s value must be visible ASCII, spaces and tabs only "
                "(no line breaks or other control characters)",
                field,
            )
        total += len(name) + len(value) + 4
        if total > MAX_TOTAL_BYTES:
            raise InvalidHeader(
                f"custom headers may take at most {MAX_TOTAL_BYTES} bytes in all", field
            )
        seen.add(lower)
        checked.append((name, value))
    return tuple(checked)


def encode_headers(headers: CustomHeaders) -> str:
    """As kept in the webhook hash: JSON `[[name, value], …]`, "" for none."""
    return _ENCODER.encode(headers).decode() if headers else ""


def decode_headers(raw: str) -> CustomHeaders:
    return tuple(_DECODER.decode(raw)) if raw else ()
