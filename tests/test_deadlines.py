"""service.deadlines: one coarse timer for many requests' deadlines, with asyncio.timeout's
semantics (no Redis, no network)."""

from __future__ import annotations

import asyncio

import pytest

from service.deadlines import Deadlines

pytestmark = pytest.mark.anyio


async def test_a_block_that_overruns_raises_timeout_error() -> None:
    deadlines = Deadlines(resolution=0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), deadlines.limit(0.05):
        await asyncio.Event().wait()  # never set: only the deadline ends this
    assert 0.05 <= loop.time() - started < 1.0
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_within_its_deadline_is_untouched() -> None:
    deadlines = Deadlines(resolution=0.01)
    with deadlines.limit(5):
        await asyncio.sleep(0)
        value = 42
    assert value == 42
    assert not deadlines._watched


async def test_many_blocks_each_keep_their_own_deadline() -> None:
    deadlines = Deadlines(resolution=0.01)
    release = asyncio.Event()

    async def guarded(seconds: float) -> str:
        try:
            with deadlines.limit(seconds):
                await release.wait()
                return "done"
        except TimeoutError:
            return "timed out"

    short = [asyncio.ensure_future(guarded(0.05)) for _ in range(3)]
    long = [asyncio.ensure_future(guarded(30)) for _ in range(3)]
    assert await asyncio.gather(*short) == ["timed out"] * 3
    release.set()
    assert await asyncio.gather(*long) == ["done"] * 3
    assert not deadlines._watched


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines(resolution=0.01)
    entered = asyncio.Event()

    async def guarded() -> None:
        with deadlines.limit(30):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(guarded())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_timer_runs_only_while_something_is_watched() -> None:
    deadlines = Deadlines(resolution=0.01)
    with deadlines.limit(5):
        ticker = deadlines._ticker
        assert ticker is not None
    ticker.cancel()
    deadlines._tick()  # as the loop would call it: it finds nothing and stops
    assert deadlines._ticker is None
    assert not deadlines._watched
