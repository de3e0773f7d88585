"""The consumer sets aside what it cannot process, on a real Redis, with a stand-in deliverer:
entries that are no event, that keep failing, and that keep being reclaimed unfinished.
(End to end, with the real worker and receivers: tests/worker/test_dead_letters.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from redis.asyncio import Redis

from service.core.models import Event
from service.storage import keys
from service.storage.dead_letters import DeadLetterStore
from service.storage.events import EventStore
from service.storage.stream import EventStream
from tests.storage.test_events import event
from tests.worker.test_deliverer import eventually
from worker import consumer as consumer_module
from worker.consumer import Consumer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


class StandIn:
    """A deliverer whose deliveries of `poison` raise; it records what it delivered."""

    def __init__(self, poison: str = "msg_poison", *, prepare_fails: bool = False) -> None:
        self.poison = poison
        self.prepare_fails = prepare_fails
        self.delivered: list[str] = []

    async def subscribers(self, audiences: set[Any]) -> dict[Any, list[Any]]:
        # One stand-in webhook each: an event nobody subscribes to is acknowledged unread.
        return {audience: ["webhook"] for audience in audiences}

    def deliver_event(
        self,
        entry_id: str,
        event: Event,
        webhooks: list[Any],
        *,
        owner: str,
        first_done: Callable[[bool], None] | None = None,
    ) -> Coroutine[Any, Any, bool]:
        if event.email_id == self.poison and self.prepare_fails:
            raise ValueError("cannot prepare this one")
        return self._deliver(event)

    async def _deliver(self, event: Event) -> bool:
        if event.email_id == self.poison:
            raise RuntimeError("cannot deliver this one")
        self.delivered.append(event.email_id)
        return False


RunConsumer = Callable[..., Coroutine[Any, Any, Consumer]]


@pytest.fixture
async def run_consumer(
    real_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunConsumer]:
    monkeypatch.setattr(consumer_module, "RECLAIM_EVERY_SECONDS", 0.1)
    started: list[tuple[Consumer, asyncio.Task[None]]] = []

    async def run(deliverer: StandIn, **options: Any) -> Consumer:
        stream = EventStream(real_redis)
        await stream.ensure_group()
        options.setdefault("reclaim_idle_ms", 60_000)
        consumer = Consumer(stream, deliverer, name="alive", **options)  # type: ignore[arg-type]
        started.append((consumer, asyncio.create_task(consumer.run())))
        return consumer

    yield run
    for consumer, task in started:
        await consumer.stop(grace_seconds=1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def letters(redis: Redis) -> list[tuple[str, str, int]]:
    found, _ = await DeadLetterStore(redis).page(before=None, limit=100)
    return [(letter.reason, letter.original, letter.deliveries) for letter in found]


async def pending(redis: Redis) -> int:
    return int((await redis.xpending(keys.EVENTS_STREAM, keys.DELIVERY_GROUP))["pending"])


async def test_an_entry_that_is_no_event_is_set_aside_at_once(
    real_redis: Redis, run_consumer: RunConsumer
) -> None:
    stand_in = StandIn()
    await run_consumer(stand_in)
    garbage = (await real_redis.xadd(keys.EVENTS_STREAM, {"e": b"{not json"})).decode()
    await EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60).append("sendgrid", [event(1)])
    [(reason, original, times)] = await eventually(lambda: letters(real_redis))
    assert (reason, original, times) == ("unreadable", garbage, 1)
    [letter] = (await DeadLetterStore(real_redis).page(before=None, limit=1))[0]
    assert letter.detail.startswith("the event field (e) does not decode")
    await eventually(lambda: _is(stand_in.delivered, ["msg_1"]))
    await eventually(lambda: _no_pending(real_redis))
    assert int(await real_redis.get(keys.UNREADABLE_EVENTS) or 0) == 1  # still counted


@pytest.mark.parametrize("prepare_fails", [False, True])
async def test_an_entry_that_keeps_failing_is_set_aside_at_its_last_try(
    real_redis: Redis, run_consumer: RunConsumer, prepare_fails: bool
) -> None:
    stand_in = StandIn(prepare_fails=prepare_fails)
    await run_consumer(stand_in, reclaim_idle_ms=300, dead_letter_after=2)
    store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
    [poison] = (await store.append("sendgrid", [event(0, email_id="msg_poison")])).stored
    await store.append("sendgrid", [event(1)])
    # Tried once, failed, left pending; reclaimed (handed out twice), failed: set aside.
    [(reason, original, times)] = await eventually(lambda: letters(real_redis))
    assert (reason, f"evt_{original}", times) == ("failed", poison, 2)
    [letter] = (await DeadLetterStore(real_redis).page(before=None, limit=1))[0]
    error = "ValueError: cannot prepare" if prepare_fails else "RuntimeError: cannot deliver"
    assert letter.detail.startswith(error)
    assert letter.consumer == "alive"
    assert stand_in.delivered == ["msg_1"]
    await eventually(lambda: _no_pending(real_redis))


async def test_an_entry_reclaimed_unfinished_too_often_is_set_aside_unprocessed(
    real_redis: Redis, run_consumer: RunConsumer
) -> None:
    store = EventStore(real_redis, maxlen=1000, dedup_ttl_seconds=60)
    stream = EventStream(real_redis)
    await stream.ensure_group()
    await store.append("sendgrid", [event(0), event(1)])
    # Two consumers died holding them: one was handed out twice, the other three times.
    read = await stream.read_new("dead", count=10, block_ms=10)
    first, second = (entry for entry, _ in read.events)
    for _ in range(2):
        await real_redis.xclaim(keys.EVENTS_STREAM, keys.DELIVERY_GROUP, "dead", 0, [second])
    stand_in = StandIn()
    await run_consumer(stand_in, reclaim_idle_ms=0, dead_letter_after=3)
    [(reason, original, times)] = await eventually(lambda: letters(real_redis))
    assert (reason, original, times) == ("reclaimed", second, 4)
    await eventually(lambda: _is(stand_in.delivered, ["msg_0"]))  # the first: its 2nd time
    await eventually(lambda: _no_pending(real_redis))
    assert first != second


async def _is(value: list[str], expected: list[str]) -> bool:
    return value == expected


async def _no_pending(redis: Redis) -> bool:
    return await pending(redis) == 0
