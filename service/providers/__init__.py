"""Inbound provider events: signature verification and normalisation, with no I/O and no clock.

Each provider module (`generic`, `resend`, `sendgrid`, `mailgun`) exposes `NAME`,
`verify(body, headers, secret, *, now)` raising `InvalidSignature`, and
`normalize(body, headers, *, received_at)` returning one `Normalized` per provider event or
raising `InvalidPayload`; `detect.detect` picks the provider for the shared URL. The API is
`TOLERANCE_SECONDS`; the rest of this module is shared plumbing.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import TypeVar

import msgspec

from service.core.errors import InvalidPayload, InvalidSignature

# Signed timestamps may differ from `now` by this much either way (Svix's and Resend's default).
TOLERANCE_SECONDS = 300


class ProviderInput(msgspec.Struct, kw_only=True):
    """Base for provider bodies: unknown fields are allowed, as providers add them freely."""


T = TypeVar("T")

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def decode(decoder: msgspec.json.Decoder[T], data: bytes, *, provider: str, at: str = "") -> T:
    """Decode `data`, turning every decoding failure into InvalidPayload naming the field.

    `at` is the path of `data` inside the body when it is a nested `msgspec.Raw`."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise payload_error(exc, provider, at) from None
    # msgspec raises RecursionError on deep nesting and UnicodeDecodeError on invalid UTF-8
    # inside strings; both are malformed input, not bugs.
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidPayload(
            f"{provider} body is not valid JSON: {exc}", field=at or None
        ) from None


def payload_error(exc: msgspec.ValidationError, provider: str, at: str = "") -> InvalidPayload:
    """msgspec's `Expected ... - at `$.data.to`` → InvalidPayload(field="data.to")."""
    message = str(exc)
    path = ""
    located = _AT.search(message)
    if located:
        message, path = message[: located.start()], located["path"]
    missing = _MISSING.search(message)
    if missing:
        path += "." + missing["name"]
    field = (at + path).lstrip(".") or None
    return InvalidPayload(f"{provider} payload: {message}", field=field)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The stripped value of header `name` (lowercase), or None when absent or blank."""
    value = headers.get(name)
    if value is None:
        return None
    return value.strip() or None


def required_header(headers: Mapping[str, str], name: str) -> str:
    value = header(headers, name)
    if value is None:
        raise InvalidSignature(f"missing {name} header")
    return value


def check_hex_digest(expected_hex: str, given: str, *, what: str) -> None:
    """Raise InvalidSignature unless `given` is `expected_hex`, a SHA-256 hex digest (any case)."""
    if not _HEX_SHA256.fullmatch(given):
        raise InvalidSignature(f"{what} is not a hex SHA-256 digest")
    if not hmac.compare_digest(expected_hex.lower().encode("ascii"), given.lower().encode("ascii")):
        raise InvalidSignature(f"{what} does not match")
