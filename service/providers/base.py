"""The `Provider` protocol every provider module implements, and the plumbing they share.

A provider module keeps its pure functions (`verify`, `normalize`, ...) and exposes one
`PROVIDER` object implementing `Provider`; `service.providers.registry` lists them. Subclassing
`Provider` explicitly inherits its defaults: any secret accepted at start-up, the secret read
from `secret_variable` alone, the shared `TOLERANCE_SECONDS`, no replay token, no signed URL,
no probe and no published signing key.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

import msgspec

from service.core.errors import InvalidPayload, InvalidSignature
from service.core.normalized import Normalized

# Signed timestamps may differ from `now` by this much either way (Svix's and Resend's default).
TOLERANCE_SECONDS = 300


class Provider(Protocol):
    """One inbound provider: how its requests are verified, read and recognised."""

    @property
    def name(self) -> str:
        """The registry key: the URL segment of `/api/webhooks/{name}` and each event's
        `provider`."""
        ...

    @property
    def secret_variable(self) -> str:
        """The environment variable holding the verification secret, e.g.
        `RESEND_WEBHOOK_SECRET`."""
        ...

    @property
    def summary(self) -> str:
        """What its URL receives, for the OpenAPI summary, e.g. `Resend events (Svix-signed)`."""
        ...

    @property
    def tolerance_seconds(self) -> int:
        """How far a signed timestamp may be from `now`, either way; twice this is how long a
        replay token is remembered."""
        return TOLERANCE_SECONDS

    @property
    def replay_token_field(self) -> str:
        """Where `replay_token` comes from, to name it when it is refused as a replay."""
        return "the replay token"

    def accepts_media_type(self, media_type: str) -> bool:
        """Whether a body of this Content-Type (lower case, no parameters) can be this
        provider's; any other is refused with 415. JSON by default."""
        return is_json_media_type(media_type)

    def check_secret(self, secret: str) -> None:
        """Raise InvalidSignature when `secret` cannot be this provider's, so that start-up
        fails rather than every request."""
        return None

    def read_secret(self, variable: Callable[[str], str]) -> str:
        """The secret from the environment, where `variable(name)` is that variable's stripped
        value ("" when unset or blank): `secret_variable`'s by default. A provider read from
        several variables combines them into the one string its `verify` takes."""
        return variable(self.secret_variable)

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
        """Raise InvalidSignature unless the request is signed with `secret` and, when the
        scheme has a timestamp, within `tolerance_seconds` of `now` (unix seconds)."""
        ...

    @property
    def url_variable(self) -> str | None:
        """For a scheme that signs the URL the provider posts to (Mandrill): the environment
        variable holding that URL exactly as registered with the provider. None by default."""
        return None

    def verify_request(
        self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float, url: str
    ) -> None:
        """What the inbound handler calls: `verify`, given also `url`, the value of
        `url_variable` ("" when unset). By default the URL is not signed."""
        self.verify(body, headers, secret, now=now)

    def is_probe(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether the request is the provider checking that the URL answers, carrying no
        event (Mandrill's empty batch when a webhook is added, signed with a key the user has
        not been shown yet): answered 200 before verification, storing nothing. Never raises;
        False by default."""
        return False

    def signing_key_url(
        self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float
    ) -> str | None:
        """None (the default) for a provider verified with its configured secret by `verify`.

        A provider that signs with a key it publishes by URL (Amazon SNS's certificates) returns
        the URL of the key that signed this request, once the checks that need no key have
        passed (they raise as `verify` does). The web edge fetches it, only from an allowed URL,
        and calls `verify_with_key`. Such a provider is verified whether or not its variable is
        set (`secret` is then ""), whatever ALLOW_UNSIGNED_INBOUND says."""
        return None

    def verify_with_key(
        self, body: bytes, headers: Mapping[str, str], secret: str, key: bytes, *, now: float
    ) -> None:
        """`verify` for a provider with a `signing_key_url`: `key` is the document fetched from
        that URL (a PEM certificate)."""
        raise InvalidSignature(f"{self.name} does not sign with a published key")

    def normalize(
        self, body: bytes, headers: Mapping[str, str], *, received_at: str
    ) -> list[Normalized]:
        """One Event or Ignored per provider event in the body, or InvalidPayload naming the
        field; `received_at` (ISO 8601 UTC) stands in for a missing event time."""
        ...

    def detects(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether a request to the shared URL is this provider's. Asked in registry order, so
        it may assume that no earlier provider claimed the request; never raises."""
        ...

    def replay_token(self, body: bytes) -> str | None:
        """A single-use token of a verified request, claimed once per event so that a captured
        signature cannot be replayed over another body; None when the signature covers the
        body."""
        return None


def is_json_media_type(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class ProviderInput(msgspec.Struct, kw_only=True):
    """Base for provider bodies: unknown fields are allowed, as providers add them freely."""


T = TypeVar("T")

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_JSON_WHITESPACE = re.compile(rb"[ \t\r\n]*")


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


def json_start(body: bytes) -> bytes:
    """The first byte of `body` after JSON whitespace (`b"["` for an array, `b"{"` for an
    object), or `b""`: cheap enough for detection, which must not decode every body."""
    first = _JSON_WHITESPACE.match(body)
    offset = first.end() if first else 0
    return body[offset : offset + 1]
