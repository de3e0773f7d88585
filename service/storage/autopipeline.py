"""Redis commands issued while others are on their way go to Redis together, as one pipeline.

Under load many tasks await one command each at about the same moment (one delivery's
claim, another's outcome, an ingest's append). Sent one by one, each pays a connection
checkout, a socket write and a read of its own; sent together they pay them once. One sender
task holds one connection while there is work: it sends what has queued, reads the replies,
and sends what queued meanwhile. An idle process sends batches of one, a loop turn later than
a direct call would (microseconds); the busier the process, the bigger the batches, so the
batching tunes itself (docs/performance.md).

The sender writes packed commands and reads replies on the connection itself rather than
through redis-py's Pipeline: the Pipeline's per-batch set-up (a command stack, a connection
checkout and health check, a reply callback lookup per command) cost about a quarter of each
command's CPU in a profile. Reply callbacks are still applied, so replies look as from
`Redis.execute_command`; a dropped connection is retried by the client's retry policy, as
redis-py would.

No MULTI: each command keeps its own semantics (a script is as atomic as ever), and an error
reply fails only the caller whose command it answered. Never queue a blocking command here
(XREAD BLOCK, BLPOP): every command behind it would wait.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

# How long the connection of the last batch is kept for the next (see _release).
HOLD_SECONDS = 1.0

# A queued command: its arguments, the caller's future, and the script it runs (EVALSHA),
# if any, to load again should Redis have lost it.
Pending = tuple[tuple[Any, ...], "asyncio.Future[Any]", AsyncScript | None]


class AutoPipeline:
    """One server's: every command goes down one connection of its pool at a time. On a
    cluster, `autopipeline_for` gives a service.storage.cluster_pipeline.ClusterAutoPipeline,
    which routes each command to one of these per node."""

    def __init__(self, redis: Redis, *, max_batch: int = 500, reply_timeout: float = 5.0) -> None:
        self._redis = redis
        self._callbacks = redis.response_callbacks
        self._max_batch = max_batch
        # No command sent here blocks, so a batch unanswered this long means a connection
        # gone silent (a half-open socket after a failover): drop it and retry, rather than
        # hold up every command queued behind it.
        self._reply_timeout = reply_timeout
        self._queue: list[Pending] = []
        self._sender: asyncio.Task[None] | None = None
        self._reloading: set[asyncio.Future[Any]] = set()  # NOSCRIPT, being loaded again
        self._reloads: set[asyncio.Task[None]] = set()
        self._loads: dict[str, asyncio.Future[Any]] = {}  # SCRIPT LOADs under way, by SHA
        self.round_trips = 0  # batches sent, retries included (for tests and benchmarks)
        self._held: AbstractConnection | None = None  # the last batch's connection, kept
        self._held_at = 0.0

    def execute(self, *args: Any) -> asyncio.Future[Any]:
        """One command, e.g. `await execute("XACK", stream, group, entry_id)`: its reply.
        A future rather than a coroutine: awaiting it adds no frame that every await in
        the caller's chain passes through (measurable on the worker's hot path)."""
        return self._queue_command(args, None)

    def script(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Run a registered script by its SHA (loaded again first if Redis lost it)."""
        return self._queue_command(("EVALSHA", script.sha, len(keys), *keys, *args), script)

    def _queue_command(
        self, args: tuple[Any, ...], script: AsyncScript | None
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        sender = self._sender
        if sender is not None and sender.get_loop() is not loop:
            # Left behind by an event loop that closed without cancelling it (tests that
            # reuse an object): whatever it queued can never be answered.
            self._sender, self._queue = None, []
        self._queue.append((args, future, script))
        if self._sender is None:
            # Its first step runs after every callback already due this turn, so the tasks
            # woken together (responses read in one poll) all add their commands first.
            self._sender = loop.create_task(self._send_queued())
        return future

    async def _send_queued(self) -> None:
        batch: list[Pending] = []
        connection: AbstractConnection | None = None
        try:
            connection = held = await self._connection()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    await held.retry.call_with_retry(
                        functools.partial(self._round_trip, held, batch),
                        functools.partial(self._on_failure, held),
                    )
                except Exception as exc:  # retries ran out: this batch's callers see it
                    await held.disconnect(nowait=True)  # replies may be on their way
                    self._lost(exc)
                    _fail(batch, exc)
                batch = []
        except asyncio.CancelledError:
            for _, future, _ in (*batch, *self._queue):
                future.cancel()
            self._queue.clear()
            raise
        except Exception as exc:  # no connection to be had: every caller sees it
            _fail([*batch, *self._queue], exc)
            self._queue.clear()
        finally:
            self._sender = None
            if connection is not None:
                if batch:  # cut off mid-batch: replies may still be on their way
                    await connection.disconnect(nowait=True)
                await self._release(connection)

    # What a sender to one node of a cluster replaces: where its connection comes from,
    # where a lost script is loaded, what an error reply or an unreachable server means.

    async def _connection(self) -> AbstractConnection:
        held, self._held = self._held, None
        if held is not None:
            if held.is_connected and time.monotonic() - self._held_at < HOLD_SECONDS:
                return held
            await self._redis.connection_pool.release(held)
        connection: AbstractConnection = await self._redis.connection_pool.get_connection()
        return connection

    async def _release(self, connection: AbstractConnection) -> None:
        # Held for the next batch rather than given back: redis-py's pool checks each
        # connection it hands out for unexpected data, a read under a zero timeout that
        # costs a cancelled task step and a loop turn. At a few events a second every batch
        # went through it, six times per delivered event: a third of the worker's CPU at
        # 50 events/s (docs/performance.md). A connection held unused for HOLD_SECONDS goes
        # back through the pool, and its check, before it is used again.
        self._held, self._held_at = connection, time.monotonic()

    async def _load(self, script: AsyncScript) -> Any:
        return await self._redis.script_load(script.script)

    def _error_reply(
        self,
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        script: AsyncScript | None,
        exc: Exception,
    ) -> None:
        future.set_exception(exc)

    def _lost(self, exc: Exception) -> None:
        """Redis did not answer through every retry (the batch's callers fail with `exc`)."""

    async def _round_trip(self, connection: AbstractConnection, batch: list[Pending]) -> None:
        """Send the batch's unanswered commands and hand each caller its reply. After a
        dropped connection this runs again with what is still unanswered: our writes are
        safe to repeat (see service.storage.connection)."""
        live: list[Pending] = []
        packed: list[bytes] = []
        for pending in batch:
            args, future, _ = pending
            if future.done() or future in self._reloading:
                continue  # cancelled by its caller, answered before a drop, or reloading
            try:
                packed += connection.pack_command(*args)
            except redis.exceptions.DataError as exc:  # e.g. a None argument: its own fault
                future.set_exception(exc)
                continue
            live.append(pending)
        if not live:
            return
        self.round_trips += 1
        try:
            async with asyncio.timeout(self._reply_timeout):
                await connection.send_packed_command(packed, check_health=False)
                await self._read_replies(connection, live)
        except TimeoutError:
            raise redis.exceptions.TimeoutError(
                f"no reply from Redis within {self._reply_timeout} s"
            ) from None

    async def _read_replies(self, connection: AbstractConnection, live: list[Pending]) -> None:
        callbacks = self._callbacks
        for args, future, script in live:
            try:
                reply = await connection.read_response()
            except NoScriptError as exc:
                if future.done():
                    continue
                if script is None:
                    future.set_exception(exc)
                else:
                    self._reload(script, args, future)
                continue
            except redis.exceptions.ResponseError as exc:
                if not future.done():
                    self._error_reply(args, future, script, exc)
                continue
            if future.done():
                continue
            callback = callbacks.get(args[0])
            try:
                future.set_result(reply if callback is None else callback(reply))
            except Exception as exc:  # a reply the callback cannot parse
                future.set_exception(exc)

    def _reload(
        self, script: AsyncScript, args: tuple[Any, ...], future: asyncio.Future[Any]
    ) -> None:
        """Redis restarted or was flushed since the script was loaded (NOSCRIPT is answered
        before anything runs), or never had it: load it (once for all the commands that
        met NOSCRIPT together, not once each) and queue the command again, on the side, so
        the batches behind do not wait."""
        key_count = args[2]
        keys, script_args = args[3 : 3 + key_count], args[3 + key_count :]
        self._reloading.add(future)  # a retry of this batch must not send it again
        load = self._loads.get(script.sha)
        if load is None:
            load = self._loads[script.sha] = asyncio.ensure_future(self._load(script))
            load.add_done_callback(lambda _: self._loads.pop(script.sha, None))

        async def run() -> None:
            try:
                await asyncio.shield(load)  # shared: one caller's cancellation is its own
                reply = await self.script(script, keys, script_args)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(reply)
            finally:
                self._reloading.discard(future)
                future.cancel()  # no-op once answered; never left pending if cut short

        task = asyncio.get_running_loop().create_task(run())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _on_failure(self, connection: AbstractConnection, error: Exception) -> None:
        await connection.disconnect()
        if not isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            raise error


def _fail(batch: Sequence[Pending], exc: Exception) -> None:
    for _, future, _ in batch:
        if not future.done():
            future.set_exception(exc)
