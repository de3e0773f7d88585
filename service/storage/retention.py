"""Deleting the finished deliveries a webhook no longer keeps, off the delivery path.

A finished delivery expires after the retention age, and each webhook keeps the newest
`retention count` of each finished status. Recording an outcome (record.lua) only says when
a webhook holds more than that; the DeliveryStore then asks for a prune here, run in the
background: at most one per webhook at a time, and at most one per interval.

A prune has two phases, so that every key its script touches arrives in KEYS:
1. Plan (reads only): the oldest members of the webhook's succeeded and failed indexes, as
   many as are older than the age or beyond the count, at most PRUNE_BATCH of each.
2. Apply (prune_deliveries.lua), given each candidate's delivery and attempts keys: checks
   each again (re-queued since, it is pending and stays; finished, it goes only if still
   older than the age or beyond the count) and deletes it with its index members.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.ids import member_delivery, ms_member_bound
from service.storage import keys, scripts
from service.storage.background import SingleFlight
from service.storage.connection import RedisClient, register_script

logger = logging.getLogger("mailhooks.retention")

PRUNE_INTERVAL_SECONDS = 1.0
# Candidates one plan takes per finished status, and plans one prune makes at most: up to
# 10,000 a second per webhook, more than one worker delivers, in scripts short enough
# (100 deletions each) that the claims and outcomes queued behind one wait well under a
# millisecond. Batches of 500 held Redis long enough to show in the delivery latency's p99.
PRUNE_BATCH = 100
PRUNE_ROUNDS = 100

_FINISHED = ("succeeded", "failed")
_PRUNE = scripts.load("prune_deliveries")


def prune_call(
    *,
    all_index: str,
    succeeded_index: str,
    failed_index: str,
    stream: str,
    lane: str,
    candidate_keys: Sequence[tuple[str, str]],
    retention_count: int,
    cutoff: str,
    members: Sequence[str],
) -> scripts.ScriptArgs:
    """KEYS and ARGV of prune_deliveries.lua: per candidate (delivery key, attempts key),
    and its member in `members`, in the same order."""
    script_keys = [all_index, succeeded_index, failed_index, stream, lane]
    for pair in candidate_keys:
        script_keys += pair
    return script_keys, [retention_count, cutoff, *members]


@dataclass(slots=True)
class PrunePlan:
    webhook_id: int
    retention_count: int
    cutoff: str  # index members below this are older than the retention age
    members: list[str] = field(default_factory=list)  # the deliveries to delete
    full: bool = False  # a status had more to go than one plan takes


@dataclass(frozen=True, slots=True)
class _Request:
    now_ms: int
    retention_count: int
    retention_seconds: int


class DeliveryPruner:
    def __init__(
        self, redis: RedisClient, *, interval_seconds: float = PRUNE_INTERVAL_SECONDS
    ) -> None:
        self._redis = redis
        self._script = register_script(redis, _PRUNE.source)
        self._background = SingleFlight(
            self._prune_requested,
            rest_seconds=interval_seconds,
            logger=logger,
            what="pruning finished deliveries",
        )
        self._requests: dict[int, _Request] = {}  # the latest, by webhook

    def request(
        self, webhook_id: int, *, now_ms: int, retention_count: int, retention_seconds: int
    ) -> None:
        """Prune the webhook in the background, soon (see the module docstring)."""
        self._requests[webhook_id] = _Request(now_ms, retention_count, retention_seconds)
        self._background.request(webhook_id)

    async def _prune_requested(self, webhook_id: int) -> bool:
        request = self._requests.pop(webhook_id)
        await self.prune(
            webhook_id,
            now_ms=request.now_ms,
            retention_count=request.retention_count,
            retention_seconds=request.retention_seconds,
        )
        return True  # rest: at most one prune per webhook per interval

    async def drain(self) -> None:
        """Wait for the background prunes, and any due, without resting (tests; a worker's
        shutdown may cut them short: they are safe to cut, and the next outcome recorded for
        that webhook asks again)."""
        await self._background.drain()

    async def prune(
        self, webhook_id: int, *, now_ms: int, retention_count: int, retention_seconds: int
    ) -> int:
        """Delete the webhook's finished deliveries older than `retention_seconds` at
        `now_ms` or beyond the newest `retention_count` of their status, a plan and a
        script at a time. Returns how many went."""
        deleted = 0
        for _ in range(PRUNE_ROUNDS):
            plan = await self.plan(
                webhook_id,
                now_ms=now_ms,
                retention_count=retention_count,
                retention_seconds=retention_seconds,
            )
            if plan is None:
                break
            went = await self.apply(plan)
            deleted += went
            if not plan.full or not went:
                break
        return deleted

    async def plan(
        self, webhook_id: int, *, now_ms: int, retention_count: int, retention_seconds: int
    ) -> PrunePlan | None:
        """The oldest of each finished index, as far as retention lets them go (reads only)."""
        cutoff = ms_member_bound(now_ms - retention_seconds * 1000)
        plan = PrunePlan(webhook_id, retention_count, cutoff)
        async with self._redis.pipeline(transaction=False) as pipe:
            for status in _FINISHED:
                pipe.zcard(keys.deliveries(webhook_id, status))
                pipe.zrange(keys.deliveries(webhook_id, status), 0, PRUNE_BATCH - 1)
            replies = await pipe.execute()
        for count, oldest in zip(replies[::2], replies[1::2], strict=True):
            # Members sort by creation time: the expired ones are the oldest.
            expired = sum(1 for member in oldest if member.decode() < cutoff)
            going = oldest[: max(expired, count - retention_count, 0)]
            plan.members += [member.decode() for member in going]
            plan.full = plan.full or len(going) == PRUNE_BATCH
        return plan if plan.members else None

    async def apply(self, plan: PrunePlan) -> int:
        """Delete what `plan` names that retention still lets go. Returns how many went."""
        webhook_id = plan.webhook_id
        # Its account's lane (in the webhook's partition): a webhook without an account
        # field is the default account's; a deleted one has no lane to wait for.
        fields = await self._redis.hmget(keys.webhook(webhook_id), ["id", "account"])  # type: ignore[misc]
        id_, account = fields
        owner = "" if id_ is None else account.decode() if account else DEFAULT_ACCOUNT
        partition = keys.partitioning().of_webhook(webhook_id)
        script_keys, args = prune_call(
            all_index=keys.deliveries(webhook_id),
            succeeded_index=keys.deliveries(webhook_id, "succeeded"),
            failed_index=keys.deliveries(webhook_id, "failed"),
            # The stream of the webhook's partition (its account's), its deliveries' slot.
            stream=keys.events_stream(partition),
            lane=keys.lane_in(partition, owner),
            candidate_keys=[
                (keys.delivery(id_), keys.delivery_attempts(id_))
                for id_ in map(member_delivery, plan.members)
            ],
            retention_count=plan.retention_count,
            cutoff=plan.cutoff,
            members=plan.members,
        )
        return int(await self._script(keys=script_keys, args=args))
