"""A fast HTTP/1.1 receiver for benchmarks: `python -m bench.receiver PORT` (0 = any free port).

Raw asyncio.Protocol + httptools (uvloop when installed), listening on 127.0.0.1 only. Every
request gets `200 OK` with body `ok`, on a kept-alive connection unless the client asked to
close. Prints `listening PORT LOOP` once ready; exits when stdin closes (its parent is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
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


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(OkProtocol, "127.0.0.1", port, backlog=1024)
    parent_gone = loop.create_future()

    def on_stdin() -> None:
        if not os.read(0, 4096) and not parent_gone.done():
            parent_gone.set_result(None)

    loop.add_reader(0, on_stdin)
    actual = server.sockets[0].getsockname()[1]
    print(f"listening {actual} {type(loop).__module__}", flush=True)
    async with server:
        await parent_gone


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(port))


if __name__ == "__main__":
    main()
