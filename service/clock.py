"""Time, passed in rather than read: handlers get `now` from a Clock so tests can fix it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC to the second with a `Z`, as on the API page: 2026-03-03T10:00:00Z."""
    return _format_second(int(moment.timestamp() // 1))


@functools.lru_cache(maxsize=8)
def _format_second(second: int) -> str:
    # Cached: a busy worker formats the same second for every attempt made within it.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
