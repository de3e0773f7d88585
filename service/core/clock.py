"""Time, passed in rather than read: handlers get `now` from a Clock so tests can fix it.
The pure core never calls one; the edges (routes, the worker) do and pass the time down."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)
