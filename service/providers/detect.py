"""Which provider sent a request to the shared `POST /api/webhooks` URL (pure; never raises)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

from service.providers import generic, header, mailgun, resend, sendgrid

_TOP_LEVEL = msgspec.json.Decoder(dict[str, msgspec.Raw])
_JSON_WHITESPACE = re.compile(rb"[ \t\r\n]*")


def detect(headers: Mapping[str, str], body: bytes) -> str:
    """A provider `NAME`: Svix headers → resend; SendGrid's signature header or a JSON array →
    sendgrid; an object with `signature` and `event-data` → mailgun; anything else → generic."""
    if header(headers, resend.ID_HEADER) is not None:
        return resend.NAME
    if header(headers, sendgrid.SIGNATURE_HEADER) is not None:
        return sendgrid.NAME
    first = _JSON_WHITESPACE.match(body)
    offset = first.end() if first else 0
    start = body[offset : offset + 1]
    if start == b"[":
        return sendgrid.NAME
    if start == b"{" and _is_mailgun(body):
        return mailgun.NAME
    return generic.NAME


def _is_mailgun(body: bytes) -> bool:
    # The substring test spares decoding every generic body.
    if b'"event-data"' not in body or b'"signature"' not in body:
        return False
    try:
        keys = _TOP_LEVEL.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    return "signature" in keys and "event-data" in keys
