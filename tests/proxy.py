"""A small forward HTTP proxy for delivery tests: takes absolute-form requests (what a client
sends an HTTP proxy for an http:// URL), records each, forwards it and relays the answer.
No CONNECT: tests deliver to http:// endpoints."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from yarl import URL

from devtools.redis_server import free_port

# Headers meant for the proxy or this one connection, not forwarded.
_NOT_FORWARDED = {"proxy-authorization", "proxy-connection", "connection", "keep-alive", "host"}


@dataclass(frozen=True)
class Forwarded:
    target: str  # the request target as sent: absolute form
    headers: dict[str, str]
    body: bytes


@dataclass
class Proxy:
    """`await Proxy.start(hosts={"hooks.example.com": "127.0.0.1"})`; `.url`; `.forwarded`.
    `hosts` maps names to the addresses the proxy connects to (its own DNS)."""

    hosts: dict[str, str] = field(default_factory=dict)
    forwarded: list[Forwarded] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    async def start(cls, hosts: dict[str, str] | None = None) -> Proxy:
        proxy = cls(hosts=dict(hosts or {}))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", proxy._handle)
        proxy._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await proxy._runner.setup()
        await web.TCPSite(proxy._runner, "127.0.0.1", proxy.port).start()
        proxy._session = aiohttp.ClientSession(auto_decompress=False)
        return proxy

    async def _handle(self, request: web.Request) -> web.Response:
        target = request.raw_path
        if not target.startswith("http://"):
            return web.Response(status=400, text="absolute-form requests only")
        body = await request.read()
        self.forwarded.append(Forwarded(target, dict(request.headers), body))
        url = URL(target)
        assert url.host is not None
        upstream = url.with_host(self.hosts.get(url.host, url.host))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        headers["Host"] = request.headers.get("Host", url.host)
        assert self._session is not None
        async with self._session.request(
            request.method, upstream, headers=headers, data=body, allow_redirects=False
        ) as reply:
            return web.Response(status=reply.status, body=await reply.read())

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
