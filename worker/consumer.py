"""The stream consumer: reads stored events through the consumer group and delivers them.

An entry is acknowledged only once all its deliveries are done or handed to arq. Entries a
dead consumer left pending are reclaimed (XAUTOCLAIM) once idle longer than the longest
delivery could take; a missing group or stream (Redis restarted or flushed) is recreated on
the spot, without restarting the worker.

An entry that cannot be processed is set aside as a dead letter (copied to the dead-letter
stream and acknowledged in one step), so that it no longer holds trimming back: at once when
it is not an event; when its processing failed and the group had handed it out
`dead_letter_after` times; when a reclaim finds it handed out more often than that (the
consumers holding it died or were cut off each time).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
import time
import uuid

import redis.exceptions

from service.core.clock import Clock, system_clock
from service.core.ids import format_timestamp
from service.core.models import Event
from service.storage.stream import EventStream, StreamRead
from worker.deliverer import Deliverer

logger = logging.getLogger("mailhooks.consumer")

READ_COUNT = 100
BLOCK_MS = 1000
RECLAIM_EVERY_SECONDS = 5.0
# A dead letter's detail (an exception's text) is cut to this many characters.
DETAIL_CHARS = 1024


def consumer_name() -> str:
    """Unique per process: DYNO on Heroku, else the host name, plus the pid."""
    return f"{os.environ.get('DYNO') or socket.gethostname()}-{os.getpid()}"


class Acknowledgements:
    """XACKs without waiting: the entries finished in one loop turn are acknowledged by one
    XACK, sent beside the outcomes of that turn. An acknowledgement that fails is harmless:
    the entry stays pending, is reclaimed later, and its deliveries, already recorded, are
    skipped; then it is acknowledged again."""

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream
        self._entry_ids: list[str] | None = None  # to acknowledge this turn
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, entry_id: str) -> None:
        if self._entry_ids is None:
            self._entry_ids = []
            # Its first step runs after every callback due this turn: it takes them all.
            task = asyncio.create_task(self._send())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        self._entry_ids.append(entry_id)

    async def _send(self) -> None:
        entry_ids, self._entry_ids = self._entry_ids or [], None
        try:
            await self._stream.ack(entry_ids)
        except Exception as exc:
            logger.warning(
                "acknowledging %d entries failed (%r); they will be reclaimed and skipped",
                len(entry_ids),
                exc,
            )

    async def drain(self) -> None:
        """Wait for the acknowledgements under way (before the Redis client closes)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


