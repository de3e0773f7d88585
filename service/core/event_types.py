"""Event types a webhook can subscribe to, and parsing of the `events` field (pure)."""

from __future__ import annotations

# The API page's four, then those every provider also reports: delivered, complaint, deferred (a
# temporary failure the provider retries) and rejected (the provider refused to send).
EVENT_TYPES: tuple[str, ...] = (
    "open",
    "click",
    "bounce",
    "unsubscribe",
    "delivered",
    "complaint",
    "deferred",
    "rejected",
)
# Operational events: about the account's webhooks and deliveries, not about an email. Named
# in full everywhere (subscriptions, payloads), never with the "email." prefix; the worker
# emits them (docs/delivery.md#operational-events). `*` includes them, as Svix's does.
WEBHOOK_DISABLED = "webhook.disabled"
DELIVERY_EXHAUSTED = "delivery.exhausted"
OPERATIONAL_EVENT_TYPES: tuple[str, ...] = (WEBHOOK_DISABLED, DELIVERY_EXHAUSTED)
# Everything a webhook can subscribe to by name, as subscriptions store it.
SUBSCRIBABLE_TYPES: tuple[str, ...] = (*EVENT_TYPES, *OPERATIONAL_EVENT_TYPES)
WILDCARD = "*"
# Names as they appear in payloads ("email.open"); subscriptions store the short form.
QUALIFIED_PREFIX = "email."


class InvalidEventTypes(ValueError):
    """The `events` value is empty or names an unknown type; `.value` is the offender."""

    def __init__(self, message: str, value: str) -> None:
        super().__init__(message)
        self.value = value


def parse_event_types(raw: str) -> tuple[str, ...]:
    """`" open, email.click,open"` → `("open", "click")`; `"*"` anywhere → `("*",)`."""
    chosen: list[str] = []
    for part in raw.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name.removeprefix(QUALIFIED_PREFIX) in EVENT_TYPES:  # not email.webhook.disabled
            name = name.removeprefix(QUALIFIED_PREFIX)
        if name != WILDCARD and name not in SUBSCRIBABLE_TYPES:
            allowed = ", ".join(SUBSCRIBABLE_TYPES)
            raise InvalidEventTypes(
                f"unknown event type {part.strip()!r}; expected some of {allowed}, or *",
                part.strip(),
            )
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise InvalidEventTypes("at least one event type is required", raw)
    if WILDCARD in chosen:
        return (WILDCARD,)
    return tuple(chosen)


def is_operational(event_type: str) -> bool:
    """Whether `event_type` is one of the worker's own events (webhook.disabled, …)."""
    return event_type in OPERATIONAL_EVENT_TYPES


def format_event_types(types: tuple[str, ...]) -> str:
    return ",".join(types)


def subscribes_to(types: tuple[str, ...], event_type: str) -> bool:
    """Whether a webhook subscribed to `types` wants an event of `event_type` (either form)."""
    short = event_type.removeprefix(QUALIFIED_PREFIX)
    return WILDCARD in types or short in types
