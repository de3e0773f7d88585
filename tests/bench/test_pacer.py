"""The latency benchmarks' load generator (bench/pacer.py) against a real local server: every
event sent once, at the rate asked, each answer timed; a non-200 or a dropped connection is a
failure, never an answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from bench import pacer
from bench.pacer import paced_ingest

pytestmark = pytest.mark.anyio


class Server:
    """Answers each POST 200 (`{"received":true}`), or 500 when its email id ends in 7,
    closing the connection after every 50th request it answers, saying so (`connection:
    close`), as a server's keep-alive policy may."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, str]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
                self.bodies.append(body)
                status = (
                    b"500 Internal Server Error" if body["email_id"].endswith("7") else b"200 OK"
                )
                answer = b'{"received":true}'
                last = len(self.bodies) % 50 == 0
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\ncontent-type: application/json\r\n"
                    + (b"connection: close\r\n" if last else b"")
                    + b"content-length: "
                    + str(len(answer)).encode()
                    + b"\r\n\r\n"
                    + answer
                )
                await writer.drain()
                if last:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    made = Server()
    listening = await asyncio.start_server(made.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield made, f"http://127.0.0.1:{port}"


async def test_sends_each_event_once_at_the_rate_and_times_each_answer(
    server: tuple[Server, str],
) -> None:
    made, url = server
    loop = asyncio.get_running_loop()
    began = loop.time()
    sent, answered, failures = await paced_ingest(url, rate=400, seconds=0.5, tag="t")
    took = loop.time() - began
    assert sorted(body["email_id"] for body in made.bodies) == sorted(f"t-{n}" for n in range(200))
    assert set(sent) == {f"t-{n}" for n in range(200)}
    failed = {f"t-{n}" for n in range(200) if str(n).endswith("7")}
    assert set(answered) == set(sent) - failed
    assert failures == len(failed) == 20
    assert all(answered[e] >= sent[e] for e in answered)
    assert 0.45 <= took < 3  # paced over the half second asked for, not sent at once
    assert {body["type"] for body in made.bodies} == {"email.opened"}


async def test_never_sleeps_less_than_a_timer_can_so_it_never_spins(
    server: tuple[Server, str],
) -> None:
    # At 4,000/s a send is due every 0.25 ms: uvloop's whole-millisecond timers would answer
    # a sleep that short at once, and the pacer would spin (71 % of a core at 2,831/s).
    # Its clock moves only when it sleeps, so it is never behind, however busy the machine
    # (a real clock on a loaded one left it behind throughout, and it never slept at all).
    made, url = server
    now = 0.0
    slept: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        nonlocal now
        slept.append(seconds)
        now += seconds
        await asyncio.sleep(0)

    sent, _, _ = await paced_ingest(
        url, rate=4000, seconds=0.25, tag="s", sleep=recording_sleep, clock=lambda: now
    )
    assert len(made.bodies) == len(sent) == 1000
    assert min(slept) >= pacer.MIN_SLEEP_SECONDS
    # Each wake-up sends what fell due: 4 a millisecond, not one per (too short) sleep.
    assert 0.25 / pacer.MIN_SLEEP_SECONDS - 1 <= len(slept) <= 0.25 / pacer.MIN_SLEEP_SECONDS + 1
    assert sum(slept) >= 0.24  # paced over the quarter second asked for, not sent at once


async def test_with_every_connection_busy_sends_wait_for_one_and_none_is_lost(
    server: tuple[Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made, url = server
    monkeypatch.setattr(pacer, "MAX_CONNECTIONS", 2)  # the server closes one every 50
    sent, answered, failures = await pacer.paced_ingest(url, rate=2000, seconds=0.1, tag="q")
    assert len(made.bodies) == len(sent) == 200
    assert len(answered) == 180
    assert failures == 20  # the 500s, and nothing else
