"""Idempotency keys (pure): naming, fingerprinting and sealing the responses kept for replay.

A request with `Idempotency-Key: K` is scoped to its caller (the credential it presents, and
the account an admin key acts in), its method and its path: the same K from another key, or
on another route, is another request. What is kept for replay is sealed (AES-256-GCM) with a
key derived from the caller's own credential, which the server never stores for account keys:
a response that carries a secret (a generated webhook secret, a new API key) can be read back
only by a caller presenting that credential again, and a copy of Redis reveals nothing. The
body's fingerprint is keyed the same way, so it says nothing about a secret in the body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# A replay for 24 hours, as Stripe; an unfinished request's claim lapses after a minute (a
# process that died mid-request leaves nothing that blocks the key for longer).
RESULT_TTL_SECONDS = 24 * 3600
PENDING_TTL_SECONDS = 60

_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
_PENDING = b"p:"
_SEALED = b"s:"
_NONCE_BYTES = 12


class SavedResponse(msgspec.Struct, array_like=True):
    fingerprint: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(SavedResponse)


def valid_key(key: str) -> bool:
    """1 to 255 visible ASCII characters (a UUID is the usual choice)."""
    return _KEY.fullmatch(key) is not None


def _field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


class IdempotencyScope:
    """One caller's one key on one route: `digest` names what is stored, the rest seals it."""

    __slots__ = ("_secret", "digest")

    def __init__(self, *, credential: str, account: str, method: str, path: str, key: str) -> None:
        scope = b"".join(_field(part) for part in (account, method.upper(), path, key))
        self._secret = hmac.new(
            credential.encode("utf-8"), b"mailhooks idempotency v1" + scope, hashlib.sha256
        ).digest()
        # The name is derived from the secret: it identifies the scope without revealing it.
        self.digest = hashlib.sha256(b"name" + self._secret).hexdigest()

    def fingerprint(self, body: bytes) -> str:
        return hmac.new(self._secret, b"body" + body, hashlib.sha256).hexdigest()

    def seal(self, response: SavedResponse) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self._secret).encrypt(nonce, _ENCODER.encode(response), _SEALED)
        return _SEALED + nonce + sealed

    def open(self, stored: bytes) -> SavedResponse | None:
        """The saved response, or None if `stored` is not one sealed for this scope."""
        if not stored.startswith(_SEALED):
            return None
        nonce = stored[len(_SEALED) : len(_SEALED) + _NONCE_BYTES]
        try:
            plain = AESGCM(self._secret).decrypt(
                nonce, stored[len(_SEALED) + _NONCE_BYTES :], _SEALED
            )
        except InvalidTag:
            return None
        return _DECODER.decode(plain)


def pending_marker(fingerprint: str) -> bytes:
    """What holds a key while its first request runs: unique to that request."""
    return _PENDING + secrets.token_hex(8).encode() + b":" + fingerprint.encode()


def pending_fingerprint(stored: bytes) -> str | None:
    """The fingerprint of the request holding the key, or None if `stored` is a response."""
    if not stored.startswith(_PENDING):
        return None
    return stored.rsplit(b":", 1)[1].decode()
