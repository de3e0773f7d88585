"""The stream consumer: reads stored events through the consumer group and delivers them,
fairly across accounts.

One reader per partition's events stream feeds a fair scheduler (service.core.fairness):
deficit round robin over the accounts with events waiting in this worker, each account held
to its window of events in flight. What an account has beyond ACCOUNT_QUEUE waiting events
is spilled to its lane (service.storage.lanes) and read back as its queue runs low, so the
readers go on reading every other account's events whatever one account's backlog.

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
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import redis.exceptions

from service.core.clock import Clock, system_clock
from service.core.fairness import FairScheduler
from service.core.ids import epoch_ms, format_timestamp
from service.core.models import Event
from service.storage import keys
from service.storage.lanes import LaneRead, Lanes
from service.storage.stream import EventStream, StreamRead
from service.storage.webhooks import StoredWebhook
from worker.deliverer import Deliverer

logger = logging.getLogger("mailhooks.consumer")

READ_COUNT = 100
BLOCK_MS = 1000
RECLAIM_EVERY_SECONDS = 5.0
# How often a worker looks for lanes it did not spill itself (another worker's, a dead
# one's), and waits before reading again a lane that had nothing unread.
LANE_SCAN_SECONDS = 1.0
LANE_IDLE_SECONDS = 0.1
LANE_IDLE_MAX_SECONDS = 2.0
# An event whose deliveries took longer than this, from its start to its end, counts as
# congested for its account's window: its endpoints (or their queue here) keep it waiting.
SLOW_EVENT_SECONDS = 1.0
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


@dataclass(slots=True)
class Work:
    """One stored event to deliver, as read: from its partition's stream, or from its
    account's lane (`lane_id`)."""

    entry_id: str
    event: Event
    webhooks: list[StoredWebhook]
    partition: int
    lane_id: str | None = None
    started: float = 0.0  # when its delivery started (monotonic)
    # Out of its account's window: its first delivery ended (or all did).
    released: bool = False


class LaneAcknowledgements:
    """Delivered lane entries, deleted per account in one script per loop turn; a lane left
    empty is deleted, and its account's events queue in memory again."""

    def __init__(self, lanes: Lanes, drained: Callable[[str], None]) -> None:
        self._lanes = lanes
        self._drained = drained
        self._pending: dict[str, list[str]] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, account: str, lane_id: str) -> None:
        if self._pending is None:
            self._pending = {}
            task = asyncio.create_task(self._send())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        self._pending.setdefault(account, []).append(lane_id)

    async def _send(self) -> None:
        pending, self._pending = self._pending or {}, None
        accounts = list(pending)
        replies = await asyncio.gather(
            *(self._lanes.ack(account, pending[account]) for account in accounts),
            return_exceptions=True,
        )
        for account, reply in zip(accounts, replies, strict=True):
            if isinstance(reply, BaseException):
                logger.warning(
                    "acknowledging %d lane entries of %s failed (%r); they will be reclaimed "
                    "and skipped",
                    len(pending[account]),
                    account,
                    reply,
                )
            elif reply == 1:
                self._drained(account)

    async def drain(self) -> None:
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


