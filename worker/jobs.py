"""What the worker runs besides the consumer and the retry runner: maintenance, at fixed
times (MAINTENANCE), and for one release the arq job that moves retries enqueued by the
version before into the retry set."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from service.core.clock import system_clock
from service.core.ids import LeaseTag, epoch_ms, format_timestamp, lease_owner
from service.storage import keys
from service.storage.deliveries import DeliveryStore
from service.storage.events import EventStore
from service.storage.status import StatusStore
from worker.deliverer import Deliverer

logger = logging.getLogger("mailhooks.worker")

HEARTBEAT_SECONDS = 15
LEASE_GRACE_MS = 5_000


async def retry_delivery(
    ctx: dict[str, Any], delivery_id: str, owner: str, rate_slot_taken: bool = False
) -> None:
    """A retry job the version before this one enqueued in arq's queue: moved into the retry
    set as arq starts it (at its due time), due now. Registered for one release, so that
    retries scheduled across the upgrade are not lost; then removed (docs/delivery.md)."""
    await ctx["stores"].retries.schedule(
        delivery_id, owner, delay=0, rate_slot_taken=rate_slot_taken
    )


async def heartbeat(ctx: dict[str, Any]) -> None:
    # Expires after a few missed beats, so a stale value means no worker is alive.
    status: StatusStore = ctx["stores"].status
    await status.beat(format_timestamp(system_clock()), ttl_seconds=HEARTBEAT_SECONDS * 4)
    deliverer: Deliverer = ctx["deliverer"]
    deliverer.outcomes.summary_if_due()


async def requeue_expired_leases(ctx: dict[str, Any]) -> None:
    """A delivery whose lease ran out with no attempt under way or scheduled (its worker
    died between recording an attempt and scheduling the next) is scheduled now."""
    deliverer: Deliverer = ctx["deliverer"]
    deliveries: DeliveryStore = ctx["stores"].deliveries
    now_ms = epoch_ms(system_clock())
    # One lease index per partition (service.storage.keys.DELIVERY_LEASES).
    for partition in keys.partitioning().all():
        expired = await deliveries.expired_leases(now_ms - LEASE_GRACE_MS, partition=partition)
        for delivery_id in expired:
            delivery = await deliveries.get(delivery_id)
            if delivery is None or delivery.status != "pending":
                await deliveries.forget_lease(delivery_id)
                continue
            logger.info("re-queuing %s: its lease expired with no attempt under way", delivery_id)
            await deliverer.enqueue(
                delivery_id, lease_owner(delivery_id, LeaseTag.SWEEP, now_ms), delay=0
            )
            # Not again next round while that attempt waits its turn.
            await deliveries.extend_lease_index(delivery_id, now_ms + deliverer.lease_ms)


async def trim_events(ctx: dict[str, Any]) -> None:
    """Appends trim the stream as they go, but ingest stops short of a full Redis: then only
    this frees the delivered backlog's memory, so that ingest can resume."""
    events: EventStore = ctx["stores"].events
    if removed := await events.trim():
        logger.info("trimmed %d delivered events past EVENTS_MAXLEN", removed)


CONSUMER_IDLE_LIMIT_MS = 24 * 3600 * 1000


async def forget_dead_consumers(
    ctx: dict[str, Any], idle_limit_ms: int = CONSUMER_IDLE_LIMIT_MS
) -> None:
    """Every process joins the group under a new name; drop those idle for a day with nothing
    pending (anything pending is reclaimed by the live consumers first), in every
    partition's group."""
    deleted = []
    for stream in ctx["stores"].streams:
        deleted += await stream.forget_dead_consumers(idle_limit_ms)
    if deleted:
        logger.info("forgot %d consumers idle with nothing pending", len(deleted))


Job = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Periodic:
    """A maintenance job and its times: every `every` seconds (a divisor of 60, or 3600),
    `offset` seconds past each multiple of it (UTC), and once at start if `at_startup`."""

    job: Job
    every: int
    offset: int = 0
    at_startup: bool = False

    def next_run(self, now: float) -> float:
        """The first of its times after `now` (seconds since the epoch)."""
        return ((now - self.offset) // self.every + 1) * self.every + self.offset


# Spread over each ten seconds so that they do not all run at once. arq runs them as cron
# jobs on a single Redis, worker/runner.py on a cluster: the same times either way.
MAINTENANCE = (
    Periodic(heartbeat, every=HEARTBEAT_SECONDS, at_startup=True),
    Periodic(requeue_expired_leases, every=10, offset=5),
    Periodic(trim_events, every=10, offset=8),
    Periodic(forget_dead_consumers, every=3600, offset=17 * 60),
)
