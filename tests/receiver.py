"""A real local HTTP receiver for delivery tests: records every request, answers as told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from devtools.redis_server import free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds before answering (a hanging endpoint: longer than the timeout)


class Receiver:
    """`await Receiver.start()`; `.url`; `.replies` is consumed one per request (the last one
    repeats); `await .wait_for(n)` returns once n requests have arrived."""

    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.replies = list(replies or [Reply()])
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests it was answering at once
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    @classmethod
    async def start(cls, replies: list[Reply] | None = None) -> Receiver:
        receiver = cls(replies)
        app = web.Application()
        app.router.add_post("/hook", receiver._handle)
        # Handlers still sleeping (a "hanging" endpoint) are cut off at stop, not awaited.
        receiver._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await receiver._runner.setup()
        await web.TCPSite(receiver._runner, "127.0.0.1", receiver.port).start()
        return receiver

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        async with self._arrived:
            self.received.append(Received(dict(request.headers), body, time.monotonic()))
            self._arrived.notify_all()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
        finally:
            self.in_flight -= 1
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)

    async def wait_for(
        self, count: int, timeout: float = 10.0, where: Callable[[Received], bool] | None = None
    ) -> list[Received]:
        def matching() -> list[Received]:
            return [r for r in self.received if where is None or where(r)]

        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(matching()) >= count), timeout
            )
        return matching()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
