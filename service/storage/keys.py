"""Every Redis key this service uses, in one place.

All keys share the `mh:` prefix so the service can share a Redis with other applications
and an operator can find (or delete) everything it owns with `SCAN MATCH mh:*`.
"""

import functools

PREFIX = "mh:"

# String, INCR'd to issue webhook ids (1, 2, 3, … as on the API page). Never reset, so a
# deleted webhook's id is never reused.
WEBHOOK_ID_SEQUENCE = PREFIX + "webhook:seq"

# Hash per webhook: id, url, events (comma-separated short names), secret, active ("1"/"0"),
# created_at, updated_at. The secret lives only here.
WEBHOOK = PREFIX + "webhook:{id}"

# Sorted set of every webhook id, scored by id: listing in creation order and paging by `after`.
WEBHOOK_INDEX = PREFIX + "webhooks"

# Set per event type ("open", "click", …, or "*" for webhooks subscribed to everything) of the
# ids subscribed to it: the worker finds an event's subscribers with one SUNION, never a scan.
SUBSCRIBERS = PREFIX + "subscribers:{event_type}"

# Stream of every stored inbound event, oldest first. Trimmed to about EVENTS_MAXLEN, but
# never past an entry a consumer group has not read or has not acknowledged.
# Entry field "e" holds the msgspec-encoded canonical Event without its id: the event id is
# "evt_" + the entry id, so the id costs no memory and finds its entry with one XRANGE.
EVENTS_STREAM = PREFIX + "events"

# String per provider event already stored (value: its entry id), expiring after
# DEDUP_TTL_SECONDS: a provider's retry of the same event is recognised and stored once.
# {digest} is a short hash of the provider's event id, so keys stay small whatever its length.
SEEN = PREFIX + "seen:{provider}:{digest}"

# String per signature token a provider signs without the body (Mailgun), value: the event it
# came with. The same token with another event is a replayed signature over a forged body.
TOKEN = PREFIX + "token:{provider}:{digest}"

# Sorted sets (all scores 0, members = zero-padded entry ids, so lexicographic order is time
# order) of the events about one email id / one recipient, for GET /api/events filters.
# Trimming an entry removes its members (service.storage.trimming); each key also expires
# INDEX_TTL after its last event, a backstop. A member whose entry is gone is skipped. An entry
# whose recipient str.lower changes beyond ASCII letters names its recipient key in field "r".
EVENTS_BY_EMAIL = PREFIX + "events:email:{email_id}"
EVENTS_BY_RECIPIENT = PREFIX + "events:recipient:{recipient}"

# Hash of inbound counters: "{provider}:stored", "{provider}:duplicate",
# "{provider}:ignored:{provider_type}" (events with no canonical type, accepted, not stored).
INBOUND_COUNTS = PREFIX + "inbound:counts"

# The consumer group the workers read the events stream with.
DELIVERY_GROUP = "mh:delivery"

# Hash per delivery (one event to one webhook): id, webhook_id, event_id, type, status
# (pending|succeeded|failed), attempts, created_at/updated_at/next_attempt_at (ms),
# last_status_code, last_error, lease_owner/lease_until (who may attempt it now, and until
# when), and the payload once the delivery outlives its first attempt (the stream may be
# trimmed before its last retry). The id is deterministic: dlv_{entry id}_{webhook id}.
DELIVERY = PREFIX + "delivery:{delivery_id}"

# List per delivery of its attempts (msgspec JSON, newest last, the last 50 kept).
DELIVERY_ATTEMPTS = PREFIX + "delivery:{delivery_id}:attempts"

# Sorted sets per webhook (all scores 0, members "{created ms, 15 digits}:{delivery id}" so
# lexicographic order is time order): every delivery, and one set per status.
DELIVERIES = PREFIX + "deliveries:{webhook_id}"
DELIVERIES_BY_STATUS = PREFIX + "deliveries:{webhook_id}:{status}"

# Sorted set of every leased pending delivery, scored by lease expiry (ms): maintenance
# re-queues those whose lease ran out with nobody attempting them (a worker that died
# between scheduling a retry and handing it to arq).
DELIVERY_LEASES = PREFIX + "delivery-leases"

# String counter of stream entries that were no event (written there by something else): the
# worker acknowledges and skips them, the event reads skip them, /api/status shows the count.
UNREADABLE_EVENTS = PREFIX + "events:unreadable"

# String with the worker's last heartbeat (ISO 8601), expiring when the worker stops beating.
WORKER_HEARTBEAT = PREFIX + "worker:heartbeat"


# Per-webhook names are built for every delivery (the outcome script alone names six):
# cached, as there are few webhooks and many deliveries.
@functools.lru_cache(maxsize=4096)
def webhook(webhook_id: int) -> str:
    return WEBHOOK.format(id=webhook_id)


def subscribers(event_type: str) -> str:
    return SUBSCRIBERS.format(event_type=event_type)


def seen(provider: str, digest: str) -> str:
    return SEEN.format(provider=provider, digest=digest)


def delivery(delivery_id: str) -> str:
    return DELIVERY.format(delivery_id=delivery_id)


def delivery_attempts(delivery_id: str) -> str:
    return DELIVERY_ATTEMPTS.format(delivery_id=delivery_id)


@functools.lru_cache(maxsize=16384)
def deliveries(webhook_id: int, status: str | None = None) -> str:
    if status is None:
        return DELIVERIES.format(webhook_id=webhook_id)
    return DELIVERIES_BY_STATUS.format(webhook_id=webhook_id, status=status)


def token(provider: str, digest: str) -> str:
    return TOKEN.format(provider=provider, digest=digest)


def events_by_email(email_id: str) -> str:
    return EVENTS_BY_EMAIL.format(email_id=email_id)


def events_by_recipient(recipient: str) -> str:
    return EVENTS_BY_RECIPIENT.format(recipient=recipient.lower())
