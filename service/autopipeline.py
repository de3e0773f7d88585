"""Redis commands issued in the same event-loop turn go to Redis as one pipeline.

Under load many tasks await one command each at about the same moment (one delivery's
claim, another's outcome, an ingest's append). Sent one by one, each pays a connection
checkout, a socket write and a read of its own; sent together they pay them once. An idle
process sends batches of one, a loop turn later than a direct call would (microseconds); the
busier the process, the bigger the batches, so the batching tunes itself (docs/performance.md).

No MULTI: each command keeps its own semantics (a script is as atomic as ever), and an error
reply fails only the caller whose command it answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Pending = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


class AutoPipeline:
    def __init__(self, redis: Redis, *, max_batch: int = 500) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._queue: list[Pending] = []
        self._senders: set[asyncio.Task[None]] = set()

    async def execute(self, *args: Any) -> Any:
        """One command, e.g. `execute("XACK", stream, group, entry_id)`; returns its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            # Runs after every callback already due this turn, so the tasks woken together
            # (responses read in one poll) all add their commands first.
            loop.call_soon(self._flush)
        self._queue.append((args, future))
        return await future

    async def script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered script by its SHA, loading it first if Redis lost it."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted or was flushed since the script was loaded: the script object
            # loads it again and runs it (nothing ran: NOSCRIPT is answered before anything).
            return await script(keys=keys, args=args)

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        for start in range(0, len(batch), self._max_batch):
            sender = asyncio.create_task(self._send(batch[start : start + self._max_batch]))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)

    async def _send(self, batch: list[Pending]) -> None:
        live = [(args, future) for args, future in batch if not future.done()]
        if not live:
            return  # every caller was cancelled before its command left
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for args, _ in live:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, future in live:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: every caller sees the error
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(live, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
