"""Connecting to Redis from REDIS_URL (redis://, rediss:// with Heroku's self-signed certs):
one server, or with REDIS_CLUSTER=true a Redis Cluster discovered from any of its nodes."""

from __future__ import annotations

from typing import Any, TypeAlias

import hiredis
import redis.exceptions
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException

from config import Config
from service.storage.autopipeline import AutoPipeline
from service.storage.cluster_pipeline import ClusterAutoPipeline

# A command that meets a dropped connection (Redis restarted, a failover) is retried on a
# fresh one for up to about two seconds before the request answers 503. Our writes are safe
# to repeat: appends are de-duplicated, webhook writes set the same fields again.
RETRY_ON: list[type[Exception]] = [
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
]


def retry_policy(retries: int = 5) -> Retry:
    """Up to `retries` tries, 50 ms apart at first, doubling to 1 s between tries."""
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=retries)


class HiredisPacking(AbstractConnection):
    """Packs commands with hiredis, in C. redis-py's asyncio connection packs them in Python
    (its sync one uses hiredis): with scripts of twenty-odd arguments per delivery that was
    about 8 % of the worker's CPU (docs/performance.md)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py does: a command name given with spaces ("CONFIG GET") is several words.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise redis.exceptions.DataError(str(exc)) from None


class PackingConnection(HiredisPacking, Connection):
    pass


class PackingSSLConnection(HiredisPacking, SSLConnection):
    pass


class PackingUnixConnection(HiredisPacking, UnixDomainSocketConnection):
    pass


PACKING = {
    Connection: PackingConnection,
    SSLConnection: PackingSSLConnection,
    UnixDomainSocketConnection: PackingUnixConnection,
}


# What the stores are given: one server's client or a cluster's. The commands they issue
# exist on both; a MULTI (`pipeline(transaction=True)`) does not exist on the cluster client,
# see service.storage.transactions.
RedisClient: TypeAlias = Redis | RedisCluster


def connect(config: Config) -> RedisClient:
    options: dict[str, Any] = {
        "health_check_interval": 30,
        "socket_connect_timeout": 5,
        "retry": retry_policy(),
        "retry_on_error": RETRY_ON,
    }
    if config.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = config.redis_ssl_cert_reqs
    if config.redis_cluster:
        return connect_cluster(config.redis_url, options)
    client: Redis = Redis.from_url(config.redis_url, **options)
    pool = client.connection_pool
    pool.connection_class = PACKING.get(pool.connection_class, pool.connection_class)
    return client


def connect_cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    """The cluster client, finding every node from the one `url` names. Each node's
    connections pack with hiredis too: the client passes one dict of connection options to
    every node it creates (those it discovers, and those a MOVED names later), so the
    packing class goes in there, and into the node it was given, made already."""
    cluster: SeededCluster = SeededCluster.from_url(url, **options)
    kwargs = cluster.connection_kwargs  # shared with the client's NodesManager
    kwargs["connection_class"] = PACKING.get(kwargs["connection_class"], kwargs["connection_class"])
    for node in cluster.nodes_manager.startup_nodes.values():
        node.connection_class = kwargs["connection_class"]
    cluster.seeds = dict(cluster.nodes_manager.startup_nodes)
    return cluster


class SeededCluster(RedisCluster):
    """redis-py drops a node from its startup nodes at each connection error, then reads the
    slot map again from the ones left: once every node has failed once (the whole cluster
    restarted, or a network blip to all of them) none is left, and the client fails every
    command for good ("Redis Cluster cannot be connected … reachable node: None") while the
    cluster is back and well. So before each reading of the slot map the node REDIS_URL
    names, and every node known so far, become startup nodes again: a restarted cluster is
    found again at the first command after it answers. (Svix's users met the same: a hang
    after a Redis restart, its issue #1844.)"""

    seeds: dict[str, ClusterNode]

    async def initialize(self) -> SeededCluster:
        if self._initialize:  # the slot map is read again
            manager = self.nodes_manager
            for name, node in (*self.seeds.items(), *manager.nodes_cache.items()):
                manager.startup_nodes.setdefault(name, node)
        try:
            await super().initialize()
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc


def _unavailable(exc: RedisClusterException) -> redis.exceptions.ConnectionError:
    """redis-py's cluster errors that are no RedisError (no node reachable, a slot no master
    serves during a failover) as what they mean here, converted once at the edge: Redis is
    unavailable for now. Requests answer 503, the worker waits and retries, as with one
    Redis."""
    return redis.exceptions.ConnectionError(f"redis cluster unavailable: {exc}")


def autopipeline_for(redis: RedisClient, **options: Any) -> AutoPipeline:
    """The AutoPipeline for `redis`: one server's, or a cluster's (a sender per node)."""
    if isinstance(redis, Redis):
        return AutoPipeline(redis, **options)
    return ClusterAutoPipeline(redis, **options)


def register_script(redis: RedisClient, source: str) -> AsyncScript:
    """`redis.register_script(source)` for either client. On a cluster, EVALSHA goes to the
    node of the script's first key and a NOSCRIPT is answered by SCRIPT LOAD on every master
    (redis-py's AsyncScript does both; only its annotation names the one-server client)."""
    return AsyncScript(redis, source)  # type: ignore[arg-type]
