"""What the worker runs besides the consumer: retries as arq jobs, and maintenance."""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry

from service.core.clock import system_clock
from service.core.ids import LeaseTag, epoch_ms, format_timestamp, lease_owner
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
    deliverer: Deliverer = ctx["deliverer"]
    if not await deliverer.retry(delivery_id, owner, rate_slot_taken=rate_slot_taken):
        # Its endpoint is saturated: come back later instead of holding a job slot.
        raise Retry(defer=deliverer.saturated_backoff())


async def heartbeat(ctx: dict[str, Any]) -> None:
    # Expires after a few missed beats, so a stale value means no worker is alive.
    status: StatusStore = ctx["stores"].status
    await status.beat(format_timestamp(system_clock()), ttl_seconds=HEARTBEAT_SECONDS * 4)
    deliverer: Deliverer = ctx["deliverer"]
    deliverer.outcomes.summary_if_due()


async def requeue_expired_leases(ctx: dict[str, Any]) -> None:
    """A delivery whose lease ran out with no attempt under way (its worker died between
    scheduling a retry and handing it to arq) gets a new job."""
    deliverer: Deliverer = ctx["deliverer"]
    deliveries: DeliveryStore = ctx["stores"].deliveries
    now_ms = epoch_ms(system_clock())
    for delivery_id in await deliveries.expired_leases(now_ms - LEASE_GRACE_MS):
        delivery = await deliveries.get(delivery_id)
        if delivery is None or delivery.status != "pending":
            await deliveries.forget_lease(delivery_id)
            continue
        logger.info("re-queuing %s: its lease expired with no attempt under way", delivery_id)
        await deliverer.enqueue(
            delivery_id, lease_owner(delivery_id, LeaseTag.SWEEP, now_ms), delay=0
        )
        # Not again next round while that job waits its turn.
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
