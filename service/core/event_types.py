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
        if name.startswith(QUALIFIED_PREFIX):
            name = name[len(QUALIFIED_PREFIX) :]
        if name != WILDCARD and name not in EVENT_TYPES:
            allowed = ", ".join(EVENT_TYPES)
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


def format_event_types(types: tuple[str, ...]) -> str:
    return ",".join(types)


def subscribes_to(types: tuple[str, ...], event_type: str) -> bool:
    """Whether a webhook subscribed to `types` wants an event of `event_type` (either form)."""
    short = event_type.removeprefix(QUALIFIED_PREFIX)
    return WILDCARD in types or short in types
