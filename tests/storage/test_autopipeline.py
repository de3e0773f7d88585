"""AutoPipeline against a real Redis: commands issued together travel together, and each
caller still gets exactly its own reply or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from devtools.redis_server import PrivateRedis
from service.storage import autopipeline
from service.storage.autopipeline import AutoPipeline
from service.storage.connection import RETRY_ON, retry_policy

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


class CountingConnection(Connection):
    """Records every write to Redis, i.e. round trips, across all its instances."""

    sends: list[int] = []
    sent = asyncio.Event()

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.sends.append(len(command))
        self.sent.set()
        await super().send_packed_command(command, check_health)


class DroppingConnection(CountingConnection):
    """Loses the connection once, after reading `drop_after` replies: Redis ran the batch
    but the rest of its replies never arrive, as when a network path breaks."""

    drop_after: int | None = None
    replies = 0

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if DroppingConnection.replies == DroppingConnection.drop_after:
            DroppingConnection.drop_after = None
            await self.disconnect()
            raise redis.exceptions.ConnectionError("connection lost (test)")
        DroppingConnection.replies += 1
        return await super().read_response(*args, **kwargs)


class CountingRedis(Redis):
    @property
    def round_trips(self) -> int:
        return len(CountingConnection.sends)


@pytest.fixture
async def counting_redis(real_redis: Redis, redis_server: PrivateRedis) -> Any:
    CountingConnection.sends = []
    client = CountingRedis.from_url(redis_server.url, connection_class=CountingConnection)
    await client.ping()  # the connection's own set-up is not a pipeline's round trip
    CountingConnection.sends.clear()
    yield client
    await client.aclose()


async def test_commands_issued_together_are_one_round_trip(counting_redis: CountingRedis) -> None:
    pipeline = AutoPipeline(counting_redis)
    replies = await asyncio.gather(
        *(pipeline.execute("INCRBY", f"n{i % 7}", i) for i in range(200)),
        pipeline.execute("GET", "n0"),
    )
    assert counting_redis.round_trips == pipeline.round_trips == 1
    # Each caller got its own reply, in the order Redis ran them.
    totals: dict[int, int] = {}
    for i, reply in enumerate(replies[:200]):
        totals[i % 7] = totals.get(i % 7, 0) + i
        assert reply == totals[i % 7]
    assert replies[200] == str(totals[0]).encode()


async def test_batches_are_capped(counting_redis: CountingRedis) -> None:
    pipeline = AutoPipeline(counting_redis, max_batch=100)
    await asyncio.gather(*(pipeline.execute("RPUSH", "list", i) for i in range(250)))
    assert counting_redis.round_trips == pipeline.round_trips == 3
    assert await counting_redis.lrange("list", 0, -1) == [str(i).encode() for i in range(250)]


async def test_commands_in_later_turns_are_later_batches(counting_redis: CountingRedis) -> None:
    pipeline = AutoPipeline(counting_redis)
    assert await pipeline.execute("SET", "a", "1") is True
    assert await pipeline.execute("GET", "a") == b"1"
    assert counting_redis.round_trips == pipeline.round_trips == 2


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


async def test_commands_queued_during_a_round_trip_go_together_next(
    counting_redis: CountingRedis,
) -> None:
    pipeline = AutoPipeline(counting_redis)
    CountingConnection.sent = asyncio.Event()
    first = asyncio.ensure_future(pipeline.execute("SET", "a", "1"))
    await CountingConnection.sent.wait()  # sent: the sender now awaits the reply
    later = [asyncio.ensure_future(pipeline.execute("INCR", "b")) for _ in range(50)]
    assert await first is True
    assert sorted(await asyncio.gather(*later)) == list(range(1, 51))
    assert counting_redis.round_trips == 2


async def connected_client(url: str, connection_class: type[Connection]) -> Redis:
    """A client retrying as the service's does (service.storage.connection), connected."""
    client = Redis.from_url(
        url, connection_class=connection_class, retry=retry_policy(), retry_on_error=RETRY_ON
    )
    await client.ping()  # connected, its set-up replies read
    return client


async def test_a_dropped_connection_resends_only_what_was_not_answered(
    real_redis: Redis, redis_server: PrivateRedis
) -> None:
    client = await connected_client(redis_server.url, DroppingConnection)
    DroppingConnection.replies, DroppingConnection.drop_after = 0, 3
    pipeline = AutoPipeline(client)
    replies = await asyncio.gather(*(pipeline.execute("RPUSH", "log", i) for i in range(6)))
    # Redis ran all six; the replies of the last three were lost, so those three were sent
    # again on a fresh connection and ran twice (at least once, as documented).
    assert replies[:3] == [1, 2, 3]
    assert replies[3:] == [7, 8, 9]
    assert await real_redis.lrange("log", 0, -1) == [
        str(i).encode() for i in (0, 1, 2, 3, 4, 5, 3, 4, 5)
    ]
    assert pipeline.round_trips == 2
    await client.aclose()


