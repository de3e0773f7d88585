"""Delivery records on a real Redis: the lease protocol and retention."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.ids import delivery_id
from service.core.outcome import Verdict
from service.storage import keys
from service.storage.deliveries import Claim, DeliveryStore, StoredDelivery
from service.storage.retention import DeliveryPruner
from service.storage.webhooks import WebhookChanges, WebhookStore
from tests.partitioned import assert_tagged, in_partition

SUCCEEDED, RETRY, FAILED = Verdict.SUCCEEDED, Verdict.RETRY, Verdict.FAILED

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

LEASE = 1000
RECORD_DEFAULTS = {"disable_after_ms": 10**9, "retention_count": 100, "retention_seconds": 3600}


async def claim(store: DeliveryStore, owner: str, now: int, id_: str = "dlv_1-0_1") -> Claim:
    result = await store.claim(
        delivery_id=id_, webhook_id=1, event_id="evt_1-0", event_type="email.open",
        owner=owner, now_ms=now, lease_ms=LEASE,
    )  # fmt: skip
    return result.claim


async def delivery(store: DeliveryStore, id_: str = "dlv_1-0_1") -> StoredDelivery:
    found = await store.get(id_)
    assert found is not None
    return found


class TestLease:
    async def test_one_owner_at_a_time(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        assert await claim(store, "a", now=0) is Claim.NEW
        assert await claim(store, "b", now=500) is Claim.SKIP  # a holds it
        assert await claim(store, "a", now=500) is Claim.GO  # a may renew
        assert await claim(store, "b", now=500 + LEASE + 1) is Claim.GO  # a's lease ran out

    async def test_finished_deliveries_are_never_claimed_again(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        await claim(store, "a", now=0)
        status = await store.record(
            await delivery(store),
            owner="a",
            now_ms=10,
            verdict=SUCCEEDED,
            **RECORD_DEFAULTS,
        )
        assert status == "succeeded"
        assert await claim(store, "b", now=10**9) is Claim.SKIP

    async def test_an_outcome_from_a_lost_lease_changes_nothing(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        await claim(store, "a", now=0)
        await claim(store, "b", now=LEASE + 1)  # a was presumed dead
        status = await store.record(
            await delivery(store), owner="a", now_ms=LEASE + 2, verdict=SUCCEEDED,
            attempt_json=b'{"number":1}', **RECORD_DEFAULTS,
        )  # fmt: skip
        assert status == "lost"
        found = await delivery(store)
        assert found.status == "pending"
        assert found.attempts == 1  # the attempt happened, and is logged

    async def test_retry_hands_the_lease_to_the_next_job(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        await claim(store, "a", now=0)
        status = await store.record(
            await delivery(store), owner="a", now_ms=100, verdict=RETRY, next_attempt_ms=5000,
            next_owner="job-2", lease_ms=LEASE, payload=b"{}", **RECORD_DEFAULTS,
        )  # fmt: skip
        assert status == "pending"
        assert await claim(store, "someone", now=5000) is Claim.SKIP
        assert await claim(store, "job-2", now=5000) is Claim.GO
        assert (await delivery(store)).payload == b"{}"
        assert await store.expired_leases(before_ms=10**12) == ["dlv_1-0_1"]

    async def test_an_outcome_sent_twice_is_recorded_once(self, real_redis: Redis) -> None:
        """As when the connection drops after Redis ran the script and the client re-sends
        it: the attempt is logged once and the repeat answers as the first run did."""
        store = DeliveryStore(real_redis)
        await claim(store, "a", now=0)
        first = await delivery(store)
        retry = {
            "owner": "a", "now_ms": 100, "verdict": "retry", "attempt_json": b'{"number":1}',
            "attempt_number": 1, "next_attempt_ms": 5000, "next_owner": "job-2",
            "lease_ms": LEASE, "payload": b"{}", **RECORD_DEFAULTS,
        }  # fmt: skip
        assert await store.record(first, **retry) == "pending"
        assert await store.record(first, **retry) == "pending"
        assert (await delivery(store)).attempts == 1
        assert await store.attempts("dlv_1-0_1") == [b'{"number":1}']

        await claim(store, "job-2", now=5000)
        second = await delivery(store)
        success = {
            "owner": "job-2", "now_ms": 5100, "verdict": "succeeded",
            "attempt_json": b'{"number":2}', **RECORD_DEFAULTS,
        }  # fmt: skip
        assert await store.record(second, **success) == "succeeded"
        assert await store.record(second, **success) == "succeeded"
        found = await delivery(store)
        assert (found.status, found.attempts) == ("succeeded", 2)
        assert len(await store.attempts("dlv_1-0_1")) == 2

    async def test_requeue_a_failed_delivery(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        await claim(store, "a", now=0)
        await store.record(
            await delivery(store), owner="a", now_ms=10, verdict=FAILED, payload=b"{}",
            **RECORD_DEFAULTS,
        )  # fmt: skip
        failed = await delivery(store)
        assert failed.status == "failed"
        assert await real_redis.ttl(keys.delivery(failed.id)) > 0
        assert await store.requeue(failed, owner="manual", now_ms=20, lease_ms=LEASE)
        assert await real_redis.ttl(keys.delivery(failed.id)) == -1  # kept while pending
        assert await claim(store, "manual", now=30) is Claim.GO
        # Already being attempted: a second manual retry is refused.
        assert not await store.requeue(await delivery(store), owner="x", now_ms=40, lease_ms=LEASE)

    async def test_a_delivery_waiting_for_its_next_retry_can_be_retried_now(
        self, real_redis: Redis
    ) -> None:
        store = DeliveryStore(real_redis)
        await claim(store, "a", now=0)
        await store.record(
            await delivery(store), owner="a", now_ms=100, verdict=RETRY, next_attempt_ms=10**7,
            next_owner="job-2", lease_ms=LEASE, payload=b"{}", **RECORD_DEFAULTS,
        )  # fmt: skip
        assert await store.requeue(
            await delivery(store), owner="manual", now_ms=200, lease_ms=LEASE
        )
        assert await claim(store, "job-2", now=500) is Claim.SKIP  # the old job stands down
        assert await claim(store, "manual", now=300) is Claim.GO


class TestWebhookHealth:
    async def test_410_and_long_failure_disable_success_heals(self, real_redis: Redis) -> None:
        webhooks = WebhookStore(real_redis)
        hook = await webhooks.create(
            account=DEFAULT_ACCOUNT,
            url="https://a.example/",
            events=("*",),
            secret="s" * 8,
            active=True,
            now="t",
            limit=100,
        )
        store = DeliveryStore(real_redis)
        ids = [delivery_id(f"{n}-0", hook.id) for n in range(3)]
        for n, id_ in enumerate(ids):
            await store.claim(
                delivery_id=id_, webhook_id=hook.id, event_id=f"evt_{n}-0",
                event_type="email.open", owner="a", now_ms=0, lease_ms=LEASE,
            )  # fmt: skip
        defaults = {**RECORD_DEFAULTS, "disable_after_ms": 1000}
        await store.record(await delivery(store, ids[0]), owner="a", now_ms=0, verdict=RETRY,
                           next_owner="a", **defaults)  # fmt: skip
        assert await real_redis.hget(keys.webhook(hook.id), "failing_since") == b"0"
        status = await store.record(
            await delivery(store, ids[1]), owner="a", now_ms=1001, verdict=RETRY,
            next_owner="a", **defaults,
        )  # fmt: skip
        assert status == "disabled"
        assert (await webhooks.get(hook.id)).active is False  # type: ignore[union-attr]
        assert await real_redis.hgetall(keys.METRICS) == {b"webhooks_disabled|failing": b"1"}
        await webhooks.update(hook.id, DEFAULT_ACCOUNT, WebhookChanges(active=True), now="t2")
        await store.record(await delivery(store, ids[2]), owner="a", now_ms=2000,
                           verdict=SUCCEEDED, **defaults)  # fmt: skip
        assert await real_redis.hget(keys.webhook(hook.id), "failing_since") is None

    async def test_a_410_disables_once_however_many_answer_it(self, real_redis: Redis) -> None:
        hook = await WebhookStore(real_redis).create(
            account=DEFAULT_ACCOUNT, url="https://a.example/", events=("*",), secret="s" * 8,
            active=True, now="t", limit=100,
        )  # fmt: skip
        store = DeliveryStore(real_redis)
        for n in range(3):  # attempts in flight together, each answered 410
            id_ = delivery_id(f"{n}-0", hook.id)
            await store.claim(
                delivery_id=id_, webhook_id=hook.id, event_id=f"evt_{n}-0",
                event_type="email.open", owner="a", now_ms=0, lease_ms=LEASE,
            )  # fmt: skip
            status = await store.record(
                await delivery(store, id_), owner="a", now_ms=1, verdict=Verdict.GONE,
                **RECORD_DEFAULTS,
            )  # fmt: skip
            assert status == ("disabled" if n == 0 else "failed")
        # The metrics hash counts the webhook disabled, once: GET /metrics shows it.
        assert await real_redis.hgetall(keys.METRICS) == {b"webhooks_disabled|gone": b"1"}


class TestRetention:
    async def test_pending_deliveries_are_never_trimmed(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        await claim(store, "a", now=0, id_="dlv_0-0_1")  # stays pending
        for n in range(1, 5):
            id_ = f"dlv_{n}-0_1"
            await claim(store, "a", now=n, id_=id_)
            await store.record(
                await delivery(store, id_), owner="a", now_ms=n, verdict=FAILED,
                disable_after_ms=10**9, retention_count=2, retention_seconds=3600,
            )  # fmt: skip
        await store.drain()  # pruned in the background
        listed, _ = await store.page(1, status=None, before=None, limit=10)
        assert [d.id for d in listed] == ["dlv_4-0_1", "dlv_3-0_1", "dlv_0-0_1"]
        pending, _ = await store.page(1, status="pending", before=None, limit=10)
        assert [d.id for d in pending] == ["dlv_0-0_1"]

    async def test_paging_survives_the_cursor_delivery_expiring(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        for n in range(4):
            await claim(store, "a", now=n, id_=f"dlv_{n}-0_1")
        first, cursor = await store.page(1, status=None, before=None, limit=2)
        assert cursor is not None
        await real_redis.delete(keys.delivery(first[-1].id))  # expired meanwhile
        second, _ = await store.page(1, status=None, before=cursor, limit=2)
        assert [d.id for d in second] == ["dlv_1-0_1", "dlv_0-0_1"]

    async def test_each_webhook_keeps_the_newest_n(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        ids = [delivery_id(f"{n}-0", 1) for n in range(5)]
        for n, id_ in enumerate(ids):
            await claim(store, "a", now=n, id_=id_)
            await store.record(
                await delivery(store, id_), owner="a", now_ms=n, verdict=SUCCEEDED,
                disable_after_ms=10**9, retention_count=3, retention_seconds=3600,
            )  # fmt: skip
        await store.drain()  # pruned in the background
        page, _ = await store.page(1, status=None, before=None, limit=10)
        assert [d.id for d in page] == ids[:1:-1]
        assert await store.get(ids[0]) is None
        assert await store.get(ids[1]) is None
        assert await real_redis.ttl(keys.delivery(ids[4])) > 3500


class TestReadsForThePortal:
    async def test_finished_counts_by_interval_of_creation(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        outcomes = {1_000: SUCCEEDED, 1_500: FAILED, 1_999: SUCCEEDED, 2_000: SUCCEEDED}
        for now, verdict in outcomes.items():
            id_ = delivery_id(f"{now}-0", 1)
            await claim(store, "a", now=now, id_=id_)
            await store.record(
                await delivery(store, id_), owner="a", now_ms=now, verdict=verdict,
                **RECORD_DEFAULTS,
            )  # fmt: skip
        await claim(store, "a", now=1_200, id_=delivery_id("1200-0", 1))  # pending: not counted
        counts = await store.finished_counts([1, 2], [0, 1_000, 2_000, 3_000])
        assert counts == {
            1: {"succeeded": [0, 2, 1], "failed": [0, 1, 0]},
            2: {"succeeded": [0, 0, 0], "failed": [0, 0, 0]},
        }

    async def test_get_many_leaves_out_the_payload(self, real_redis: Redis) -> None:
        store = DeliveryStore(real_redis)
        await store.claim(
            delivery_id="dlv_1-0_1", webhook_id=1, event_id="evt_1-0", event_type="email.open",
            owner="a", now_ms=5, lease_ms=LEASE, payload=b"{}",
        )  # fmt: skip
        found, missing = await store.get_many(["dlv_1-0_1", "dlv_2-0_1"])
        assert missing is None
        assert found is not None
        assert (found.id, found.webhook_id, found.status, found.created_at_ms) == (
            "dlv_1-0_1", 1, "pending", 5,
        )  # fmt: skip
        assert found.payload is None
        assert await store.get_many([]) == []


class TestPartitioned:
    """With 16 partitions, on a Redis that refuses any script over two slots (CROSSSLOT): a
    delivery's keys, its webhook's indexes and its lease index are in its webhook's
    partition, which is its account's."""

    async def test_claim_record_requeue_prune_and_forget(self, partitioned_redis: Redis) -> None:
        redis = partitioned_redis
        partitions = keys.partitioning()
        hook = await WebhookStore(redis).create(
            account="acc_acme", url="https://a.example/", events=("*",), secret="s" * 8,
            active=True, now="t", limit=100,
        )  # fmt: skip
        partition = partitions.of_webhook(hook.id)
        assert partition == partitions.of_account("acc_acme") != 0
        store = DeliveryStore(redis)
        ids = [delivery_id(f"{n}-0", hook.id) for n in range(3)]
        for n, id_ in enumerate(ids):
            result = await store.claim(
                delivery_id=id_, webhook_id=hook.id, event_id=f"evt_{n}-0",
                event_type="email.open", owner="a", now_ms=n, lease_ms=LEASE,
            )  # fmt: skip
            assert result.claim is Claim.NEW
        retry = await store.record(
            await delivery(store, ids[0]), owner="a", now_ms=10, verdict=RETRY,
            next_attempt_ms=5000, next_owner="job-2", lease_ms=LEASE, payload=b"{}",
            attempt_json=b'{"number":1}', **RECORD_DEFAULTS,
        )  # fmt: skip
        assert retry == "pending"
        # Each partition's lease index holds its own deliveries only.
        expired = await store.expired_leases(before_ms=10**12, partition=partition)
        assert sorted(expired) == sorted(ids)
        assert await store.expired_leases(before_ms=10**12, partition=(partition + 1) % 16) == []
        assert await store.attempts(ids[0]) == [b'{"number":1}']

        assert await store.record(
            await delivery(store, ids[1]), owner="a", now_ms=20, verdict=Verdict.GONE,
            **RECORD_DEFAULTS,
        ) == "disabled"  # fmt: skip
        # Counted in the partition's own metrics hash (METRICS is another slot).
        assert await redis.hgetall(keys.partition_metrics(partition)) == {
            b"webhooks_disabled|gone": b"1"
        }
        failed = await delivery(store, ids[1])
        assert failed.status == "failed"
        assert await store.requeue(failed, owner="manual", now_ms=30, lease_ms=LEASE)
        assert await claim_of(store, ids[1], hook.id, "manual", now=40) is Claim.GO
        assert await store.record(
            await delivery(store, ids[1]), owner="manual", now_ms=50, verdict=SUCCEEDED,
            **RECORD_DEFAULTS,
        ) == "succeeded"  # fmt: skip
        await store.forget_lease(ids[2])
        await store.extend_lease_index(ids[2], 99)
        assert await redis.zscore(keys.delivery_leases(partition), ids[2]) == 99

        names = await assert_tagged(redis)
        mine = in_partition(names, partition)
        assert {keys.delivery(i) for i in ids} <= mine
        assert keys.delivery_attempts(ids[0]) in mine
        assert {keys.deliveries(hook.id, s) for s in (None, "pending", "succeeded")} <= mine
        assert keys.delivery_leases(partition) in mine

        went = await DeliveryPruner(redis).prune(
            hook.id, now_ms=60, retention_count=0, retention_seconds=3600
        )
        assert went == 1  # the succeeded one; the pending ones stay
        assert await store.get(ids[1]) is None
        assert await store.forget_webhook(hook.id) == 2
        left = await assert_tagged(redis)
        assert not in_partition(left, partition) - {
            keys.webhook(hook.id),
            keys.account_webhooks("acc_acme"),
            keys.subscribers("acc_acme", "*"),
            keys.webhook_sequence(partition),
            keys.partition_metrics(partition),
        }


async def claim_of(store: DeliveryStore, id_: str, webhook_id: int, owner: str, now: int) -> Claim:
    result = await store.claim(
        delivery_id=id_, webhook_id=webhook_id, event_id="evt_1-0", event_type="email.open",
        owner=owner, now_ms=now, lease_ms=LEASE,
    )  # fmt: skip
    return result.claim
