"""The consumer over several partitions' streams (16, on the slot-checking Redis), with a
stand-in deliverer: entry ids repeat across the streams, and each event is still delivered,
at once, never taken for another that is already at work."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from service.storage import keys
from service.storage.stream import EventStream
from tests.storage.test_events import event
from tests.worker.test_consumer_dead_letters import StandIn
from tests.worker.test_deliverer import eventually
from worker.consumer import Consumer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


class Slow(StandIn):
    """Each delivery takes a moment, so that both events are at work at once."""

    def __init__(self) -> None:
        super().__init__()
        self.both_started = asyncio.Event()
        self.started = 0

    async def _deliver(self, event: Any) -> bool:
        self.started += 1
        if self.started == 2:
            self.both_started.set()
        await asyncio.wait_for(self.both_started.wait(), timeout=3)
        return await super()._deliver(event)


def two_accounts_in_two_partitions() -> tuple[tuple[str, int], tuple[str, int]]:
    parts = keys.partitioning()
    found: dict[int, str] = {}
    for n in range(100):
        account = f"acc_{n:04d}"
        found.setdefault(parts.of_account(account), account)
        if len(found) == 2:
            break
    (pa, a), (pb, b) = found.items()
    return (a, pa), (b, pb)


async def test_the_same_entry_id_in_two_partitions_is_two_events(
    partitioned_redis: Redis,
) -> None:
    streams = {}
    for account, partition in two_accounts_in_two_partitions():
        stream = EventStream(partitioned_redis, partition=partition)
        await stream.ensure_group()
        streams[partition] = stream
        fields = {"e": msgspec.json.encode(event(partition)), "a": account}
        await partitioned_redis.xadd(keys.events_stream(partition), fields, id="1000-1")  # type: ignore[arg-type]
    recording = Slow()
    consumer = Consumer(streams, recording, name="c", reclaim_idle_ms=60_000)  # type: ignore[arg-type]
    running = asyncio.create_task(consumer.run())
    try:
        # Both at once, not one of them after the claim window (60 s here).
        await eventually(lambda: _is(len(recording.delivered), 2), timeout=5)
    finally:
        await consumer.stop(grace_seconds=1)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert sorted(recording.delivered) == sorted(f"msg_{p}" for p in streams)


async def _is(value: object, expected: object) -> bool:
    return value == expected