async def test_a_command_that_cannot_be_packed_fails_only_its_caller(real_redis: Redis) -> None:
    pipeline = AutoPipeline(real_redis)
    results = await asyncio.gather(
        pipeline.execute("SET", "a", "1"),
        pipeline.execute("SET", "b", None),
        pipeline.execute("SET", "c", "1"),
        return_exceptions=True,
    )
    assert results[0] is True
    assert isinstance(results[1], redis.exceptions.DataError)
    assert results[2] is True
    assert await real_redis.exists("a", "b", "c") == 2


class SilentConnection(Connection):
    """Its first read of a reply never returns: a connection gone silent (half-open)."""

    silent_reads = 0
    went_silent = asyncio.Event()

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        if SilentConnection.silent_reads:
            SilentConnection.silent_reads -= 1
            SilentConnection.went_silent.set()
            await asyncio.Event().wait()
        return await super().read_response(*args, **kwargs)


async def test_a_silent_connection_is_dropped_and_the_batch_retried(
    real_redis: Redis, redis_server: PrivateRedis
) -> None:
    client = await connected_client(redis_server.url, SilentConnection)
    SilentConnection.silent_reads = 1
    pipeline = AutoPipeline(client, reply_timeout=0.2)
    # Redis ran it the first time too, but the reply never came: sent again on a fresh
    # connection, it ran twice (at least once, as documented).
    assert await asyncio.wait_for(pipeline.execute("INCR", "n"), 5) == 2
    assert pipeline.round_trips == 2
    await client.aclose()


async def test_a_batch_that_fails_for_good_fails_only_its_own_callers(
    real_redis: Redis, redis_server: PrivateRedis
) -> None:
    client = Redis.from_url(redis_server.url, connection_class=SilentConnection)  # no retries
    await client.ping()
    SilentConnection.silent_reads, SilentConnection.went_silent = 1, asyncio.Event()
    pipeline = AutoPipeline(client, reply_timeout=0.2)
    stuck = asyncio.ensure_future(pipeline.execute("INCR", "first"))
    await SilentConnection.went_silent.wait()  # the first batch is out: queue one behind it
    behind = asyncio.ensure_future(pipeline.execute("INCR", "second"))
    with pytest.raises(redis.exceptions.TimeoutError):
        await asyncio.wait_for(stuck, 5)
    assert await asyncio.wait_for(behind, 5) == 1
    await client.aclose()


async def test_a_script_lost_by_redis_is_loaded_once_for_all_its_callers(
    real_redis: Redis,
) -> None:
    script = real_redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    pipeline = AutoPipeline(real_redis)
    await real_redis.script_flush()
    await real_redis.config_resetstat()
    results = await asyncio.gather(*(pipeline.script(script, ["k"], [1]) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))
    stats = await real_redis.info("commandstats")
    assert stats["cmdstat_script|load"]["calls"] == 1


class TestHeldConnection:
    """The last batch's connection is kept for the next one, skipping the pool's check of
    each connection it hands out; held unused for HOLD_SECONDS, it goes back through it."""

    @staticmethod
    def pool_handouts(client: Redis, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
        handed: list[Any] = []
        pool = client.connection_pool
        get_connection = pool.get_connection

        async def recording(*args: Any, **kwargs: Any) -> Any:
            connection = await get_connection(*args, **kwargs)
            handed.append(connection)
            return connection

        monkeypatch.setattr(pool, "get_connection", recording)
        return handed

    async def test_batches_in_quick_succession_share_one_connection_from_the_pool(
        self, counting_redis: CountingRedis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        handed = self.pool_handouts(counting_redis, monkeypatch)
        pipeline = AutoPipeline(counting_redis)
        for number in range(20):
            assert await pipeline.execute("INCR", "n") == number + 1
        assert pipeline.round_trips == 20
        assert len(handed) == 1

    async def test_a_connection_held_unused_goes_back_through_the_pool(
        self,
        counting_redis: CountingRedis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        handed = self.pool_handouts(counting_redis, monkeypatch)
        pipeline = AutoPipeline(counting_redis)
        await pipeline.execute("INCR", "n")
        now = autopipeline.time.monotonic()
        monkeypatch.setattr(
            autopipeline.time, "monotonic", lambda: now + autopipeline.HOLD_SECONDS + 0.1
        )
        assert await pipeline.execute("INCR", "n") == 2
        assert len(handed) == 2  # the second batch's came from the pool, checked
        assert handed[0] is handed[1]  # given back first: the pool's one idle connection

    async def test_a_held_connection_closed_by_redis_is_replaced(
        self, real_redis: Redis, redis_server: PrivateRedis
    ) -> None:
        client = await connected_client(redis_server.url, CountingConnection)
        pipeline = AutoPipeline(client)
        assert await pipeline.execute("CLIENT", "SETNAME", "held") == b"OK"
        clients = await real_redis.client_list()
        held = next(c for c in clients if c["name"] == "held")
        await real_redis.client_kill_filter(_id=held["id"])
        # Sent on the dead connection, then again on a fresh one (the client's retries).
        assert await asyncio.wait_for(pipeline.execute("INCR", "n"), 5) == 1
        await client.aclose()
