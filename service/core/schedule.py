"""When to try a delivery again (pure: the random source is passed in)."""

from __future__ import annotations

import random
from datetime import datetime
from email.utils import parsedate_to_datetime

JITTER = 0.2  # each delay is drawn from ±20 % of the scheduled one

# A delivery put off because its endpoint was saturated is first looked at again this soon:
# an endpoint is saturated when its slots stay busy for half a second with as many attempts
# waiting, which an endpoint answering in under a second reaches in a burst.
SATURATED_FIRST_LOOK_SECONDS = 1.0


def next_delay(
    schedule: tuple[float, ...],
    attempts_made: int,
    rng: random.Random,
    *,
    retry_after: float | None = None,
) -> float | None:
    """Seconds until attempt number `attempts_made + 1`, or None when the schedule is spent.

    `schedule[n]` is the delay before attempt n+1 (schedule[0], "immediately", is the first).
    A receiver's Retry-After replaces the scheduled delay, bounded by the schedule's longest.
    """
    if attempts_made >= len(schedule):
        return None
    if retry_after is not None:
        return min(max(retry_after, 0.0), max(schedule))
    base = schedule[attempts_made]
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


def saturated_delay(timeout: float, waited: float | None, rng: random.Random) -> float:
    """Seconds until a delivery whose endpoint is saturated is looked at again.

    Put off `waited` seconds ago (None: not known), it waits as long again, at least
    SATURATED_FIRST_LOOK_SECONDS and at most `timeout` (the request timeout: a slot of an
    endpoint that never answers frees that often), drawn from half to all of it so that a
    backlog does not come back at once. The time waited thus grows 1.5-2x with each look
    while the endpoint stays saturated: a moderately slow endpoint gets its put-off
    deliveries back within about as long as it was saturated, and one that never answers
    is polled no more often than once a timeout after the first few looks."""
    base = timeout if waited is None else min(timeout, max(SATURATED_FIRST_LOOK_SECONDS, waited))
    return base * rng.uniform(0.5, 1.0)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from `now`: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max((moment - now).total_seconds(), 0.0)
