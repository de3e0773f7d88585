"""Metrics in Redis: each process's counts added to one hash once a second, and what a scrape
reads (that hash and the gauges).

Counting happens in memory (`service.core.metrics.Tally`); `MetricsRecorder` flushes a
process's tally with one pipeline of HINCRBYs a second, off the request and delivery paths,
and once more when the process stops. A flush that fails (Redis down or full) puts its counts
back for the next one, so an outage delays counts rather than losing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from redis.exceptions import RedisError

from service.core.ids import entry_order
from service.core.metrics import Snapshot, Tally
from service.storage import keys
from service.storage.connection import RedisClient
from service.storage.status import StatusStore

logger = logging.getLogger("mailhooks.metrics")

FLUSH_SECONDS = 1.0
LATE_MS = 1000


class MetricsStore:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._status = StatusStore(redis)

    async def add(self, counts: Mapping[str, int], sums: Mapping[str, float]) -> None:
        """Add a tally's counts and sums to the metrics hash, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, amount in counts.items():
                pipe.hincrby(keys.METRICS, name, amount)
            for name, value in sums.items():
                pipe.hincrbyfloat(keys.METRICS, name, value)
            await pipe.execute()

    async def snapshot(self, now_ms: int, *, lease_ms: int) -> Snapshot:
        """Everything a scrape shows: the counts of every process, and the gauges. A pending
        delivery whose lease ends more than `lease_ms` (one lease) from now waits for a later
        attempt: an attempt under way holds a lease from its start, a scheduled one from its
        time (service.storage.deliveries)."""
        readings = await self._status.readings()
        partitions = keys.partitioning().all()
        streams = readings.parts or (readings,)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.METRICS)
            # Each partition's stream's first entry its group has not read.
            for partition, stream in enumerate(streams):
                if stream.group_exists and stream.last_delivered is not None:
                    first_unread = f"({stream.last_delivered}"
                else:
                    first_unread = "-"  # no group yet: it will read from the first entry
                pipe.xrange(keys.events_stream(partition), first_unread, "+", count=1)
            for partition in partitions:
                pipe.zcount(keys.delivery_leases(partition), f"({now_ms + lease_ms}", "+inf")
            # Scheduled attempts a second late or more, in every partition's retry set (one
            # being attempted is hidden ahead of now: not late).
            for partition in partitions:
                pipe.zcount(keys.retries(partition), "-inf", now_ms - LATE_MS)
            if len(partitions) > 1:
                for partition in partitions:
                    pipe.hgetall(keys.partition_metrics(partition))
            counts, *replies = await pipe.execute()
        unread, per_partition = replies[: len(streams)], replies[len(streams) :]
        firsts = [rows[0][0].decode() for rows in unread if rows]
        count = len(partitions)
        scheduled = sum(int(n) for n in per_partition[:count])
        due = sum(int(n) for n in per_partition[count : 2 * count])
        merged = {name.decode(): value.decode() for name, value in counts.items()}
        for partition_counts in per_partition[2 * count :]:
            _add_counts(merged, partition_counts)
        return Snapshot(
            counts=merged,
            readings=readings,
            retries_scheduled=scheduled,
            retries_due=due,
            dead_letters=readings.dead_letters,
            first_unread=min(firsts, key=entry_order, default=None),
        )


def _add_counts(into: dict[str, str], counts: Mapping[bytes, bytes]) -> None:
    """Add a partition's counts (record.lua's: integers) to the metrics hash's."""
    for raw_name, raw_value in counts.items():
        name = raw_name.decode()
        into[name] = str(int(into.get(name, "0")) + int(raw_value))


class MetricsRecorder:
    """Flushes `tally` into Redis every `interval` seconds from `start` to `close`."""

    def __init__(
        self, store: MetricsStore, tally: Tally, *, interval: float = FLUSH_SECONDS
    ) -> None:
        self.tally = tally
        self.store = store
        self._interval = interval
        self._lock = asyncio.Lock()  # one flush at a time: a scrape's waits for the timer's
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # the last timed flush failed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-flush")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                return  # close() flushes the rest
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                if not self._failing:  # once per outage, not once a second
                    logger.warning("metrics not flushed (%s); kept until Redis takes them", exc)
                self._failing = True
            except Exception:
                logger.exception("flushing metrics failed; kept for the next flush")
            else:
                if self._failing:
                    logger.info("metrics flushed again")
                self._failing = False

    async def flush(self) -> None:
        """Add what was counted since the last flush to Redis now (a scrape does, so that its
        own process's counts are current); on failure the counts are kept."""
        async with self._lock:
            counts, sums = self.tally.take()
            if not counts and not sums:
                return
            try:
                await self.store.add(counts, sums)
            except BaseException:
                self.tally.restore(counts, sums)
                raise

    async def close(self, *, flush: bool = True) -> None:
        """Stop the timer and flush what is left (before the Redis client closes)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        if not flush:
            return
        try:
            await self.flush()
        except (RedisError, OSError) as exc:
            logger.warning("metrics of the last second lost at shutdown (%s)", exc)