class Consumer:
    def __init__(
        self,
        streams: EventStream | Mapping[int, EventStream],
        deliverer: Deliverer,
        *,
        name: str,
        reclaim_idle_ms: int,
        lanes: Lanes | None = None,
        max_entries_in_flight: int = 1000,
        account_concurrency: int = 200,
        account_queue: int = 2 * READ_COUNT,
        min_account_window: int = 1,
        dead_letter_after: int = 5,
        clock: Clock = system_clock,
    ) -> None:
        # Partition → its events stream (one stream: partition 0).
        self._streams = {0: streams} if isinstance(streams, EventStream) else dict(streams)
        self._acks = {p: Acknowledgements(stream) for p, stream in self._streams.items()}
        self._lanes = lanes
        self._lane_acks = None if lanes is None else LaneAcknowledgements(lanes, self._drained)
        self._deliverer = deliverer
        self.name = name
        # Unique per process start (a restarted process may get the same name), then a count.
        self._owner = f"c:{name}:{uuid.uuid4().hex[:8]}"
        self._passes = itertools.count()
        self._reclaim_idle_ms = reclaim_idle_ms
        self._max_in_flight = max_entries_in_flight
        self._dead_letter_after = dead_letter_after
        self._clock = clock
        # Without lanes nothing is spilled: an account's backlog waits in memory (and the
        # readers stop at max_entries_in_flight).
        self.fair: FairScheduler[Work] = FairScheduler(
            window=account_concurrency,
            queue_limit=account_queue if lanes is not None else max_entries_in_flight,
            min_window=min(min_account_window, account_concurrency),
        )
        self._background: set[asyncio.Task[Any]] = set()  # dead letters, spills, lane reads
        # Once full, read again only when a whole read's worth has finished: reading as
        # soon as one entry finishes made reads of a few entries each (430 reads and
        # subscriber lookups for 10,000 entries), each paying its round trips and parsing.
        self._resume_below = max_entries_in_flight - min(READ_COUNT, max_entries_in_flight // 2)
        self._tasks: set[asyncio.Task[bool]] = set()
        # Fan-out events out of their account's window, their slower deliveries still going.
        self._released = 0
        # The events waiting or being processed here, by event id: unlike entry ids, unique
        # across the partitions' streams (with several, the id names its partition).
        self._running: dict[str, Work] = {}
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()  # set once there is room for a read
        self._room.set()
        self._next_reclaim = {p: 0.0 for p in self._streams}
        self._pump_due = False
        # Accounts whose lane this worker reads (spilled here, or found in Redis), and
        # those with a lane read under way or resting after an empty one.
        self._lane_accounts: set[str] = set()
        self._lane_reading: set[str] = set()
        self._lane_rest: dict[str, float] = {}
        self._lane_idle: dict[str, float] = {}  # the last rest after an empty read

    def _in_memory(self) -> int:
        return self.fair.queued + self.fair.in_flight + self._released

    async def run(self) -> None:
        """Read and deliver until `stop`; Redis outages are waited out, never fatal."""
        loops = [
            asyncio.create_task(self._read_loop(partition, stream), name=f"read-{partition}")
            for partition, stream in self._streams.items()
        ]
        if self._lanes is not None:
            loops.append(asyncio.create_task(self._lane_loop(), name="lanes"))
        loops.append(asyncio.create_task(self._touch_loop(), name="touch"))
        try:
            await self._stopping.wait()
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _read_loop(self, partition: int, stream: EventStream) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._read_once(partition, stream)
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
                    await stream.ensure_group()  # if this fails, the next read says so
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

    async def _read_once(self, partition: int, stream: EventStream) -> None:
        if self._in_memory() > self._resume_below:  # backpressure
            # An event, not asyncio.wait(tasks): that would hook into every task in flight
            # each time one finishes (quadratic, and a tenth of the worker's CPU in a profile).
            self._room.clear()
            await self._room.wait()
            if self._stopping.is_set():
                return
        free = max(1, self._max_in_flight - self._in_memory())
        if time.monotonic() >= self._next_reclaim[partition]:
            read = await self._reclaim(stream, free)
            self._next_reclaim[partition] = time.monotonic() + RECLAIM_EVERY_SECONDS
        else:
            read = await stream.read_new(self.name, count=min(READ_COUNT, free), block_ms=BLOCK_MS)
        if self._stopping.is_set():
            # Stopped while reading: leave these pending (another consumer reclaims them)
            # rather than start work that shutdown would cut off before it is recorded.
            return
        if read.not_events:
            logger.error("stream entries %s are not events; setting them aside", read.not_events)
            stream.count_unreadable(len(read.not_events))  # replied to in passing
            for entry_id in read.not_events:
                self._set_aside(stream, entry_id, "unreadable", read.why_not.get(entry_id, ""))
        running = self._running
        # Not those reclaimed from ourselves while still at work on them.
        batch = [entry for entry in read.events if _running_key(entry[1]) not in running]
        if read.deliveries:
            batch = self._without_exhausted(stream, batch, read.deliveries)
        if not batch:
            return
        subscribers = await self._subscribers(batch)
        if self._stopping.is_set():
            return
        spill: list[tuple[str, str]] = []
        acks = self._acks[partition]
        for entry_id, event in batch:
            webhooks = subscribers[event.account_id, event.type]
            account = event.account_id
            if not webhooks or account is None:
                acks.add(entry_id)  # nobody to deliver it to
                continue
            work = Work(entry_id, event, webhooks, partition)
            if self.fair.offer(account, work, len(webhooks)):
                running[_running_key(event)] = work
            else:
                spill.append((entry_id, account))
        if spill:
            self._spill(partition, stream, spill)
        self._pump()

    async def _subscribers(
        self, batch: list[tuple[str, Event]]
    ) -> dict[tuple[str | None, str], list[StoredWebhook]]:
        """One subscriber lookup per account and event type in the read, made after the read:
        each event goes to its account's webhooks as they were when it was read or later.
        An operational event is never sent to the webhook it is about."""
        found = await self._deliverer.subscribers({(e.account_id, e.type) for _, e in batch})
        return found

    def _pump(self) -> None:
        """Start what the fair scheduler lets start, and read back lanes with room."""
        self._pump_due = False
        if self._stopping.is_set():
            return  # what waits stays pending: another worker reclaims it
        fair = self.fair
        while fair.in_flight < self._max_in_flight:
            took = fair.take()
            if took is None:
                break
            self._start(took[0], took[1])
        if self._lane_accounts and not self._stopping.is_set():
            self._read_lanes()

    def _pump_soon(self) -> None:
        # Once per loop turn, after every callback due this turn: finished tasks free their
        # windows together and one pass starts their successors.
        if not self._pump_due:
            self._pump_due = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _start(self, account: str, work: Work) -> None:
        # A fresh lease owner per processing: if this very consumer reclaims an entry it
        # is still working on, its two passes must not renew each other's leases. The
        # task runs the delivery itself (no wrapper coroutine: every await in it would
        # pass through one more frame); _done acknowledges the entry or says why not.
        owner = f"{self._owner}:{next(self._passes)}"
        try:
            deliver = self._deliverer.deliver_event(
                work.entry_id,
                work.event,
                work.webhooks,
                owner=owner,
                first_done=(
                    functools.partial(self._release, account, work)
                    if len(work.webhooks) > 1
                    else None
                ),
            )
        except Exception as exc:
            # A bug, not an outage: the others go on; this one stays pending and is tried
            # again when reclaimed, or set aside if it was its last.
            logger.exception("preparing entry %s for delivery failed", work.entry_id)
            self.fair.finished(account, congested=False)
            self._running.pop(_running_key(work.event), None)
            self._failed(work, exc)
            return
        work.started = time.monotonic()
        task = asyncio.create_task(deliver)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, account=account, work=work))

    def _spill(self, partition: int, stream: EventStream, entries: list[tuple[str, str]]) -> None:
        """Move these entries to their accounts' lanes, in the background. If that fails they
        stay pending here and are reclaimed (and offered again) after the claim window."""
        assert self._lanes is not None  # nothing is refused without lanes
        lanes = self._lanes
        self._lane_accounts.update(account for _, account in entries)

        async def spill() -> None:
            try:
                await lanes.spill(stream.key, partition, entries, epoch_ms(self._clock()))
            except redis.exceptions.RedisError as exc:
                logger.warning(
                    "spilling %d entries to their lanes failed (%r); they are reclaimed later",
                    len(entries),
                    exc,
                )
                return
            self._pump_soon()  # their lanes can be read back from now

        self._in_background(spill())

    def _shed(self, account: str) -> None:
        """The account's window narrowed: what it has queued beyond ACCOUNT_QUEUE leaves
        memory for its lane (read from the stream only: lane entries stay), so that its slow
        endpoint does not hold the readers back."""
        shed = self.fair.shed(account, lambda work: work.lane_id is None)
        by_partition: dict[int, list[tuple[str, str]]] = {}
        for work in shed:
            self._running.pop(_running_key(work.event), None)
            by_partition.setdefault(work.partition, []).append((work.entry_id, account))
        for partition, entries in by_partition.items():
            self._spill(partition, self._streams[partition], entries)

    def _read_lanes(self) -> None:
        now = time.monotonic()
        for account in self._lane_accounts:
            if account in self._lane_reading or self._lane_rest.get(account, 0.0) > now:
                continue
            room = self.fair.room(account)
            if room > 0:
                self._lane_reading.add(account)
                self._in_background(self._read_lane(account, room))

    async def _read_lane(self, account: str, count: int) -> None:
        assert self._lanes is not None
        try:
            read = await self._lanes.read(account, self.name, count)
            await self._offer_from_lane(account, read)
        except redis.exceptions.RedisError as exc:
            logger.warning("reading the lane of %s failed (%r); trying again", account, exc)
            self._lane_rest[account] = time.monotonic() + LANE_IDLE_SECONDS
        finally:
            self._lane_reading.discard(account)

    async def _offer_from_lane(self, account: str, read: LaneRead) -> None:
        if read.gone:
            self._drained(account)
            return
        if read.not_events and self._lane_acks is not None:
            logger.error("lane entries %s of %s are not events; dropped", read.not_events, account)
            for lane_id in read.not_events:
                self._lane_acks.add(account, lane_id)
        batch = []
        limit = self._dead_letter_after
        for lane_id, entry_id, event in read.events:
            if _running_key(event) in self._running:
                continue  # reclaimed from ourselves while still at work on it
            times = read.deliveries.get(lane_id, 1)
            if times <= limit:
                batch.append((lane_id, entry_id, event))
                continue
            detail = (
                f"handed out {times - 1} times from its account's lane without being "
                "finished: the worker holding it stopped, crashed or lost Redis each time"
            )
            self._set_lane_entry_aside(account, lane_id, "reclaimed", detail, limit + 1)
        if not batch:
            if not read.events and not read.not_events:
                # Nothing unread: the rest is in flight here or at another worker. Look again
                # later, less often each time it is still so (every worker lists every lane).
                rest = min(LANE_IDLE_MAX_SECONDS, self._lane_idle.get(account, 0.0) * 2)
                self._lane_idle[account] = rest = max(LANE_IDLE_SECONDS, rest)
                self._lane_rest[account] = time.monotonic() + rest
            return
        self._lane_idle.pop(account, None)
        subscribers = await self._subscribers([(entry_id, e) for _, entry_id, e in batch])
        for lane_id, entry_id, event in batch:
            webhooks = subscribers[event.account_id, event.type]
            if not webhooks and self._lane_acks is not None:
                self._lane_acks.add(account, lane_id)
                continue
            partition = self._partition_of(event)
            work = Work(entry_id, event, webhooks, partition, lane_id)
            self.fair.offer(account, work, len(webhooks), from_lane=True)
            self._running[_running_key(event)] = work
        self._pump()

    def _partition_of(self, event: Event) -> int:
        return keys.partitioning().of_account(event.account_id)

    async def _lane_loop(self) -> None:
        """Find lanes spilled by other workers (or dead ones) and take over the lane entries a
        dead worker held."""
        assert self._lanes is not None
        next_reclaim = time.monotonic() + RECLAIM_EVERY_SECONDS
        while not self._stopping.is_set():
            try:
                for partition in self._streams:
                    for account in await self._lanes.accounts(partition):
                        if account not in self._lane_accounts:
                            self._lane_accounts.add(account)
                            self.fair.mark_spilling(account)
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + RECLAIM_EVERY_SECONDS
                    for account in list(self._lane_accounts):
                        room = self.fair.room(account)
                        if room > 0:
                            read = await self._lanes.reclaim(
                                account,
                                self.name,
                                min_idle_ms=self._reclaim_idle_ms,
                                count=room,
                            )
                            await self._offer_from_lane(account, read)
                self._pump()
            except redis.exceptions.RedisError as exc:
                logger.warning("looking for lanes failed (%r); trying again", exc)
            except Exception:
                logger.exception("lane loop error; trying again")
            await self._pause(LANE_SCAN_SECONDS)

    async def _touch_loop(self) -> None:
        """Entries read here stay pending in their stream or lane until done, and one idle
        for the claim window is taken for a dead worker's: an event waiting its turn in a
        slow account's queue (or at its endpoint) for that long would be taken over by
        another worker, and counted one delivery nearer to being set aside, while this one
        still has it. So the idle time of every entry held here is reset, well within the
        window (XCLAIM JUSTID, which counts no delivery)."""
        period = max(0.5, min(10.0, self._reclaim_idle_ms / 4000))
        while not self._stopping.is_set():
            await self._pause(period)
            held = [work for work in self._running.values() if work.event.account_id]
            if not held or self._stopping.is_set():
                continue
            by_stream: dict[int, list[str]] = {}
            by_lane: dict[str, list[str]] = {}
            for work in held:
                if work.lane_id is None:
                    by_stream.setdefault(work.partition, []).append(work.entry_id)
                else:
                    by_lane.setdefault(work.event.account_id or "", []).append(work.lane_id)
            touches = [
                self._streams[partition].touch(self.name, ids)
                for partition, ids in by_stream.items()
            ]
            if self._lanes is not None:
                touches += [
                    self._lanes.touch(account, self.name, ids) for account, ids in by_lane.items()
                ]
            for outcome in await asyncio.gather(*touches, return_exceptions=True):
                if isinstance(outcome, Exception):
                    logger.warning("refreshing held entries failed (%r); trying again", outcome)

    def _drained(self, account: str) -> None:
        """The account's lane is empty and gone: its events queue in memory again."""
        self._lane_accounts.discard(account)
        self._lane_rest.pop(account, None)
        self._lane_idle.pop(account, None)
        self.fair.lane_drained(account)

    async def _reclaim(self, stream: EventStream, count: int) -> StreamRead:
        read = await stream.reclaim(self.name, min_idle_ms=self._reclaim_idle_ms, count=count)
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
        self, stream: EventStream, batch: list[tuple[str, Event]], deliveries: dict[str, int]
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
            self._set_aside(stream, entry[0], "reclaimed", detail, min_deliveries=limit + 1)
        return kept

    def _failed(self, work: Work, exc: BaseException) -> None:
        """Processing raised (a bug, not an outage): set the entry aside if the group has
        handed it out `dead_letter_after` times, else leave it to be tried again (from the
        stream, or from its account's lane)."""
        detail = f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]
        if work.lane_id is not None and work.event.account_id is not None:
            self._set_lane_entry_aside(
                work.event.account_id, work.lane_id, "failed", detail, self._dead_letter_after
            )
            return
        stream = self._streams[work.partition]
        self._set_aside(
            stream, work.entry_id, "failed", detail, min_deliveries=self._dead_letter_after
        )

    def _set_aside(
        self,
        stream: EventStream,
        entry_id: str,
        reason: str,
        detail: str,
        min_deliveries: int = 0,
    ) -> None:
        """Make the entry a dead letter, in the background (the read loop does not wait)."""
        self._in_background(self._dead_letter(stream, entry_id, reason, detail, min_deliveries))

    def _set_lane_entry_aside(
        self, account: str, lane_id: str, reason: str, detail: str, min_deliveries: int
    ) -> None:
        assert self._lanes is not None
        lanes = self._lanes

        async def set_aside() -> None:
            try:
                letter = await lanes.dead_letter(
                    account,
                    lane_id,
                    consumer=self.name,
                    reason=reason,
                    detail=detail,
                    at=format_timestamp(self._clock()),
                    min_deliveries=min_deliveries,
                )
            except redis.exceptions.RedisError as exc:
                logger.warning("setting lane entry %s aside failed (%r)", lane_id, exc)
                return
            if letter is not None:
                logger.error(
                    "lane entry %s of %s set aside as dead letter %s (%s: %s); see GET "
                    "/api/dead-letters",
                    lane_id,
                    account,
                    letter,
                    reason,
                    detail,
                )

        self._in_background(set_aside())

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _dead_letter(
        self, stream: EventStream, entry_id: str, reason: str, detail: str, min_deliveries: int
    ) -> None:
        try:
            letter = await stream.dead_letter(
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

    def _release(self, account: str, work: Work, handed_on: bool) -> None:
        """The first of a fan-out event's deliveries has ended: the event leaves its
        account's window, and its account is paced by its fastest endpoint. The others go
        on, each held back by its own endpoint's limit (and handed off once that endpoint is
        saturated: worker.limiter): a hanging endpoint must not hold the window with events
        whose every other delivery is done, and starve the account's healthy endpoints. The
        entry is still acknowledged only once all are done."""
        if work.released:
            return
        work.released = True
        self._released += 1
        congested = handed_on or time.monotonic() - work.started > SLOW_EVENT_SECONDS
        if self.fair.finished(account, congested=congested) and self._lanes is not None:
            self._shed(account)
        if not self._stopping.is_set():
            self._pump_soon()

    def _done(self, task: asyncio.Task[bool], account: str, work: Work) -> None:
        self._tasks.discard(task)
        self._running.pop(_running_key(work.event), None)
        congested = False
        if task.cancelled():
            pass  # cut short by shutdown: left pending, reclaimed by another consumer
        elif (exc := task.exception()) is None:
            # Handed on (its endpoint saturated or over its rate), or slow to finish: the
            # account's endpoints keep it waiting, and its window narrows.
            congested = task.result() or time.monotonic() - work.started > SLOW_EVENT_SECONDS
            if work.lane_id is None:
                self._acks[work.partition].add(work.entry_id)
            elif self._lane_acks is not None:
                self._lane_acks.add(account, work.lane_id)
        elif isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            # Left unacknowledged: reclaimed and finished once Redis is back.
            logger.warning("entry %s interrupted by a redis error: %s", work.entry_id, exc)
        elif isinstance(exc, redis.exceptions.ResponseError):
            logger.warning("entry %s interrupted: %s", work.entry_id, exc)
        else:
            # A bug, not an outage: say so loudly; the entry is reclaimed and tried again,
            # or set aside if this was its last try.
            logger.error("delivering entry %s failed", work.entry_id, exc_info=exc)
            self._failed(work, exc)
        if work.released:
            self._released -= 1  # its account's window let it go already
        else:
            work.released = True
            if self.fair.finished(account, congested=congested) and self._lanes is not None:
                self._shed(account)
        if self._in_memory() <= self._resume_below:
            self._room.set()
        if not self._stopping.is_set():
            self._pump_soon()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def stop(self, grace_seconds: float) -> None:
        """Stop reading; let in-flight entries finish within `grace_seconds`. Whatever is cut
        short, or was still waiting its turn, stays unacknowledged and is reclaimed by another
        consumer: nothing is lost."""
        self._stopping.set()
        self._room.set()
        if self._tasks:
            _, unfinished = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in unfinished:
                task.cancel()
            if unfinished:
                logger.warning("%d entries left for another consumer", len(unfinished))
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        for acks in self._acks.values():
            await acks.drain()
        if self._lane_acks is not None:
            await self._lane_acks.drain()


def _running_key(event: Event) -> str:
    """An event read from a stream or a lane has its id (set when decoded)."""
    return event.id if isinstance(event.id, str) else ""
