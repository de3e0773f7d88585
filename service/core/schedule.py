"""When to try a delivery again (pure: the random source is passed in)."""

from __future__ import annotations

import random
from datetime import datetime
from email.utils import parsedate_to_datetime

JITTER = 0.2  # each delay is drawn from ±20 % of the scheduled one


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
