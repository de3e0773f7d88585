"""The attempts scheduled for later: one sorted set per partition (`keys.retries`), scored by
due time, in the slot of its partition's deliveries. Retries on the schedule, manual retries
and `recover`, hand-offs from a saturated endpoint, waits for a rate-limit slot and the lease
sweep's re-queues all land here; the worker's retry runner (worker/retries.py) takes what is
due in batches.

Not arq jobs: arq writes a job's keys (queue, job, in-progress, retry) together in one
WATCH/MULTI, which a Redis Cluster refuses across slots, and it starts due jobs one at a time
in its poll loop, late under load (docs/delivery.md#how-it-works).

Taking is at-least-once: `take_due` hides what it returns for a visibility window instead of
removing it, and the taker removes each when its attempt is over (`done`) or sets its next
due time (`reschedule`). A taker that dies loses nothing: its members come due again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.core.clock import Clock, system_clock
from service.core.ids import LeaseTag, epoch_ms, lease_owner, parse_retry_member, retry_member
from service.storage import keys, scripts
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import RedisClient, autopipeline_for, register_script
from service.storage.deliveries import DeliveryStore, StoredDelivery

_TAKE_DUE = scripts.load("take_due_retries")


def take_due_call(
    *, retries: str, now_ms: int, limit: int, hidden_until: int
) -> scripts.ScriptArgs:
    """KEYS and ARGV of take_due_retries.lua."""
    return [retries], [now_ms, limit, hidden_until]


def partition_of(member: str) -> int:
    """The partition whose set holds `member`: its delivery's."""
    return keys.partitioning().of_delivery(parse_retry_member(member)[0])


@dataclass(frozen=True, slots=True)
class Due:
    """What one `take_due` took, and when the earliest attempt left in the set is due."""

    members: list[str]
    next_due_ms: int | None


class RetrySchedule:
    def __init__(
        self,
        redis: RedisClient,
        pipeline: AutoPipeline | None = None,
        *,
        clock: Clock = system_clock,
    ) -> None:
        # The worker's schedulings travel with its claims and outcomes (one round trip).
        self._pipeline = pipeline or autopipeline_for(redis)
        self._script = register_script(redis, _TAKE_DUE.source)
        self._clock = clock

    def _now_ms(self) -> int:
        return epoch_ms(self._clock())

    async def schedule(
        self, delivery_id: str, owner: str, *, delay: float, rate_slot_taken: bool = False
    ) -> None:
        """Attempt `delivery_id` as lease `owner` in `delay` seconds. Scheduling the same
        attempt again (same owner and rate flag) is a no-op, however far the first is due.
        `rate_slot_taken`: the delay is the wait for the webhook's rate-limit slot, taken
        already; the attempt must not take another."""
        member = retry_member(owner, rate_slot_taken=rate_slot_taken)
        due = self._now_ms() + int(delay * 1000)
        await self._pipeline.execute("ZADD", _key(member), "NX", due, member)

    async def take_due(self, partition: int, *, now_ms: int, limit: int, visibility_ms: int) -> Due:
        """Up to `limit` attempts of `partition` due by `now_ms`, oldest due first, each
        hidden from every other taker for `visibility_ms` (then due again unless `done`,
        `reschedule`d or `hide`n longer)."""
        script_keys, args = take_due_call(
            retries=keys.retries(partition),
            now_ms=now_ms,
            limit=limit,
            hidden_until=now_ms + visibility_ms,
        )
        members, next_due = await self._pipeline.script(self._script, script_keys, args)
        return Due(
            [member.decode() for member in members],
            int(float(next_due)) if next_due else None,
        )

    async def hide(self, partition: int, members: Sequence[str], *, until_ms: int) -> None:
        """Keep `members` (taken, attempts still under way) hidden until `until_ms`; any
        already done stay done."""
        if members:
            scores = [value for member in members for value in (until_ms, member)]
            await self._pipeline.execute("ZADD", keys.retries(partition), "XX", *scores)

    async def done(self, member: str) -> None:
        """The attempt `member` is over (made, or found needless): forget it."""
        await self._pipeline.execute("ZREM", _key(member), member)

    async def reschedule(self, member: str, *, delay: float) -> None:
        """Take `member` up again in `delay` seconds (its endpoint was saturated)."""
        due = self._now_ms() + int(delay * 1000)
        await self._pipeline.execute("ZADD", _key(member), "XX", due, member)


def _key(member: str) -> str:
    return keys.retries(partition_of(member))


async def requeue_delivery(
    deliveries: DeliveryStore,
    retries: RetrySchedule,
    delivery: StoredDelivery,
    tag: LeaseTag,
    *,
    now_ms: int,
    lease_ms: int,
) -> bool:
    """Make `delivery` pending again under a new lease and have it attempted now (a manual
    retry, a recover); False if an attempt holds it already."""
    owner = lease_owner(delivery.id, tag, now_ms)
    if not await deliveries.requeue(delivery, owner=owner, now_ms=now_ms, lease_ms=lease_ms):
        return False
    # A crash right here leaves it pending under a lease nobody attempts: the worker's lease
    # sweep schedules it once the lease runs out.
    await retries.schedule(delivery.id, owner, delay=0)
    return True


async def recover_failed(
    deliveries: DeliveryStore,
    retries: RetrySchedule,
    webhook_id: int,
    *,
    since_ms: int,
    now_ms: int,
    lease_ms: int,
) -> int:
    """Re-queue every failed delivery of the webhook created since `since_ms`: how many."""
    requeued = 0
    for delivery in await deliveries.failed_since(webhook_id, since_ms):
        requeued += await requeue_delivery(
            deliveries, retries, delivery, LeaseTag.RECOVER, now_ms=now_ms, lease_ms=lease_ms
        )
    return requeued
