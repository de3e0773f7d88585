"""Which events put a recipient on its account's suppression list, and how addresses compare
(pure). The lists themselves: service.storage.suppressions; the rules: docs/tracking.md.

A hard bounce (the address will never accept mail), a complaint and an unsubscribe suppress.
A soft bounce does not, nor do repeated ones: each is temporary by definition (a full
mailbox empties, a greylisting server lets the next attempt through), the provider has
already retried the message before reporting it, and a provider that gives up on an address
for good reports a hard bounce. An undetermined bounce does not either: it may be either.
"""

from __future__ import annotations

from service.core.models import Event

HARD_BOUNCE = "hard_bounce"
COMPLAINT = "complaint"
UNSUBSCRIBE = "unsubscribe"
MANUAL = "manual"
REASONS = (HARD_BOUNCE, COMPLAINT, UNSUBSCRIBE, MANUAL)
# RFC 5321: a path is at most 256 octets, so an address at most 254 characters; some
# providers report more (display names), so we accept a little more before refusing.
MAX_ADDRESS_LENGTH = 320


def suppression_reason(event: Event) -> str | None:
    """Why `event` suppresses its recipient, or None. Only an event with a recipient and an
    account can (an unrouted event belongs to no list)."""
    if not event.recipient or not event.account_id:
        return None
    if event.type == "email.bounce":
        return HARD_BOUNCE if event.bounce is not None and event.bounce.kind == "hard" else None
    if event.type == "email.complaint":
        return COMPLAINT
    if event.type == "email.unsubscribe":
        return UNSUBSCRIBE
    return None


def normalize_address(address: str) -> str:
    """The form an address is listed under: without a display name's `Name <…>`, trimmed, in
    lower case (mailbox names are case-insensitive in practice, whatever RFC 5321 allows)."""
    text = address.strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1].strip()
    return text.lower()


def address_problem(address: str) -> str | None:
    """What is wrong with `address` (normalised) as a list entry, or None."""
    if not address:
        return "an email address is required"
    if len(address) > MAX_ADDRESS_LENGTH:
        return f"an email address is at most {MAX_ADDRESS_LENGTH} characters"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() or ord(ch) < 32 for ch in address):
        return "not an email address (local@domain, no spaces)"
    return None
