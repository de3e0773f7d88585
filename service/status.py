"""GET /api/status: is a worker alive, how far behind is it, how full is Redis.

`assess` is pure (readings and the time in, the report out); `read` gathers the readings in
one pipeline. Thresholds and what to do about each problem: docs/operations.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import keys
from service.auth import requires_api_key
from service.clock import format_timestamp
from service.delivery_store import lease_ms
from service.models import EventsStatus, MemoryStatus, ServiceStatus, WorkerStatus
from service.responses import json_response
from service.state import app_state

MEMORY_WARNING_FRACTION = 0.8
# An entry is normally acknowledged within a lease of being read, or reclaimed after two
# and acknowledged then; first attempts queued behind a slow endpoint may wait ten leases.
STUCK_AFTER_LEASES = 20


@dataclass(frozen=True, slots=True)
class Readings:
    stored: int
    heartbeat: str | None  # the worker's last, while it has not expired
    used_memory: int
    maxmemory: int  # 0: unlimited
    group_exists: bool
    lag: int | None  # entries the group has not read; None if Redis cannot tell
    in_progress: int
    oldest_in_progress: str | None  # stream entry id


def entry_time(entry_id: str) -> datetime:
    """When a stream entry was added: its id's first part is milliseconds since the epoch."""
    return datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, UTC)


def assess(
    readings: Readings, now: datetime, *, stuck_after_seconds: float, ingest_limit: float
) -> ServiceStatus:
    problems = []
    if readings.heartbeat is None:
        problems.append("no worker has reported in the last minute: events are not delivered")
    # Without the group every stored event is still to be read (it starts at the first).
    undelivered = readings.lag if readings.group_exists else readings.stored
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
        ),
        redis_memory=MemoryStatus(
            used_bytes=readings.used_memory,
            max_bytes=readings.maxmemory or None,
            used_fraction=used_fraction,
        ),
    )


async def read(redis: Redis) -> Readings:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xlen(keys.EVENTS_STREAM)
        pipe.get(keys.WORKER_HEARTBEAT)
        pipe.info("memory")
        pipe.xinfo_groups(keys.EVENTS_STREAM)
        pipe.xpending(keys.EVENTS_STREAM, keys.DELIVERY_GROUP)
        stored, heartbeat, memory, groups, pending = await pipe.execute(raise_on_error=False)
    for reply in (stored, heartbeat, memory):
        if isinstance(reply, Exception):
            raise reply
    # No stream yet ("no such key") or no group yet (NOGROUP): nothing read, nothing pending.
    if isinstance(groups, ResponseError):
        groups = []
    if isinstance(pending, ResponseError):
        pending = {"pending": 0, "min": None}
    group = next((g for g in groups if g["name"] == keys.DELIVERY_GROUP.encode()), None)
    oldest = pending["min"]
    return Readings(
        stored=stored,
        heartbeat=heartbeat.decode() if heartbeat else None,
        used_memory=int(memory["used_memory"]),
        maxmemory=int(memory["maxmemory"]),
        group_exists=group is not None,
        lag=None if group is None or group.get("lag") is None else int(group["lag"]),
        in_progress=int(pending["pending"]),
        oldest_in_progress=oldest.decode() if isinstance(oldest, bytes) else oldest,
    )


@requires_api_key
async def status(request: Request) -> Response:
    state = app_state(request)
    readings = await read(state.redis)
    stuck_after = STUCK_AFTER_LEASES * lease_ms(state.config) / 1000
    report = assess(
        readings,
        state.clock(),
        stuck_after_seconds=stuck_after,
        ingest_limit=state.config.ingest_memory_limit,
    )
    return json_response(report)


routes = [Route("/api/status", status, methods=["GET"])]
