"""Every Redis key this service uses, in one place.

All keys share the `mh:` prefix so the service can share a Redis with other applications
and an operator can find (or delete) everything it owns with `SCAN MATCH mh:*`.
"""

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

# String with the worker's last heartbeat (ISO 8601), expiring when the worker stops beating.
WORKER_HEARTBEAT = PREFIX + "worker:heartbeat"


def webhook(webhook_id: int) -> str:
    return WEBHOOK.format(id=webhook_id)


def subscribers(event_type: str) -> str:
    return SUBSCRIBERS.format(event_type=event_type)
