"""Portal links and sessions (pure): the signed token a portal link carries, and the digests
and comparisons its sessions use. No clock: `now` is passed in.

    token = base64url(claims) "." base64url(HMAC-SHA256(PORTAL_SECRET, "portal-link." claims))
    claims = {"a": account id, "j": link id (128 random bits, hex), "e": expiry, unix seconds}

A token proves that the holder of PORTAL_SECRET issued it for that account until its expiry;
that it is used once is the storage's part (the link id, SET NX).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import msgspec

# How long a link may wait before it is opened: it is handed to a browser at once.
LINK_SECONDS = 600
_CONTEXT = b"portal-link."


class InvalidLink(ValueError):
    """The token is malformed, wrongly signed or expired; the message says which, for the
    person holding it."""


class LinkClaims(msgspec.Struct, frozen=True):
    a: str  # the account
    j: str  # the link id: single use
    e: int  # expiry, unix seconds


_CLAIMS_DECODER = msgspec.json.Decoder(LinkClaims)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, claims_part: str) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT + claims_part.encode(), hashlib.sha256).digest()


def sign_link(secret: str, *, account: str, link_id: str, expires_at: int) -> str:
    claims = _b64(msgspec.json.encode(LinkClaims(a=account, j=link_id, e=expires_at)))
    return f"{claims}.{_b64(_signature(secret, claims))}"


def verify_link(secret: str, token: str, *, now: int) -> LinkClaims:
    """The claims of a token signed with `secret` that has not expired at `now`."""
    claims_part, dot, signature_part = token.partition(".")
    if not dot or len(token) > 1024:
        raise InvalidLink("this portal link is not valid")
    try:
        presented = _unb64(signature_part)
    except (binascii.Error, ValueError):
        raise InvalidLink("this portal link is not valid") from None
    if not hmac.compare_digest(presented, _signature(secret, claims_part)):
        raise InvalidLink("this portal link is not valid")
    try:
        claims = _CLAIMS_DECODER.decode(_unb64(claims_part))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidLink("this portal link is not valid") from None
    if claims.e <= now:
        raise InvalidLink("this portal link has expired")
    return claims


def session_digest(session_id: str) -> str:
    """What a session is stored under: the cookie's value never reaches Redis."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def same_token(expected: str, presented: str | None) -> bool:
    """A form's CSRF token against its session's, in constant time."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
