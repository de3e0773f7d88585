"""The arq jobs the web and worker processes enqueue, and how their arguments are encoded
(msgpack via msgspec: never pickle from Redis into a process)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from arq.connections import ArqRedis
from redis.asyncio import Redis

RETRY_DELIVERY = "retry_delivery"
serialize = msgspec.msgpack.encode
deserialize = msgspec.msgpack.decode


def job_queue(redis: Redis) -> ArqRedis:
    """An arq handle sharing `redis`'s connection pool."""
    return ArqRedis(
        connection_pool=redis.connection_pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
    )


async def enqueue_retry(jobs: ArqRedis, delivery_id: str, owner: str, *, delay: float) -> None:
    """Attempt `delivery_id` after `delay` seconds as lease `owner`. The job id is the owner,
    so enqueuing the same attempt twice is a no-op."""
    await jobs.enqueue_job(
        RETRY_DELIVERY,
        delivery_id,
        owner,
        _job_id=owner,
        _defer_by=timedelta(seconds=delay),
        # Expiry counts from the scheduled time: a day of slack covers a worker outage.
        _expires=timedelta(days=1),
    )
