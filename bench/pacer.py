"""The latency benchmarks' load generator: generic events POSTed open-loop at a steady rate,
each one's send and answer time recorded.

It shares the machine's two cores with everything it measures (web, worker, Redis, the
receiver), so it must cost as little as it can: the aiohttp client it replaces took 37 % of
a core at 896 events/s (~410 µs per request), about as much as the web process it was
timing, and that CPU was taken from the system under test (docs/performance.md, "Latency
tail"). Here each request is one pre-formatted write on a keep-alive connection of a pool,
answers are parsed by httptools, and the events due at each wake-up go out together.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import cast

import httptools
import uvloop

MAX_CONNECTIONS = 200
ANSWER_TIMEOUT_SECONDS = 10.0
# Well under uvicorn's keep-alive timeout (5 s): an idle connection is not reused after it.
IDLE_SECONDS = 2.0
# uvloop's timers count whole milliseconds and round: a sleep under half of one returns at
# once, so at rates over ~2,000/s (a send every 0.5 ms or less) sleeping until the next send
# spun, and the pacer took 71 % of a core at 2,831/s. It sleeps at least this long instead,
# and the events that fell due meanwhile go out together when it wakes.
MIN_SLEEP_SECONDS = 0.001


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed by httptools (as
    bench/receiver.py parses requests)."""

    def __init__(
        self,
        answered: Callable[[_Connection, str, int], None],
        lost: Callable[[_Connection, str | None], None],
    ) -> None:
        self._answered = answered
        self._lost = lost
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.email_id: str | None = None
        self.idle_since = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, email_id: str, request: bytes) -> None:
        assert self.transport is not None
        self.email_id = email_id
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()  # connection_lost fails the request under way

    def on_message_complete(self) -> None:  # called by the parser, once per answer
        email_id, self.email_id = self.email_id, None
        if not self._parser.should_keep_alive() and self.transport is not None:
            self.transport.close()  # the server's last answer here: not for reuse
        if email_id is not None:
            self._answered(self, email_id, self._parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        email_id, self.email_id = self.email_id, None
        self._lost(self, email_id)


def request_bytes(host: str, email_id: str) -> bytes:
    body = (
        f'{{"type":"email.opened","email_id":"{email_id}",'
        '"recipient":"alex@example.com","timestamp":"2026-11-28T00:00:00Z"}'
    ).encode()
    return (
        f"POST /api/webhooks HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def paced_ingest(
    url: str,
    rate: float,
    seconds: float,
    tag: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, float], dict[str, float], int]:
    """Open loop: one generic event every 1/rate s for `seconds` (email ids `{tag}-{n}`).
    Returns (email_id → send time, email_id → answer time, failures), times from
    time.time(); an answer that is not a 200, or none within ANSWER_TIMEOUT_SECONDS, is a
    failure."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    failed: set[str] = set()
    idle: list[_Connection] = []
    connections: list[_Connection] = []
    # Sends waiting for a connection while MAX_CONNECTIONS are busy (the server is behind):
    # woken by the next answer, or by a lost connection (None: make a new one).
    waiting: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
    settled = asyncio.Event()
    count = int(rate * seconds)

    def settle(email_id: str, ok: bool) -> None:
        if ok:
            answered[email_id] = time.time()
        else:
            failed.add(email_id)
        if len(answered) + len(failed) >= count:
            settled.set()

    def on_answer(connection: _Connection, email_id: str, status: int) -> None:
        settle(email_id, status == 200)
        transport = connection.transport
        if transport is None or transport.is_closing():
            return  # on_lost follows, and wakes a waiting send
        if waiting:
            waiting.popleft().set_result(connection)
        else:
            connection.idle_since = time.monotonic()
            idle.append(connection)

    def on_lost(connection: _Connection, email_id: str | None) -> None:
        if connection in connections:
            connections.remove(connection)
        if email_id is not None:
            settle(email_id, False)
        if waiting:
            waiting.popleft().set_result(None)

    async def connection() -> _Connection:
        while idle:
            found = idle.pop()  # the most recently used: the others may stay idle and go
            transport = found.transport
            if transport is None or transport.is_closing():
                continue
            if time.monotonic() - found.idle_since > IDLE_SECONDS:
                transport.close()  # before the server's keep-alive timeout closes it mid-send
                continue
            return found
        if len(connections) >= MAX_CONNECTIONS:
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            waiting.append(waiter)
            freed = await waiter
            return freed if freed is not None else await connection()
        _, made = await loop.create_connection(lambda: _Connection(on_answer, on_lost), host, port)
        connections.append(made)
        return made

    started = clock()
    number = 0
    try:
        while number < count:
            due = min(count, int((clock() - started) * rate) + 1)
            while number < due:  # everything due by now goes out in this wake-up
                email_id = f"{tag}-{number}"
                request = request_bytes(host, email_id)
                chosen = await connection()
                sent[email_id] = time.time()
                chosen.send(email_id, request)
                number += 1
            delay = started + number / rate - clock()
            if delay > 0:
                await sleep(max(delay, MIN_SLEEP_SECONDS))
        if count:
            with contextlib.suppress(TimeoutError):  # the unanswered count as failures
                await asyncio.wait_for(settled.wait(), ANSWER_TIMEOUT_SECONDS)
    finally:
        closing = list(connections)
        for made in closing:
            if made.transport is not None:
                made.transport.close()
        await asyncio.gather(*(made.closed for made in closing))
    failures = count - len(answered)
    return sent, answered, failures


def run_paced(
    url: str, rate: float, seconds: float, tag: str
) -> tuple[dict[str, float], dict[str, float], int]:
    """`paced_ingest` on a loop of its own (uvloop: less CPU per request)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(paced_ingest(url, rate, seconds, tag))
