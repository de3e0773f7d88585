"""Accounts and their API keys: ids, key material, and which account an event belongs to (pure).

account id   acc_{10 time chars}{10 random chars}   acc_0kx8q2m4n1a7b3c9d2e5 (sorts by creation)
default      acc_default                            the built-in account of API_KEYS
key id       key_{10 time chars}{10 random chars}
API key      mh_{43 url-safe base64 chars}          shown once; stored as its SHA-256 only

Randomness and the clock are passed in, so everything here is deterministic under test.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from service.core.models import Event

ACCOUNT_ID_PREFIX = "acc_"
KEY_ID_PREFIX = "key_"
API_KEY_PREFIX = "mh_"
DEFAULT_ACCOUNT = "acc_default"
DEFAULT_ACCOUNT_NAME = "default"
# How much of a key listings show: the prefix and 8 characters, enough to tell keys apart.
SHOWN_KEY_CHARS = len(API_KEY_PREFIX) + 8
ENTROPY_BYTES = 32  # of an API key; ids take 7 (56 bits beside the time)

_ID_BODY = re.compile(r"^[0-9a-z]{1,40}$")
_B32 = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's alphabet, lower case


def _time_chars(now_ms: int) -> str:
    chars = []
    for _ in range(10):
        now_ms, digit = divmod(now_ms, 32)
        chars.append(_B32[digit])
    return "".join(reversed(chars))


def _random_chars(entropy: bytes) -> str:
    value = int.from_bytes(entropy[:7], "big")
    chars = []
    for _ in range(10):
        value, digit = divmod(value, 32)
        chars.append(_B32[digit])
    return "".join(chars)


def new_account_id(now_ms: int, entropy: bytes) -> str:
    """A new account id; ids made later sort after (ms resolution, 50 random bits each)."""
    return ACCOUNT_ID_PREFIX + _time_chars(now_ms) + _random_chars(entropy)


def new_key_id(now_ms: int, entropy: bytes) -> str:
    return KEY_ID_PREFIX + _time_chars(now_ms) + _random_chars(entropy)


def is_account_id(value: object) -> bool:
    """Whether `value` can name an account (so only such strings reach a Redis lookup)."""
    return (
        isinstance(value, str)
        and value.startswith(ACCOUNT_ID_PREFIX)
        and _ID_BODY.match(value[len(ACCOUNT_ID_PREFIX) :]) is not None
    )


def is_key_id(value: str) -> bool:
    return (
        value.startswith(KEY_ID_PREFIX) and _ID_BODY.match(value[len(KEY_ID_PREFIX) :]) is not None
    )


def new_api_key(entropy: bytes) -> str:
    """`mh_` and 256 bits, URL-safe: what a customer sends as `Authorization: Bearer …`."""
    if len(entropy) < ENTROPY_BYTES:
        raise ValueError(f"an API key needs {ENTROPY_BYTES} bytes of entropy")
    return API_KEY_PREFIX + base64.urlsafe_b64encode(entropy[:ENTROPY_BYTES]).decode().rstrip("=")


def api_key_digest(key: str) -> str:
    """What is stored of a key, and looked up. A plain SHA-256 suffices: the key has 256
    random bits, so there is nothing for a slow hash to protect against guessing."""
    return hashlib.sha256(key.encode()).hexdigest()


def shown_prefix(key: str) -> str:
    return key[:SHOWN_KEY_CHARS]


def indexed_account(account: str | None) -> bool:
    """Whether an account's events have an index of their own: not the default account's,
    which are read by scanning the stream (they are most of it in single-account mode, and
    those stored before accounts existed are in no index), and not the unrouted."""
    return account is not None and account != DEFAULT_ACCOUNT


def looks_like_account_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX) and len(token) < 200


def account_tag(event: Event, metadata_key: str) -> str | None:
    """The account an event names: the generic format's top-level `account_id`, else the
    provider metadata's `metadata_key` (a string, or a list of one string: SES tags are
    lists), else a string tag `account_id:acc_…`. None when it names none; a value that names
    one badly is returned as it is, so that it routes nowhere rather than to the default
    account."""
    if event.account_id is not None:
        return event.account_id
    return _metadata_value(event.metadata, metadata_key)


def _metadata_value(metadata: Mapping[str, Any] | None, key: str) -> str | None:
    if not metadata:
        return None
    if key not in metadata:
        return _tagged(metadata.get("tags"), key)
    value = metadata[key]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return value.strip() or None
    return repr(value)  # named, but not an account id: routes nowhere


def _tagged(tags: object, key: str) -> str | None:
    """For providers whose only metadata is a list of string tags (MailerSend; any other's
    tags too): a tag `account_id:acc_…` (or `account_id=acc_…`) names the account."""
    if not isinstance(tags, list):
        return None
    for tag in tags:
        if isinstance(tag, str) and tag[: len(key)] == key and tag[len(key) : len(key) + 1] in ":=":
            return tag[len(key) + 1 :].strip() or None
    return None


def route(
    tag: str | None,
    *,
    tag_exists: bool,
    owner: str | None,
    owner_exists: bool,
    single_account: bool,
) -> str | None:
    """The account an event goes to, or None (unrouted: stored, delivered to nobody).

    A tag wins over a registration (`owner`, from POST /api/emails): the platform wrote it
    into that very message. A tag naming no existing account routes nowhere, never to the
    default account. Without either, the default account takes it in single-account mode."""
    if tag is not None:
        return tag if tag_exists else None
    if owner is not None and owner_exists:
        return owner
    return DEFAULT_ACCOUNT if single_account else None
