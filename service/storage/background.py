"""Upkeep that runs off the hot path: at most one run at a time per key, in the background.

A request while a run is under way makes it run once more when done, however many requests
came. A run that asks for a rest (it found nothing to do, or failed, or its caller limits
how often it runs) waits `rest_seconds` before that next run. Errors are logged, never
raised: the requester has gone on. `drain` finishes what is due without resting: before the
Redis client closes, and in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import redis.exceptions

K = TypeVar("K", bound=Hashable)


class SingleFlight(Generic[K]):
    def __init__(
        self,
        work: Callable[[K], Awaitable[bool]],  # one run; True to rest after it
        *,
        rest_seconds: float,
        logger: logging.Logger,
        what: str,
    ) -> None:
        self._work = work
        self._rest_seconds = rest_seconds
        self._logger = logger
        self._what = what
        self._tasks: dict[K, asyncio.Task[None]] = {}
        self._due: set[K] = set()
        self._wake: asyncio.Event | None = None  # set by drain: rests end
        self._draining = False

    def request(self, key: K) -> None:
        self._due.add(key)
        loop = asyncio.get_running_loop()
        task = self._tasks.get(key)
        if task is None or task.get_loop() is not loop:  # none, or a closed loop's (tests)
            self._tasks[key] = loop.create_task(self._run(key))

    async def _run(self, key: K) -> None:
        try:
            while key in self._due:
                self._due.discard(key)
                rest = True
                try:
                    rest = await self._work(key)
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                    self._logger.warning("%s: redis unavailable (%s)", self._what, exc)
                except Exception:
                    self._logger.exception("%s failed", self._what)
                if rest and not self._draining:
                    await self._rest()
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]

    async def _rest(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._rest_seconds):
                await self._wake.wait()

    async def drain(self) -> None:
        """Wait for every run, and every one due, skipping rests."""
        self._draining = True
        if self._wake is not None:
            self._wake.set()
        try:
            while self._tasks:
                await asyncio.wait(list(self._tasks.values()))
        finally:
            self._draining = False
            self._wake = None  # the next rest waits on a fresh event
