"""Provider fields that take more than decoding (pure): an event id derived from an event's own
fields, for providers that send none, and metadata that a sender passed as one string."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

_ENCODER = msgspec.json.Encoder()
_OBJECT = msgspec.json.Decoder(dict[str, Any])


def derived_event_id(*fields: object) -> str:
    """The hex SHA-256 of `fields` (JSON scalars), as a `provider_event_id` for a provider that
    sends no event id: a retry carries the same fields, so it is stored once; two events that
    agree on every field (two opens in the same second) are stored once too."""
    return hashlib.sha256(_ENCODER.encode(fields)).hexdigest()


def metadata_from_text(text: str | None, *, key: str) -> dict[str, Any]:
    """A JSON object sent as a string (Mailjet's `Payload`, Brevo's `X-Mailin-custom`) as it
    is; any other non-blank string as `{key: text}`; nothing as `{}`."""
    if text is None or not text.strip():
        return {}
    try:
        return _OBJECT.decode(text)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return {key: text}
