"""Which account each inbound event belongs to (docs/accounts.md): its tag, else the email's
registration, else the default account in single-account mode, else nobody (unrouted).

The pure rule is `service.core.accounts.route`; this is its I/O: one round trip per request
at most, none when every event is tagged with an account this process saw exist lately.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from service.core.accounts import account_tag, is_account_id, route
from service.core.models import Event
from service.http.state import AppState

# How long an account seen to exist is trusted without asking again. Only existence is
# cached: a new account is routed to from its first event. An account deleted meanwhile may
# still have events stored under it for this long; they reach nobody (its webhooks are gone).
KNOWN_ACCOUNT_SECONDS = 5.0
KNOWN_ACCOUNTS_MAX = 100_000


async def route_events(state: AppState, events: Sequence[Event]) -> None:
    """Set each event's `account_id` to the account it is routed to (None: unrouted)."""
    if not events:
        return
    config = state.config
    tags = [account_tag(event, config.account_metadata_key) for event in events]
    now = time.monotonic()
    known = state.known_accounts
    unknown = [t for t in tags if t is not None and is_account_id(t) and known.get(t, 0) < now]
    untagged = [event.email_id for event, tag in zip(events, tags, strict=True) if tag is None]
    existing: set[str] = set()
    owners: list[str | None] = []
    if unknown or untagged:
        existing, owners = await state.accounts.lookup(unknown, untagged)
        if len(known) > KNOWN_ACCOUNTS_MAX:
            known.clear()
        for account in existing:
            known[account] = now + KNOWN_ACCOUNT_SECONDS
    owner_of = iter(owners)
    for event, tag in zip(events, tags, strict=True):
        owner = next(owner_of) if tag is None else None
        event.account_id = route(
            tag,
            tag_exists=tag is not None and (tag in existing or known.get(tag, 0) >= now),
            owner=owner,
            # Registrations are forgotten when their account is deleted.
            owner_exists=owner is not None,
            single_account=config.single_account,
        )
