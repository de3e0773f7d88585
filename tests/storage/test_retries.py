"""The retry set (service.storage.retries) on a real Redis: scheduling once per attempt, taking
what is due in batches and hiding it for a visibility window, done and rescheduled; one slot
per partition on a cluster; manual re-queues through it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from config import Config
from service.core.ids import LeaseTag, epoch_ms, lease_owner, retry_member
from service.core.outcome import Verdict
from service.storage import keys
from service.storage.deliveries import DeliveryStore, lease_ms
from service.storage.retries import RetrySchedule, recover_failed, requeue_delivery

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

NOW = datetime(2026, 3, 3, 10, 0, 0, tzinfo=UTC)
NOW_MS = epoch_ms(NOW)
VISIBILITY_MS = 30_000


def schedule_at(redis: Redis) -> RetrySchedule:
    return RetrySchedule(redis, clock=lambda: NOW)


def owner(n: int, webhook_id: int = 1) -> str:
    return lease_owner(f"dlv_{n}-0_{webhook_id}", LeaseTag.ATTEMPT, 2)


async def scores(redis: Redis, partition: int = 0) -> dict[str, int]:
    found = await redis.zrange(keys.retries(partition), 0, -1, withscores=True)
    return {member.decode(): int(score) for member, score in found}


class TestSchedule:
    async def test_an_attempt_is_due_after_its_delay(self, real_redis: Redis) -> None:
        await schedule_at(real_redis).schedule("dlv_1-0_1", owner(1), delay=5.0)
        assert await scores(real_redis) == {owner(1): NOW_MS + 5000}
        assert keys.retries(0) == "mh:retries"  # one partition: no hash tag

    async def test_scheduling_the_same_attempt_again_is_a_no_op(self, real_redis: Redis) -> None:
        retries = schedule_at(real_redis)
        await retries.schedule("dlv_1-0_1", owner(1), delay=5.0)
        await retries.schedule("dlv_1-0_1", owner(1), delay=0.0)
        assert await scores(real_redis) == {owner(1): NOW_MS + 5000}

    async def test_a_wait_for_a_rate_slot_is_another_attempt(self, real_redis: Redis) -> None:
        retries = schedule_at(real_redis)
        await retries.schedule("dlv_1-0_1", owner(1), delay=0.0)
        await retries.schedule("dlv_1-0_1", owner(1), delay=1.0, rate_slot_taken=True)
        assert await scores(real_redis) == {
            owner(1): NOW_MS,
            retry_member(owner(1), rate_slot_taken=True): NOW_MS + 1000,
        }


class TestTakeDue:
    async def test_takes_the_due_oldest_first_and_hides_them(self, real_redis: Redis) -> None:
        retries = schedule_at(real_redis)
        for n, delay in enumerate([0.2, 0.1, 0.0, 10.0]):
            await retries.schedule(f"dlv_{n}-0_1", owner(n), delay=delay)
        due = await retries.take_due(0, now_ms=NOW_MS + 500, limit=10, visibility_ms=VISIBILITY_MS)
        assert due.members == [owner(2), owner(1), owner(0)]
        assert due.next_due_ms == NOW_MS + 10_000  # the one not due yet
        hidden = NOW_MS + 500 + VISIBILITY_MS
        assert await scores(real_redis) == {
            owner(2): hidden, owner(1): hidden, owner(0): hidden, owner(3): NOW_MS + 10_000
        }  # fmt: skip
        # Nobody else takes them meanwhile.
        again = await retries.take_due(0, now_ms=NOW_MS + 501, limit=10, visibility_ms=1)
        assert again.members == []

    async def test_a_batch_takes_at_most_the_limit(self, real_redis: Redis) -> None:
        retries = schedule_at(real_redis)
        for n in range(5):
            await retries.schedule(f"dlv_{n}-0_1", owner(n), delay=0.0)
        first = await retries.take_due(0, now_ms=NOW_MS, limit=3, visibility_ms=VISIBILITY_MS)
        second = await retries.take_due(0, now_ms=NOW_MS, limit=3, visibility_ms=VISIBILITY_MS)
        assert (len(first.members), len(second.members)) == (3, 2)
        assert set(first.members) | set(second.members) == {owner(n) for n in range(5)}
        assert first.next_due_ms == NOW_MS  # more due: take again at once

    async def test_what_a_dead_taker_held_comes_due_again(self, real_redis: Redis) -> None:
        retries = schedule_at(real_redis)
        await retries.schedule("dlv_1-0_1", owner(1), delay=0.0)
        await retries.take_due(0, now_ms=NOW_MS, limit=10, visibility_ms=VISIBILITY_MS)
        later = NOW_MS + VISIBILITY_MS
        due = await retries.take_due(0, now_ms=later, limit=10, visibility_ms=VISIBILITY_MS)
        assert due.members == [owner(1)]

    async def test_hiding_again_keeps_attempts_under_way_hidden(self, real_redis: Redis) -> None:
        retries = schedule_at(real_redis)
        await retries.schedule("dlv_1-0_1", owner(1), delay=0.0)
        await retries.schedule("dlv_2-0_1", owner(2), delay=0.0)
        await retries.take_due(0, now_ms=NOW_MS, limit=10, visibility_ms=VISIBILITY_MS)
        await retries.done(owner(2))
        await retries.hide(0, [owner(1), owner(2)], until_ms=NOW_MS + 2 * VISIBILITY_MS)
        # The done one stays done; the other is hidden a window longer.
        assert await scores(real_redis) == {owner(1): NOW_MS + 2 * VISIBILITY_MS}

    async def test_an_empty_set(self, real_redis: Redis) -> None:
        due = await schedule_at(real_redis).take_due(
            0, now_ms=NOW_MS, limit=10, visibility_ms=VISIBILITY_MS
        )
        assert (due.members, due.next_due_ms) == ([], None)


class TestDoneAndReschedule:
    async def test_done_forgets_the_attempt(self, real_redis: Redis) -> None:
        retries = schedule_at(real_redis)
        await retries.schedule("dlv_1-0_1", owner(1), delay=0.0)
        await retries.done(owner(1))
        assert await scores(real_redis) == {}

    async def test_reschedule_sets_the_next_due_time(self, real_redis: Redis) -> None:
        retries = schedule_at(real_redis)
        await retries.schedule("dlv_1-0_1", owner(1), delay=0.0)
        await retries.take_due(0, now_ms=NOW_MS, limit=10, visibility_ms=VISIBILITY_MS)
        await retries.reschedule(owner(1), delay=7.5)
        assert await scores(real_redis) == {owner(1): NOW_MS + 7500}

    async def test_reschedule_does_not_bring_back_a_done_attempt(self, real_redis: Redis) -> None:
        retries = schedule_at(real_redis)
        await retries.reschedule(owner(1), delay=1.0)
        assert await scores(real_redis) == {}


class TestPartitioned:
    async def test_each_attempt_in_its_deliverys_partition_one_slot_per_call(
        self, partitioned_redis: Redis
    ) -> None:
        """On the slot-checking server a call over two slots is refused (CROSSSLOT)."""
        partitioning = keys.partitioning()
        retries = schedule_at(partitioned_redis)
        webhooks = range(1, 33)  # two of each of the 16 partitions
        for webhook_id in webhooks:
            await retries.schedule(f"dlv_1-0_{webhook_id}", owner(1, webhook_id), delay=0.0)
        taken: dict[int, list[str]] = {}
        for partition in partitioning.all():
            assert keys.retries(partition).startswith("mh:{p")  # the partition's hash tag
            due = await retries.take_due(
                partition, now_ms=NOW_MS, limit=10, visibility_ms=VISIBILITY_MS
            )
            taken[partition] = due.members
            await retries.hide(partition, due.members, until_ms=NOW_MS + 2 * VISIBILITY_MS)
        for webhook_id in webhooks:
            partition = partitioning.of_webhook(webhook_id)
            assert owner(1, webhook_id) in taken[partition]
            await retries.reschedule(owner(1, webhook_id), delay=1.0)
            await retries.done(owner(1, webhook_id))
        assert sum(len(members) for members in taken.values()) == len(webhooks)
        for partition in partitioning.all():
            assert await partitioned_redis.zcard(keys.retries(partition)) == 0


class TestRequeue:
    async def failed_delivery(self, redis: Redis, n: int) -> None:
        store = DeliveryStore(redis)
        id_ = f"dlv_{n}-0_1"
        first = lease_owner(id_, LeaseTag.ATTEMPT, 1)
        await store.claim(
            delivery_id=id_,
            webhook_id=1,
            event_id=f"evt_{n}-0",
            event_type="email.open",
            owner=first,
            now_ms=NOW_MS,
            lease_ms=1000,
            payload=b"{}",
        )
        delivery = await store.get(id_)
        assert delivery is not None
        await store.record(
            delivery,
            owner=first,
            now_ms=NOW_MS,
            verdict=Verdict.FAILED,
            payload=b"{}",
            error="http_status",
            disable_after_ms=10**9,
            retention_count=100,
            retention_seconds=10**6,
        )

    async def test_a_manual_retry_is_scheduled_now(self, real_redis: Redis) -> None:
        await self.failed_delivery(real_redis, 1)
        store, retries = DeliveryStore(real_redis), schedule_at(real_redis)
        delivery = await store.get("dlv_1-0_1")
        assert delivery is not None
        assert delivery.status == "failed"
        later = NOW_MS + 1000
        lease = lease_ms(Config())
        requeued = await requeue_delivery(
            store, retries, delivery, LeaseTag.MANUAL_RETRY, now_ms=later, lease_ms=lease
        )
        assert requeued is True
        manual = lease_owner("dlv_1-0_1", LeaseTag.MANUAL_RETRY, later)
        assert await scores(real_redis) == {manual: NOW_MS}
        # Under way now: a second retry is refused, and nothing more is scheduled.
        again = await requeue_delivery(
            store, retries, delivery, LeaseTag.MANUAL_RETRY, now_ms=later + 1, lease_ms=lease
        )
        assert again is False
        assert list(await scores(real_redis)) == [manual]

    async def test_recover_schedules_each_failed_delivery(self, real_redis: Redis) -> None:
        for n in range(3):
            await self.failed_delivery(real_redis, n)
        requeued = await recover_failed(
            DeliveryStore(real_redis),
            schedule_at(real_redis),
            1,
            since_ms=0,
            now_ms=NOW_MS,
            lease_ms=lease_ms(Config()),
        )
        assert requeued == 3
        assert set(await scores(real_redis)) == {
            lease_owner(f"dlv_{n}-0_1", LeaseTag.RECOVER, NOW_MS) for n in range(3)
        }
