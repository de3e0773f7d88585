"""At most ENDPOINT_CONCURRENCY attempts in flight per endpoint, in this worker process, and
the saturation test that puts a slow endpoint's next deliveries off for later; and the
burst a webhook's rate limit allows (the rate itself is kept in Redis, shared by every
worker process: service.storage.rate_limits)."""

from __future__ import annotations

import asyncio
import math
import time

# After a quiet moment a rate-limited webhook may take this fraction of its rate at once
# (at least one): no one-second window holds more than rate_limit x 1.1 deliveries (less a
# slot), and a small batch of events need not wait for slots one by one.
RATE_BURST_FRACTION = 0.1


def rate_burst(per_second: int) -> int:
    """How many deliveries a webhook limited to `per_second` may receive at once."""
    return max(1, math.floor(per_second * RATE_BURST_FRACTION))


class EndpointLimiter:
    """At most `limit` attempts in flight per endpoint. An endpoint is saturated when all its
    slots have been busy for SLOW_AFTER_SECONDS and `limit` more attempts wait: it is slow,
    not merely bursty, and its next deliveries are scheduled for later instead of waiting
    here."""

    SLOW_AFTER_SECONDS = 0.5

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._semaphores: dict[int, asyncio.Semaphore] = {}
        self._users: dict[int, int] = {}  # holders and waiters
        self._busy_since: dict[int, float] = {}  # when its last free slot was taken

    def saturated(self, key: int) -> bool:
        busy_since = self._busy_since.get(key)
        return (
            busy_since is not None
            and time.monotonic() - busy_since > self.SLOW_AFTER_SECONDS
            and self._users.get(key, 0) >= 2 * self._limit
        )

    def slot(self, key: int) -> Slot:
        """`async with limiter.slot(endpoint):` one attempt's slot (a plain class rather than
        an asynccontextmanager: this runs for every delivery). Counted from creation."""
        return Slot(self, key)

    def _join(self, key: int) -> asyncio.Semaphore:
        self._users[key] = self._users.get(key, 0) + 1
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            semaphore = self._semaphores[key] = asyncio.Semaphore(self._limit)
        return semaphore

    def _leave(self, key: int) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:  # idle: forget it, so the maps stay small
            del self._users[key], self._semaphores[key]


class Slot:
    """One attempt's slot: counted as a user of the endpoint from creation (the saturation
    check sees it), held inside `async with` or until `free()`, and let go by `leave()` in
    any case."""

    __slots__ = ("_held", "_key", "_left", "_limiter", "_semaphore")

    def __init__(self, limiter: EndpointLimiter, key: int) -> None:
        self._limiter = limiter
        self._key = key
        self._semaphore = limiter._join(key)
        self._held = self._left = False

    async def __aenter__(self) -> Slot:
        try:
            await self._semaphore.acquire()
        except BaseException:
            self.leave()
            raise
        self._held = True
        if self._semaphore.locked():  # its last free slot: busy from now
            self._limiter._busy_since.setdefault(self._key, time.monotonic())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.free()

    def free(self) -> None:
        """Done with the endpoint (its request answered); idempotent."""
        if self._held:
            self._held = False
            self._limiter._busy_since.pop(self._key, None)  # a slot is free again
            self._semaphore.release()
        self.leave()

    def leave(self) -> None:
        """No longer a user of the endpoint; idempotent."""
        if not self._left:
            self._left = True
            self._limiter._leave(self._key)
