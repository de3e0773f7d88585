"""The arq jobs the web and worker processes (and the CLI) enqueue, and how their arguments
are encoded (msgpack via msgspec: never pickle from Redis into a process)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from arq.connections import ArqRedis
from redis.asyncio import RedisCluster

from service.core.ids import LeaseTag, lease_owner
from service.storage.connection import RedisClient
from service.storage.deliveries import DeliveryStore, StoredDelivery

RETRY_DELIVERY = "retry_delivery"
RATE_WAIT_SUFFIX = ":rate"
serialize = msgspec.msgpack.encode
deserialize = msgspec.msgpack.decode


def job_queue(redis: RedisClient) -> ArqRedis:
    """An arq handle sharing `redis`'s connection pool. On a cluster, a client of the node
    REDIS_URL names, so that the processes start: arq's job and queue keys are in different
    slots, so its enqueues fail there until our own scheduled set replaces arq (issue #15)."""
    if isinstance(redis, RedisCluster):
        node = next(iter(redis.nodes_manager.startup_nodes.values()))  # not connected yet
        return ArqRedis(
            host=node.host,
            port=node.port,
            job_serializer=serialize,
            job_deserializer=deserialize,
        )
    return ArqRedis(
        connection_pool=redis.connection_pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
    )


async def enqueue_retry(
    jobs: ArqRedis, delivery_id: str, owner: str, *, delay: float, rate_slot_taken: bool = False
) -> None:
    """Attempt `delivery_id` after `delay` seconds as lease `owner`. The job id is the owner,
    so enqueuing the same attempt twice is a no-op. `rate_slot_taken`: the delay is the wait
    for the webhook's rate-limit slot, taken already (the job must not take another); its
    job id is the owner's with RATE_WAIT_SUFFIX, as the owner's own job may be the one
    enqueuing it."""
    args: tuple[str | bool, ...] = (delivery_id, owner)
    if rate_slot_taken:
        args += (True,)
    await jobs.enqueue_job(
        RETRY_DELIVERY,
        *args,
        _job_id=owner + RATE_WAIT_SUFFIX if rate_slot_taken else owner,
        _defer_by=timedelta(seconds=delay),
        # Expiry counts from the scheduled time: a day of slack covers a worker outage.
        _expires=timedelta(days=1),
    )


async def requeue_delivery(
    deliveries: DeliveryStore,
    jobs: ArqRedis,
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
    await enqueue_retry(jobs, delivery.id, owner, delay=0)
    return True


async def recover_failed(
    deliveries: DeliveryStore,
    jobs: ArqRedis,
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
            deliveries, jobs, delivery, LeaseTag.RECOVER, now_ms=now_ms, lease_ms=lease_ms
        )
    return requeued
