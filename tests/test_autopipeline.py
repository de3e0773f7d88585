"""AutoPipeline against a real Redis: commands issued together travel together, and each
caller still gets exactly its own reply or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from devtools.redis_server import PrivateRedis
from service.autopipeline import AutoPipeline

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


class CountingRedis(Redis):
    """Records how many pipelines were sent, i.e. round trips."""

    pipelines = 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        self.pipelines += 1
        return super().pipeline(transaction=transaction, shard_hint=shard_hint)


@pytest.fixture
async def counting_redis(real_redis: Redis, redis_server: PrivateRedis) -> Any:
    client = CountingRedis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_commands_issued_together_are_one_round_trip(counting_redis: CountingRedis) -> None:
    pipeline = AutoPipeline(counting_redis)
    replies = await asyncio.gather(
        *(pipeline.execute("INCRBY", f"n{i % 7}", i) for i in range(200)),
        pipeline.execute("GET", "n0"),
    )
    assert counting_redis.pipelines == 1
    # Each caller got its own reply, in the order Redis ran them.
    totals: dict[int, int] = {}
    for i, reply in enumerate(replies[:200]):
        totals[i % 7] = totals.get(i % 7, 0) + i
        assert reply == totals[i % 7]
    assert replies[200] == str(totals[0]).encode()


async def test_batches_are_capped(counting_redis: CountingRedis) -> None:
    pipeline = AutoPipeline(counting_redis, max_batch=100)
    await asyncio.gather(*(pipeline.execute("RPUSH", "list", i) for i in range(250)))
    assert counting_redis.pipelines == 3
    assert await counting_redis.lrange("list", 0, -1) == [str(i).encode() for i in range(250)]


async def test_commands_in_later_turns_are_later_batches(counting_redis: CountingRedis) -> None:
    pipeline = AutoPipeline(counting_redis)
    assert await pipeline.execute("SET", "a", "1") is True
    assert await pipeline.execute("GET", "a") == b"1"
    assert counting_redis.pipelines == 2


async def test_an_error_reply_fails_only_its_caller(real_redis: Redis) -> None:
    await real_redis.set("text", "not a number")
    pipeline = AutoPipeline(real_redis)
    results = await asyncio.gather(
        pipeline.execute("INCR", "counter"),
        pipeline.execute("INCR", "text"),
        pipeline.execute("INCR", "counter"),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], redis.exceptions.ResponseError)
    assert "not an integer" in str(results[1])
    assert results[2] == 2


async def test_a_script_lost_by_redis_is_loaded_again(real_redis: Redis) -> None:
    script = real_redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    pipeline = AutoPipeline(real_redis)
    assert await pipeline.script(script, ["k"], [5]) == 5
    await real_redis.script_flush()  # as after a restart without persistence
    # Each caller reloads and runs it on its own, in whatever order they get there.
    results = await asyncio.gather(*(pipeline.script(script, ["k"], [1]) for _ in range(3)))
    assert sorted(results) == [6, 7, 8]


async def test_a_cancelled_caller_sends_nothing_and_harms_no_other(real_redis: Redis) -> None:
    pipeline = AutoPipeline(real_redis)
    cancelled = asyncio.ensure_future(pipeline.execute("SET", "cancelled", "1"))
    kept = asyncio.ensure_future(pipeline.execute("SET", "kept", "1"))
    await asyncio.sleep(0)  # both queued, not yet sent
    cancelled.cancel()
    assert await kept is True
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await real_redis.exists("cancelled", "kept") == 1


async def test_a_connection_failure_reaches_every_caller() -> None:
    client = Redis(port=1, socket_connect_timeout=1)  # nothing listens there
    pipeline = AutoPipeline(client)
    results = await asyncio.gather(
        pipeline.execute("GET", "a"), pipeline.execute("GET", "b"), return_exceptions=True
    )
    assert all(isinstance(r, redis.exceptions.ConnectionError) for r in results)
    await client.aclose()
