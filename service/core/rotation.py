"""Secret rotation with overlap (pure): which secrets sign a delivery, and what a rotation keeps.

A webhook has one current secret and, after a rotation, the secrets it replaced, each live
until its expiry (epoch ms). While one is live, `webhook-signature` carries one `v1,…` per
live secret, newest first (Standard Webhooks, as Svix and Outpost do), so a subscriber that
verifies with any of them passes; `X-Webhook-Signature` is always the current secret's alone.

The previous secrets are kept in the webhook hash as one field, JSON `[[secret, expires_ms],
…]`, newest first; "" (or no field) when there are none. Expired ones are dropped lazily: a
delivery ignores them, the next rotation leaves them out.
"""

from __future__ import annotations

import msgspec

# A rotation's overlap, in seconds: a day unless the request says otherwise, at most a week.
DEFAULT_GRACE_SECONDS = 86_400
MAX_GRACE_SECONDS = 7 * 86_400
# Previous secrets live at once, at most: each adds a signature to every delivery.
MAX_PREVIOUS = 5

PreviousSecrets = tuple[tuple[str, int], ...]

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(list[tuple[str, int]])


def encode_previous(previous: PreviousSecrets) -> str:
    return _ENCODER.encode(previous).decode() if previous else ""


def decode_previous(raw: str) -> PreviousSecrets:
    return tuple(_DECODER.decode(raw)) if raw else ()


def rotated_previous(
    current: str, previous: PreviousSecrets, *, now_ms: int, grace_seconds: int
) -> PreviousSecrets:
    """The previous secrets once `current` is replaced: `current` itself, live for
    `grace_seconds`, then those still live, none beyond the same moment. After the grace
    period only the new secret signs, however many rotations came before; with a grace of 0
    none is kept (the way to retire a leaked secret at once)."""
    until = now_ms + grace_seconds * 1000
    kept = [(current, until)] + [(s, min(expires, until)) for s, expires in previous]
    live = [(s, expires) for s, expires in kept if expires > now_ms]
    return tuple(live[:MAX_PREVIOUS])


def live_previous(previous: PreviousSecrets, now_ms: int) -> tuple[str, ...]:
    """The previous secrets that still sign a delivery at `now_ms`, newest first."""
    return tuple(secret for secret, expires in previous if expires > now_ms)
