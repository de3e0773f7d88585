"""Deadlines for many concurrent requests, kept by one coarse timer.

`asyncio.timeout` arms a loop timer per use; on uvloop each is a libuv timer handle,
started, stopped and closed per request, and that cost about an eighth of the worker's CPU
per delivery (A/B in docs/performance.md). A delivery's total deadline needs no such
precision: one ticker, running only while something is watched, checks every `resolution`
seconds and cancels the tasks whose deadline passed; the `with` block then raises
TimeoutError, exactly as `asyncio.timeout` does (an outside cancellation stays a
cancellation).

Used by the worker (each delivery's DELIVERY_TIMEOUT) and the web process (READ_TIMEOUT for
a body, INGEST_TIMEOUT for storing an inbound request's events), so it sits beside the
layers, as service/logs.py does: asyncio only, nothing of ours.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadlines:
    def __init__(self, resolution: float = 0.1) -> None:
        self._resolution = resolution
        self._watched: set[_Deadline] = set()
        self._ticker: asyncio.TimerHandle | None = None

    def limit(self, seconds: float) -> _Deadline:
        """`with deadlines.limit(5):` the block raises TimeoutError once it has run for
        `seconds` (up to `resolution` later). Inside a task only."""
        return _Deadline(self, seconds)

    def _watch(self, deadline: _Deadline) -> None:
        self._watched.add(deadline)
        if self._ticker is None:
            self._ticker = deadline.loop.call_later(self._resolution, self._tick)

    def _unwatch(self, deadline: _Deadline) -> None:
        self._watched.discard(deadline)

    def _tick(self) -> None:
        self._ticker = None
        if not self._watched:
            return  # nothing to watch: stay idle until the next `limit`
        loop = next(iter(self._watched)).loop
        now = loop.time()
        for deadline in [d for d in self._watched if d.when <= now]:
            self._watched.discard(deadline)
            deadline.expire()
        if self._watched:
            self._ticker = loop.call_later(self._resolution, self._tick)


class _Deadline:
    __slots__ = ("_cancelling", "_deadlines", "_expired", "_seconds", "_task", "loop", "when")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines.limit() is used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.loop = task.get_loop()
        self.when = self.loop.time() + self._seconds
        self._deadlines._watch(self)

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._deadlines._unwatch(self)
        # Ours only if we cancelled and no one else did meanwhile (as asyncio.timeout).
        if self._expired:
            outside = self._task.uncancel() > self._cancelling
            if exc_type is asyncio.CancelledError and not outside:
                raise TimeoutError from exc
