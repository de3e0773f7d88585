"""How the service is doing, from readings of Redis and the time (pure): GET /api/status's
report. Thresholds and what to do about each problem: docs/operations.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from service.core.ids import entry_order, entry_time, format_timestamp
from service.core.models import EventsStatus, MemoryStatus, ServiceStatus, WorkerStatus

MEMORY_WARNING_FRACTION = 0.8


@dataclass(frozen=True, slots=True)
class Readings:
    stored: int
    heartbeat: str | None  # the worker's last, while it has not expired
    used_memory: int
    maxmemory: int  # 0: unlimited
    group_exists: bool
    lag: int | None  # Redis's count of entries the group has not read; None if it cannot tell
    last_delivered: str | None  # the last entry id the group handed out
    last_entry: str | None  # the stream's last entry id (last-generated-id)
    in_progress: int
    oldest_in_progress: str | None  # stream entry id
    unreadable: int = 0  # stream entries that were no event, set aside by the worker
    dead_letters: int = 0  # entries set aside as dead letters, not yet redriven or deleted
    # Events of accounts over their share, waiting in their lanes (acknowledged in the
    # stream, not delivered: service.storage.lanes), and the oldest of them (its entry id).
    in_lanes: int = 0
    oldest_in_lane: str | None = None
    # With several partitions: each partition's stream's readings (`combined`), of which the
    # stream fields above are the sums or the oldest.
    parts: tuple[Readings, ...] = ()


def combined(parts: Sequence[Readings]) -> Readings:
    """The readings of every partition's stream as one: counts added up, the oldest entry in
    progress of them all; what is unread is each part's (`unread`). One part: itself."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    in_progress = [p.oldest_in_progress for p in parts if p.oldest_in_progress is not None]
    return replace(
        first,
        stored=sum(p.stored for p in parts),
        group_exists=all(p.group_exists for p in parts),
        lag=None,
        last_delivered=None,
        last_entry=None,
        in_progress=sum(p.in_progress for p in parts),
        oldest_in_progress=min(in_progress, key=entry_order, default=None),
        dead_letters=sum(p.dead_letters for p in parts),
        parts=tuple(parts),
    )


def assess(
    readings: Readings, now: datetime, *, stuck_after_seconds: float, ingest_limit: float
) -> ServiceStatus:
    problems = []
    if readings.heartbeat is None:
        problems.append("no worker has reported in the last minute: events are not delivered")
    undelivered = unread(readings)
    oldest_at = oldest_age = None
    if readings.oldest_in_progress is not None:
        oldest = entry_time(readings.oldest_in_progress)
        oldest_at = format_timestamp(oldest)
        oldest_age = round(max(0.0, (now - oldest).total_seconds()), 3)
        if oldest_age > stuck_after_seconds:
            problems.append(
                f"an event has been in progress for {oldest_age:.0f} s: it keeps failing "
                "(see the worker's log) and holds stream trimming back"
            )
    if readings.dead_letters:
        problems.append(
            f"{readings.dead_letters} dead letters: events the worker could not process, set "
            "aside undelivered (see the worker's log); inspect, redrive or delete them "
            "(GET /api/dead-letters)"
        )
    used_fraction = None
    if readings.maxmemory > 0:
        exact_fraction = readings.used_memory / readings.maxmemory
        used_fraction = round(exact_fraction, 4)  # for reading; decisions use the exact one
        if exact_fraction >= ingest_limit:
            problems.append(
                f"redis memory is at {used_fraction:.0%} of maxmemory, past "
                f"INGEST_MEMORY_LIMIT ({ingest_limit:.0%}): ingest answers 503 until the "
                "worker has delivered and trimmed enough, or maxmemory is raised"
            )
        elif exact_fraction >= min(MEMORY_WARNING_FRACTION, ingest_limit):
            problems.append(
                f"redis memory is at {used_fraction:.0%} of maxmemory: ingest answers 503 "
                f"from INGEST_MEMORY_LIMIT ({ingest_limit:.0%})"
            )
    return ServiceStatus(
        status="degraded" if problems else "ok",
        problems=problems,
        worker=WorkerStatus(
            alive=readings.heartbeat is not None, last_heartbeat=readings.heartbeat
        ),
        events=EventsStatus(
            stored=readings.stored,
            undelivered=undelivered,
            in_progress=readings.in_progress,
            oldest_in_progress_at=oldest_at,
            oldest_in_progress_age_seconds=oldest_age,
            unreadable=readings.unreadable,
            dead_letters=readings.dead_letters,
            in_lanes=readings.in_lanes,
        ),
        redis_memory=MemoryStatus(
            used_bytes=readings.used_memory,
            max_bytes=readings.maxmemory or None,
            used_fraction=used_fraction,
        ),
    )


def unread(readings: Readings) -> int | None:
    """Stored events the group has not read yet.

    Redis's own `lag` is entries-added minus the group's entries-read, and entries-read goes
    wrong once reads cross trimmed entries or an AOF is reloaded: it said 2,899 with nothing
    left to read. What survives both is the group's last-delivered id against the stream's
    last id: at or past it, nothing is unread; behind it, Redis's count, never more than
    the stream holds. Of several partitions, the sum of theirs (None if one cannot tell)."""
    if readings.parts:
        counts = [unread(part) for part in readings.parts]
        return None if None in counts else sum(c for c in counts if c is not None)
    if not readings.group_exists:
        return readings.stored  # the group will read from the very first entry
    if readings.last_entry is None or readings.stored == 0:
        return 0
    if readings.last_delivered is not None and entry_order(readings.last_delivered) >= (
        entry_order(readings.last_entry)
    ):
        return 0
    if readings.lag is None:
        return None
    return max(1, min(readings.lag, readings.stored))
