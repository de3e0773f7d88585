"""A fast HTTP/1.1 receiver for benchmarks: `python -m bench.receiver PORT [--record|--hang]`
(PORT 0 = any free port).

Raw asyncio.Protocol + httptools (uvloop when installed), listening on 127.0.0.1 only. Every
request gets `200 OK` with body `ok`, on a kept-alive connection unless the client asked to
close. Prints `listening PORT LOOP` once ready; exits when stdin closes (its parent is gone).

`--record`: also counts POSTs and notes each one's arrival (time.time()) with the delivered
payload's `data.email_id`; `GET /count` answers `{"posts": N}`, `GET /arrivals` answers
`[[email_id, arrival], ...]` for the POSTs since the last `/arrivals` (then forgets them).
`--hang`: accepts connections and reads requests but never answers (a dead endpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import cast

import httptools

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
RESPONSE_CLOSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class OkProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()

    def on_message_complete(self) -> None:  # called by the parser, once per request
        if self.transport is None or self.transport.is_closing():
            return
        if self.parser.should_keep_alive():
            self.transport.write(RESPONSE)
        else:
            self.transport.write(RESPONSE_CLOSE)
            self.transport.close()


_EMAIL_ID = re.compile(rb'"email_id":"([^"]*)"')
MAX_ARRIVALS = 1_000_000


class Recorder:
    posts = 0
    arrivals: list[tuple[str, float]] = []


def json_response(value: object) -> bytes:
    body = json.dumps(value).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


class RequestProtocol(OkProtocol):
    """OkProtocol that keeps each request's target and body, for `take` to hand over."""

    def __init__(self) -> None:
        super().__init__()
        self.url = b""
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def take(self) -> tuple[bytes, bytes]:
        """The finished request's target and body; the next request starts afresh."""
        url, body = self.url, b"".join(self.body)
        self.url, self.body = b"", []
        return url, body


class RecordingProtocol(RequestProtocol):
    """Also counts POSTs and notes their arrival (see the module doc)."""

    def on_message_complete(self) -> None:
        arrival = time.time()
        url, body = self.take()
        if self.transport is None or self.transport.is_closing():
            return
        if self.parser.get_method() == b"GET":
            if url.startswith(b"/count"):
                self.transport.write(json_response({"posts": Recorder.posts}))
            elif url.startswith(b"/arrivals"):
                arrivals, Recorder.arrivals = Recorder.arrivals, []
                self.transport.write(json_response(arrivals))
            else:
                self.transport.write(RESPONSE)
            return
        Recorder.posts += 1
        match = _EMAIL_ID.search(body)
        if match and len(Recorder.arrivals) < MAX_ARRIVALS:
            Recorder.arrivals.append((match[1].decode(), arrival))
        super().on_message_complete()


class HangProtocol(asyncio.Protocol):
    """Accepts and reads, never answers: the client's timeout is what ends each request."""

    def data_received(self, data: bytes) -> None:
        pass


PROTOCOLS: dict[str, type[asyncio.Protocol]] = {
    "": OkProtocol,
    "--record": RecordingProtocol,
    "--hang": HangProtocol,
}


async def serve(port: int, protocol: Callable[[], asyncio.Protocol]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", port, backlog=4096)
    parent_gone = loop.create_future()

    def on_stdin() -> None:
        if not os.read(0, 4096) and not parent_gone.done():
            parent_gone.set_result(None)

    loop.add_reader(0, on_stdin)
    actual = server.sockets[0].getsockname()[1]
    print(f"listening {actual} {type(loop).__module__}", flush=True)
    async with server:
        await parent_gone


def run(protocol: Callable[[], asyncio.Protocol], port: int) -> None:
    """Serve `protocol` on 127.0.0.1:`port` (uvloop when installed) until stdin closes."""
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(port, protocol))


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    run(PROTOCOLS[mode], port)


if __name__ == "__main__":
    main()
