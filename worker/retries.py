"""The retry runner: makes the attempts that come due in the retry set
(service.storage.retries), in every partition, alongside the stream consumer.

One loop per partition (each partition's set lives in its own slot, on a cluster maybe on
its own shard); a process's loops share one bound on the attempts in flight. A loop takes
what is due in batches, one script call for up to BATCH attempts rather than one call per
attempt, starts each attempt at once, and sleeps until the next due time but at most
POLL_SECONDS (other processes schedule too): an attempt starts within about that of its
time. What a loop took stays hidden from every other worker while its attempts run (renewed
every third of the visibility window); if this process dies, it comes due again when the
window ends, and another worker makes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import redis.exceptions

from service.core.clock import Clock, system_clock
from service.core.ids import epoch_ms, parse_retry_member
from service.storage.retries import RetrySchedule
from worker.deliverer import Deliverer

logger = logging.getLogger("mailhooks.worker")

POLL_SECONDS = 0.05
BATCH = 100
# Attempts in flight at once in one process, over every partition. Most wait on a slow
# endpoint's slots, cheaply (arq ran up to 500 retry jobs at once too).
MAX_IN_FLIGHT = 500
ERROR_PAUSE_SECONDS = 1.0


class RetryRunner:
    def __init__(
        self,
        schedule: RetrySchedule,
        deliverer: Deliverer,
        *,
        partitions: Sequence[int],
        visibility_ms: int,
        clock: Clock = system_clock,
        max_in_flight: int = MAX_IN_FLIGHT,
        batch: int = BATCH,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._schedule = schedule
        self._deliverer = deliverer
        self._partitions = partitions
        self._visibility_ms = visibility_ms
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._batch = batch
        self._poll_seconds = poll_seconds
        # Attempts under way, by partition and member.
        self._running: dict[int, dict[str, asyncio.Task[None]]] = {p: {} for p in partitions}
        self._in_flight = 0
        self._freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self.taken = 0  # attempts this runner took from the set (tests, benchmarks)

    def start(self) -> None:
        """Start one loop per partition (in this process's running event loop)."""
        self._loops = [
            asyncio.create_task(self._loop(partition), name=f"retries-{partition}")
            for partition in self._partitions
        ]

    async def stop(self, *, grace_seconds: float) -> None:
        """Take nothing more; let the attempts under way finish for up to `grace_seconds`,
        then cancel the rest: those come due again after the visibility window."""
        self._stopping.set()
        # Each loop ends within a poll, or once the Redis call it waits on returns.
        _, stuck = await asyncio.wait(self._loops, timeout=grace_seconds)
        for loop in stuck:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        running = [task for tasks in self._running.values() for task in tasks.values()]
        if running:
            _, late = await asyncio.wait(running, timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _loop(self, partition: int) -> None:
        """Take and start due attempts until `stop`; Redis outages are waited out, and a
        bug is logged with its traceback, never left to end the loop quietly."""
        renew_at = 0.0
        failing = False
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= renew_at:
                    await self._renew(partition)
                    renew_at = time.monotonic() + self._visibility_ms / 3000
                pause = await self._take(partition)
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                OSError,
            ) as exc:
                if not failing:  # once per outage, not once a second
                    logger.warning("retries of partition %d not taken (%s)", partition, exc)
                failing, pause = True, ERROR_PAUSE_SECONDS
            except Exception:
                logger.exception("taking the retries of partition %d failed", partition)
                pause = ERROR_PAUSE_SECONDS
            else:
                if failing:
                    logger.info("retries of partition %d taken again", partition)
                failing = False
            if pause > 0:
                await _wait(self._stopping, pause)

    async def _take(self, partition: int) -> float:
        """Start the attempts due now, as many as there is room for: how long to sleep."""
        room = min(self._batch, self._max_in_flight - self._in_flight)
        if room <= 0:
            self._freed.clear()
            await _wait(self._freed, self._poll_seconds)
            return 0.0
        now_ms = epoch_ms(self._clock())
        due = await self._schedule.take_due(
            partition, now_ms=now_ms, limit=room, visibility_ms=self._visibility_ms
        )
        if self._stopping.is_set():
            # Taken as the worker stops: due again now, for the other workers.
            for member in due.members:
                await self._schedule.reschedule(member, delay=0)
            return 0.0
        running = self._running[partition]
        for member in due.members:
            if member not in running:  # renewed while it runs, so never; but never twice
                self._in_flight += 1
                self.taken += 1
                running[member] = asyncio.create_task(self._attempt(partition, member))
        if len(due.members) == room:
            return 0.0  # maybe more due already
        if due.next_due_ms is None:
            return self._poll_seconds
        return max(0.0, min(self._poll_seconds, (due.next_due_ms - now_ms) / 1000))

    async def _renew(self, partition: int) -> None:
        """Keep this loop's attempts under way hidden for another visibility window."""
        members = list(self._running[partition])
        until_ms = epoch_ms(self._clock()) + self._visibility_ms
        await self._schedule.hide(partition, members, until_ms=until_ms)

    async def _attempt(self, partition: int, member: str) -> None:
        delivery_id, owner, rate_slot_taken = parse_retry_member(member)
        try:
            if await self._deliverer.retry(delivery_id, owner, rate_slot_taken=rate_slot_taken):
                await self._schedule.done(member)
            else:  # its endpoint is saturated: come back later instead of holding a place
                await self._schedule.reschedule(
                    member, delay=self._deliverer.saturated_backoff(owner)
                )
        except Exception:
            # Not hidden: logged, and the attempt stays in the set, due again after the
            # visibility window (a Redis error mid-attempt must not lose a delivery).
            logger.exception("retrying %s failed; it comes due again", delivery_id)
        finally:
            del self._running[partition][member]
            self._in_flight -= 1
            self._freed.set()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
