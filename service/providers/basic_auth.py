"""HTTP basic auth and bearer tokens, for providers that sign nothing (pure).

Postmark, SparkPost, Mailjet and Brevo send no signature: they authenticate with credentials
put in the webhook URL (`https://user:password@host/...`) or set in their dashboards, which
arrive as `Authorization: Basic base64(user:password)` (Brevo may send `Bearer <token>`
instead). The secret is `user:password`, compared in constant time with the whole decoded
value. Nothing in such a request is timestamped or tied to its body: a captured request can be
replayed as it is, and only de-duplication by provider event id stops it being stored twice
(docs/inbound.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping

from service.core.errors import InvalidCredentials, InvalidSignature
from service.providers.base import Provider, header

AUTHORIZATION = "authorization"
# RFC 6750's b64token: what a bearer token may hold, so that it fits the header unquoted.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def check_credentials(secret: str) -> None:
    """Raise InvalidSignature unless `secret` is `user:password` with a user (RFC 7617: the
    user holds no colon, the password may; an empty password is allowed)."""
    user, colon, _ = secret.partition(":")
    if not colon:
        raise InvalidSignature("basic auth credentials must be user:password: there is no colon")
    if not user:
        raise InvalidSignature("basic auth credentials must be user:password: the user is empty")


def check_bearer_token(token: str) -> None:
    """Raise InvalidSignature unless `token` can be sent as `Authorization: Bearer <token>`."""
    if not _BEARER_TOKEN.fullmatch(token):
        raise InvalidSignature(
            "a bearer token holds letters, digits and - . _ ~ + / (then = padding) only"
        )


def verify_basic(headers: Mapping[str, str], secret: str) -> None:
    """Raise InvalidCredentials unless `Authorization` is Basic credentials that decode to
    exactly `secret` (`user:password`, UTF-8)."""
    given = _credentials(headers, "basic")
    try:
        decoded = base64.b64decode(given, validate=True)
    except binascii.Error:
        raise InvalidCredentials("the Authorization credentials are not base64") from None
    if not hmac.compare_digest(decoded, secret.encode()):
        raise InvalidCredentials("the Authorization credentials do not match")


def verify_bearer(headers: Mapping[str, str], token: str) -> None:
    """Raise InvalidCredentials unless `Authorization` is `Bearer <token>`."""
    given = _credentials(headers, "bearer")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise InvalidCredentials("the Authorization token does not match")


def authorization_scheme(headers: Mapping[str, str]) -> str:
    """The scheme of `Authorization`, lower case ("" when absent): which check applies."""
    value = header(headers, AUTHORIZATION) or ""
    return value.partition(" ")[0].lower()


def _credentials(headers: Mapping[str, str], scheme: str) -> str:
    value = header(headers, AUTHORIZATION)
    if value is None:
        raise InvalidCredentials("missing Authorization header")
    given_scheme, _, credentials = value.partition(" ")
    credentials = credentials.strip()
    if given_scheme.lower() != scheme or not credentials:
        raise InvalidCredentials(f"the Authorization header is not {scheme.title()} credentials")
    return credentials


class BasicAuthProvider(Provider):
    """A provider authenticated by basic auth: its secret is `user:password`, checked at
    start-up and against every request's `Authorization` header."""

    def check_secret(self, secret: str) -> None:
        check_credentials(secret)

    def verify(self, body: bytes, headers: Mapping[str, str], secret: str, *, now: float) -> None:
        verify_basic(headers, secret)