class Consumer:
    def __init__(
        self,
        stream: EventStream,
        deliverer: Deliverer,
        *,
        name: str,
        reclaim_idle_ms: int,
        max_entries_in_flight: int = 1000,
        dead_letter_after: int = 5,
        clock: Clock = system_clock,
    ) -> None:
        self._stream = stream
        self._acks = Acknowledgements(stream)
        self._deliverer = deliverer
        self.name = name
        # Unique per process start (a restarted process may get the same name), then a count.
        self._owner = f"c:{name}:{uuid.uuid4().hex[:8]}"
        self._passes = itertools.count()
        self._reclaim_idle_ms = reclaim_idle_ms
        self._max_in_flight = max_entries_in_flight
        self._dead_letter_after = dead_letter_after
        self._clock = clock
        self._setting_aside: set[asyncio.Task[None]] = set()
        # Once full, read again only when a whole read's worth has finished: reading as
        # soon as one entry finishes made reads of a few entries each (430 reads and
        # subscriber lookups for 10,000 entries), each paying its round trips and parsing.
        self._resume_below = max_entries_in_flight - min(READ_COUNT, max_entries_in_flight // 2)
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: set[str] = set()  # entry ids being processed here
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()  # set once there is room for a read
        self._room.set()
        self._next_reclaim = 0.0

    async def run(self) -> None:
        """Read and deliver until `stop`; Redis outages are waited out, never fatal."""
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._read_once()
                backoff = 0.1
            except redis.exceptions.ResponseError as exc:
                # NOGROUP: the group is gone; UNBLOCKED: the stream was deleted under a read.
                # Either way Redis restarted empty or was flushed: start again from scratch.
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    logger.exception("unexpected reply from redis; retrying")
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                logger.warning("consumer group or stream missing (%s): recreating", exc)
                with contextlib.suppress(redis.exceptions.RedisError):
                    await self._stream.ensure_group()  # if this fails, the next read says so
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                logger.warning("redis unavailable (%s); retrying in %.1fs", exc, backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                # Never let the read loop die quietly while the worker looks healthy: say so
                # with the traceback, and keep reading.
                logger.exception("consumer loop error; retrying in %.1fs", backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _read_once(self) -> None:
        if len(self._tasks) > self._resume_below:  # backpressure
            # An event, not asyncio.wait(tasks): that would hook into every task in flight
            # each time one finishes (quadratic, and a tenth of the worker's CPU in a profile).
            self._room.clear()
            await self._room.wait()
            if self._stopping.is_set():
                return
        free = self._max_in_flight - len(self._tasks)
        if time.monotonic() >= self._next_reclaim:
            read = await self._reclaim(free)
            self._next_reclaim = time.monotonic() + RECLAIM_EVERY_SECONDS
        else:
            read = await self._stream.read_new(
                self.name, count=min(READ_COUNT, free), block_ms=BLOCK_MS
            )
        if self._stopping.is_set():
            # Stopped while reading: leave these pending (another consumer reclaims them)
            # rather than start work that shutdown would cut off before it is recorded.
            return
        if read.not_events:
            logger.error("stream entries %s are not events; setting them aside", read.not_events)
            self._stream.count_unreadable(len(read.not_events))  # replied to in passing
            for entry_id in read.not_events:
                self._set_aside(entry_id, "unreadable", read.why_not.get(entry_id, ""))
        running = self._running
        # Not those reclaimed from ourselves while still at work on them.
        batch = [entry for entry in read.events if entry[0] not in running]
        if read.deliveries:
            batch = self._without_exhausted(batch, read.deliveries)
        if not batch:
            return
        # One subscriber lookup per account and event type in the read, made after the read:
        # each event goes to its account's webhooks as they were when it was read or later.
        subscribers = await self._deliverer.subscribers(
            {(event.account_id, event.type) for _, event in batch}
        )
        if self._stopping.is_set():
            return
        for entry_id, event in batch:
            # A fresh lease owner per processing: if this very consumer reclaims an entry it
            # is still working on, its two passes must not renew each other's leases. The
            # task runs the delivery itself (no wrapper coroutine: every await in it would
            # pass through one more frame); _done acknowledges the entry or says why not.
            owner = f"{self._owner}:{next(self._passes)}"
            try:
                deliver = self._deliverer.deliver_event(
                    entry_id, event, subscribers[event.account_id, event.type], owner=owner
                )
            except Exception as exc:
                # A bug, not an outage: the others in this read go on; this one stays
                # pending and is tried again when reclaimed, or set aside if it was its last.
                logger.exception("preparing entry %s for delivery failed", entry_id)
                self._failed(entry_id, exc)
                continue
            task = asyncio.create_task(deliver)
            self._running.add(entry_id)
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, entry_id=entry_id))

    async def _reclaim(self, count: int) -> StreamRead:
        read = await self._stream.reclaim(self.name, min_idle_ms=self._reclaim_idle_ms, count=count)
        if read.deleted:
            logger.error(
                "%d unacknowledged events went from the stream before delivery (trimmed "
                "or deleted by hand: appends never trim them): %s",
                len(read.deleted),
                read.deleted[:10],
            )
        if read.events or read.not_events:
            reclaimed = len(read.events) + len(read.not_events)
            logger.info("reclaimed %d entries left pending by another consumer", reclaimed)
        return read

    def _without_exhausted(
        self, batch: list[tuple[str, Event]], deliveries: dict[str, int]
    ) -> list[tuple[str, Event]]:
        """Sets aside the reclaimed entries handed out more than `dead_letter_after` times
        (each time a consumer died or was cut off holding it: a failure it saw would have set
        it aside at the last); the others, to process."""
        limit = self._dead_letter_after
        kept = []
        for entry in batch:
            times = deliveries.get(entry[0], 1)
            if times <= limit:
                kept.append(entry)
                continue
            detail = (
                f"handed out {times - 1} times without being finished: the worker holding it "
                "stopped, crashed or lost Redis each time (see the worker logs)"
            )
            self._set_aside(entry[0], "reclaimed", detail, min_deliveries=limit + 1)
        return kept

    def _failed(self, entry_id: str, exc: BaseException) -> None:
        """Processing raised (a bug, not an outage): set the entry aside if the group has
        handed it out `dead_letter_after` times, else leave it to be tried again."""
        detail = f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]
        self._set_aside(entry_id, "failed", detail, min_deliveries=self._dead_letter_after)

    def _set_aside(self, entry_id: str, reason: str, detail: str, min_deliveries: int = 0) -> None:
        """Make the entry a dead letter, in the background (the read loop does not wait)."""
        task = asyncio.create_task(self._dead_letter(entry_id, reason, detail, min_deliveries))
        self._setting_aside.add(task)
        task.add_done_callback(self._setting_aside.discard)

    async def _dead_letter(
        self, entry_id: str, reason: str, detail: str, min_deliveries: int
    ) -> None:
        try:
            letter = await self._stream.dead_letter(
                entry_id,
                consumer=self.name,
                reason=reason,
                detail=detail,
                at=format_timestamp(self._clock()),
                min_deliveries=min_deliveries,
            )
        except redis.exceptions.RedisError as exc:
            logger.warning(
                "setting entry %s aside failed (%r): it stays pending and is looked at again "
                "when reclaimed",
                entry_id,
                exc,
            )
            return
        if letter is not None:
            logger.error(
                "entry %s set aside as dead letter %s (%s: %s); see GET /api/dead-letters",
                entry_id,
                letter,
                reason,
                detail,
            )
        elif min_deliveries:
            logger.warning(
                "entry %s stays pending: it is tried again when reclaimed, and set aside "
                "once the group has handed it out %d times (DEAD_LETTER_AFTER)",
                entry_id,
                min_deliveries,
            )

    def _done(self, task: asyncio.Task[None], entry_id: str) -> None:
        self._tasks.discard(task)
        self._running.discard(entry_id)
        if len(self._tasks) <= self._resume_below:
            self._room.set()
        if task.cancelled():
            return  # cut short by shutdown: left pending, reclaimed by another consumer
        exc = task.exception()
        if exc is None:
            self._acks.add(entry_id)
        elif isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            # Left unacknowledged: reclaimed and finished once Redis is back.
            logger.warning("entry %s interrupted by a redis error: %s", entry_id, exc)
        elif isinstance(exc, redis.exceptions.ResponseError):
            logger.warning("entry %s interrupted: %s", entry_id, exc)
        else:
            # A bug, not an outage: say so loudly; the entry is reclaimed and tried again,
            # or set aside if this was its last try.
            logger.error("delivering entry %s failed", entry_id, exc_info=exc)
            self._failed(entry_id, exc)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def stop(self, grace_seconds: float) -> None:
        """Stop reading; let in-flight entries finish within `grace_seconds`. Whatever is cut
        short stays unacknowledged and is reclaimed by another consumer: nothing is lost."""
        self._stopping.set()
        if self._tasks:
            _, unfinished = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in unfinished:
                task.cancel()
            if unfinished:
                logger.warning("%d entries left for another consumer", len(unfinished))
        while self._setting_aside:
            await asyncio.gather(*self._setting_aside, return_exceptions=True)
        await self._acks.drain()
