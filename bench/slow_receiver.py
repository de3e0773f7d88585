"""A receiver that answers every POST after a fixed delay: `python -m bench.slow_receiver
PORT DELAY_MS` (PORT 0 = any free port). The slow customer endpoint of bench/tenants.py.

bench.receiver's raw asyncio + httptools server, with one change: each POST is counted when
it arrives and answered `200 ok` DELAY_MS later, without holding the event loop, so any
number of requests wait at once (as many as the worker opens). `GET /count` answers
`{"posts": N}` at once. Prints `listening PORT LOOP` once ready; exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import sys

from bench.receiver import RESPONSE, RESPONSE_CLOSE, RequestProtocol, json_response, run


class Counter:
    posts = 0
    delay = 0.2


class SlowProtocol(RequestProtocol):
    def on_message_complete(self) -> None:
        url, _ = self.take()
        if self.transport is None or self.transport.is_closing():
            return
        if self.parser.get_method() == b"GET":
            self.transport.write(
                json_response({"posts": Counter.posts}) if url == b"/count" else RESPONSE
            )
            return
        Counter.posts += 1
        # The client sends its next request on this connection only after this answer, so
        # answers leave in the order their requests came.
        keep = self.parser.should_keep_alive()
        asyncio.get_running_loop().call_later(Counter.delay, self.answer, keep)

    def answer(self, keep: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(RESPONSE if keep else RESPONSE_CLOSE)
        if not keep:
            self.transport.close()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    Counter.delay = (int(sys.argv[2]) if len(sys.argv) > 2 else 200) / 1000
    run(SlowProtocol, port)


if __name__ == "__main__":
    main()
