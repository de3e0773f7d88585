"""First-party tracking tokens and URLs (pure): the open pixel, tracked links, the opt-out link.

A token carries everything its request needs, signed, so that answering one looks nothing up:

    token    base64url(version ‖ payload ‖ tag), no padding
    payload  msgpack [kind, account, email id, recipient, issued at (unix s), target URL or ""]
    tag      the first 16 bytes of HMAC-SHA256(key, version ‖ payload)

`kind` is "o" (open), "c" (click) or "u" (unsubscribe), and the URL names it too
(`{PUBLIC_URL}/t/{kind}/{token}`): a token of one kind is refused on another's URL. The first
key of TRACKING_SIGNING_KEY signs; every key verifies, each compared in constant time, so
keys rotate without breaking the links already sent. Tokens are signed, not encrypted: the
email id and recipient can be read by whoever holds the message (docs/tracking.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from service.core.urls import MAX_URL_LENGTH

OPEN = "o"
CLICK = "c"
UNSUBSCRIBE = "u"
KINDS = (OPEN, CLICK, UNSUBSCRIBE)
PATH_PREFIX = "/t/"
VERSION = b"\x01"
TAG_BYTES = 16
# Longer than any token we make (a 2,048-character URL, a 998-character email id and a
# 320-character recipient): anything longer is refused before it is decoded.
MAX_TOKEN_CHARS = 6000
# A link made by hand may be invalid; the HTML rewriter leaves such a link as it is.
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_URL_SAFE = bytes.maketrans(b"-_", b"+/")
# RFC 8058: the body of a one-click unsubscription, and the List-Unsubscribe-Post header's value.
ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
ONE_CLICK = f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}"

# A 1x1 transparent GIF (GIF89a: one-colour table, a graphic control extension marking colour 0
# transparent, one pixel of colour 0): what the open URL answers.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


class Claims(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """What a token says: a msgpack array, so its field names cost nothing."""

    kind: str
    account: str
    email_id: str
    recipient: str
    issued_at: int
    url: str = ""


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Claims)


@dataclass(frozen=True, slots=True)
class Verified:
    claims: Claims
    # The token's tag, in hex: the same for every request with this token (de-duplication).
    tag: str


class InvalidLink(ValueError):
    """A link that cannot be tracked (not an absolute http(s) URL, too long, spaces)."""


def check_link(url: str) -> str:
    """`url` as a tracked link's target: absolute http:// or https:// with a host, at most
    MAX_URL_LENGTH characters, no whitespace or control characters (which could split the
    Location header), and characters beyond ASCII percent-encoded as UTF-8 (as browsers send
    them; a header holds ASCII). Else InvalidLink."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidLink(f"a link must be at most {MAX_URL_LENGTH} characters")
    if _CONTROL.search(url):
        raise InvalidLink("a link must not contain spaces or control characters")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise InvalidLink("a link must be an absolute http:// or https:// URL")
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not host.rsplit("@", 1)[-1]:
        raise InvalidLink("a link must have a host")
    if url.isascii():
        return url
    return "".join(ch if ch.isascii() else urllib.parse.quote(ch, safe="") for ch in url)


class Signer:
    """Signs with the first key, verifies with each (constant time in the tag, every key
    tried: the time taken says nothing about which one matched)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a tracking signer needs at least one key")
        self._keys = tuple(_HmacKey(key.encode()) for key in keys)

    def sign(self, claims: Claims) -> str:
        signed = VERSION + _ENCODER.encode(claims)
        token = signed + self._keys[0].tag(signed)
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")

    def verify(self, token: str, kind: str) -> Verified | None:
        """The token's claims if one of the keys signed it and it is of `kind`; else None."""
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            return None
        padded = token.encode("ascii") + b"=" * (-len(token) % 4)
        try:
            raw = binascii.a2b_base64(padded.translate(_URL_SAFE), strict_mode=True)
        except binascii.Error:
            return None
        if len(raw) <= len(VERSION) + TAG_BYTES or raw[:1] != VERSION:
            return None
        signed, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        valid = False
        for key in self._keys:
            valid |= hmac.compare_digest(key.tag(signed), tag)
        if not valid:
            return None
        try:
            claims = _DECODER.decode(signed[1:])
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None  # signed by us, so only a token of a future version gets here
        if claims.kind != kind:
            return None
        return Verified(claims, tag.hex())


class _HmacKey:
    """HMAC-SHA256 (RFC 2104) with the key's padded hashes computed once: each tag then costs
    two copies and two updates, half of what `hmac.digest` takes to set the key up again on
    every call (these tags are computed on every tracking request)."""

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def tag(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES]


def tracking_url(public_url: str, kind: str, token: str) -> str:
    return f"{public_url}{PATH_PREFIX}{kind}/{token}"


def is_tracking_url(public_url: str, url: str) -> bool:
    """Whether `url` is one of ours already (never wrapped again)."""
    return url.startswith(public_url + PATH_PREFIX)


def unsubscribe_headers(unsubscribe_url: str) -> dict[str, str]:
    """The message headers of RFC 8058 one-click unsubscription (with RFC 2369's)."""
    return {"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": ONE_CLICK}


@dataclass(frozen=True, slots=True)
class LinkMaker:
    """Makes one email's tracking URLs for one recipient of one account."""

    signer: Signer
    public_url: str
    account: str
    email_id: str
    recipient: str
    issued_at: int

    def _url(self, kind: str, target: str = "") -> str:
        claims = Claims(kind, self.account, self.email_id, self.recipient, self.issued_at, target)
        return tracking_url(self.public_url, kind, self.signer.sign(claims))

    def open_url(self) -> str:
        return self._url(OPEN)

    def unsubscribe_url(self) -> str:
        return self._url(UNSUBSCRIBE)

    def click_url(self, target: str) -> str:
        """The tracked link to `target` (checked with `check_link` first)."""
        return self._url(CLICK, check_link(target))
