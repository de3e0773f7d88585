"""The AutoPipeline on a Redis Cluster: each command goes to the node serving its key's slot.

One `AutoPipeline` sender per node batches that node's commands exactly as on one server
(service.storage.autopipeline); this class only routes. A command's key is its first
argument (EVALSHA: its first key), which holds for every command the stores queue here.
The slot map is the cluster client's own (`RedisCluster.nodes_manager`), read without a
round trip.

When the map is out of date (a resharding moved a slot: MOVED or ASK; a failover:
CLUSTERDOWN, TRYAGAIN, or a master that stops answering), the client's map is read again
from the cluster, once for all the commands that met it together, and the command that met
it is run through `RedisCluster.execute_command`, which follows MOVED and ASK itself; the
commands after it are routed by the new map. Commands without a key, or queued before the
client has read the map, take that way too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from service.storage.autopipeline import AutoPipeline

# Error replies that mean "not here, or not now": the map is read again and the command
# goes through the cluster client (MovedError is an AskError; MasterDownError a
# ClusterDownError).
REDIRECTED = (
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


class ClusterAutoPipeline(AutoPipeline):
    def __init__(
        self, cluster: RedisCluster, *, max_batch: int = 500, reply_timeout: float = 5.0
    ) -> None:
        # The sending half of AutoPipeline is the node senders'; this object only routes.
        self._cluster = cluster
        self._max_batch = max_batch
        self._reply_timeout = reply_timeout
        self._senders: dict[str, NodePipeline] = {}
        self._refresh: asyncio.Future[None] | None = None
        self._fallbacks: set[asyncio.Task[None]] = set()
        self.redirected = 0  # commands sent through the cluster client (for tests)

    @property
    def round_trips(self) -> int:  # type: ignore[override]
        return sum(sender.round_trips for sender in self._senders.values())

    def _queue_command(
        self, args: tuple[Any, ...], script: AsyncScript | None
    ) -> asyncio.Future[Any]:
        node = self._node_for(args)
        if node is None:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._through_client(args, future, script)
            return future
        sender = self._senders.get(node.name)
        if sender is None or sender.node is not node:
            sender = self._senders[node.name] = NodePipeline(self, node)
        return sender._queue_command(args, script)

    def _node_for(self, args: tuple[Any, ...]) -> ClusterNode | None:
        """The master serving the command's key, per the client's map (None: no key, or
        no map yet)."""
        if args[0] == "EVALSHA":
            if len(args) < 4 or not int(args[2]):
                return None
            key = args[3]
        elif len(args) > 1:
            key = args[1]
        else:
            return None
        replicas = self._cluster.nodes_manager.slots_cache.get(self._cluster.keyslot(key))
        return replicas[0] if replicas else None

    def _redirected(
        self, args: tuple[Any, ...], future: asyncio.Future[Any], script: AsyncScript | None
    ) -> None:
        """A node answered MOVED, ASK, TRYAGAIN or CLUSTERDOWN."""
        self.refresh_map()
        self._through_client(args, future, script)

    def _through_client(
        self, args: tuple[Any, ...], future: asyncio.Future[Any], script: AsyncScript | None
    ) -> None:
        self.redirected += 1
        task = asyncio.get_running_loop().create_task(self._run(args, future, script))
        self._fallbacks.add(task)
        task.add_done_callback(self._fallbacks.discard)

    async def _run(
        self, args: tuple[Any, ...], future: asyncio.Future[Any], script: AsyncScript | None
    ) -> None:
        cluster = self._cluster
        try:
            if self._refresh is not None:
                await asyncio.shield(self._refresh)
            try:
                reply = await cluster.execute_command(*args)
            except NoScriptError:
                if script is None:
                    raise
                # SCRIPT LOAD goes to every master: the one that answered NOSCRIPT too.
                await cluster.script_load(script.script)
                reply = await cluster.execute_command(*args)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(reply)

    def refresh_map(self) -> asyncio.Future[None]:
        """Read the slot map from the cluster again, once for all who ask meanwhile."""
        if self._refresh is not None:
            return self._refresh

        async def refresh() -> None:
            try:
                await self._cluster.nodes_manager.initialize()
            except redis.exceptions.RedisError:
                pass  # the commands through the client try again and report what they meet
            finally:
                self._refresh = None

        self._refresh = refreshing = asyncio.ensure_future(refresh())
        return refreshing


class NodePipeline(AutoPipeline):
    """The sender of one node's commands, on a connection of the node's own pool."""

    def __init__(self, router: ClusterAutoPipeline, node: ClusterNode) -> None:
        # AutoPipeline's state, without the one-server client it would otherwise hold.
        self._router = router
        self.node = node
        self._callbacks = node.response_callbacks
        self._max_batch = router._max_batch
        self._reply_timeout = router._reply_timeout
        self._queue = []
        self._sender = None
        self._reloading = set()
        self._reloads = set()
        self._loads = {}
        self.round_trips = 0

    async def _connection(self) -> AbstractConnection:
        return self.node.acquire_connection()

    async def _release(self, connection: AbstractConnection) -> None:
        # As ClusterNode.execute_command gives its connection back: the node's free list.
        self.node._free.append(connection)  # type: ignore[arg-type]

    async def _load(self, script: AsyncScript) -> Any:
        return await self.node.execute_command("SCRIPT LOAD", script.script)

    def _error_reply(
        self,
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        script: AsyncScript | None,
        exc: Exception,
    ) -> None:
        if isinstance(exc, REDIRECTED):
            self._router._redirected(args, future, script)
        else:
            future.set_exception(exc)

    def _lost(self, exc: Exception) -> None:
        # A master that stopped answering may have been failed over: its slots' new
        # masters are in the map the next commands are routed by.
        self._router.refresh_map()
