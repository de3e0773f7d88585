"""MULTI/EXEC on one server or on a Redis Cluster.

redis-py 5's cluster client has no transactions (`pipeline(transaction=True)` raises). A
MULTI on a cluster must touch one slot anyway, so it can run on the master serving that
slot: here, on a one-off client of that master (a connection of its own, closed after;
the MULTIs are on rare paths: accounts, API keys, portal sessions). A MULTI whose slot
moves meanwhile fails (EXECABORT, MOVED) as one over two slots does (CROSSSLOT): with an
error, nothing applied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import Pipeline

from service.storage.connection import RedisClient


@asynccontextmanager
async def transaction(redis: RedisClient, key: str) -> AsyncIterator[Pipeline]:
    """`async with transaction(redis, key) as tx: tx.hset(key, …); await tx.execute()`:
    a MULTI on the node serving `key`, which every key in it must share a slot with."""
    if isinstance(redis, Redis):
        async with redis.pipeline(transaction=True) as tx:
            yield tx
        return
    await redis.initialize()
    node = redis.get_node_from_key(key)
    if node is None:  # only when asked for a replica
        raise LookupError(key)
    options = {k: v for k, v in node.connection_kwargs.items() if k != "parser_class"}
    pool = ConnectionPool(connection_class=node.connection_class, **options)
    client = Redis(connection_pool=pool)
    try:
        async with client.pipeline(transaction=True) as tx:
            yield tx
    finally:
        await client.aclose()
        await pool.aclose()
