"""The one HTTP client deliveries go out through: httpx's requests, responses and exceptions
over aiohttp's transport (several times plain httpx's throughput here: docs/performance.md),
with a resolver that refuses private addresses, so the address checked is the address
connected to."""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from httpx_aiohttp import AiohttpTransport

from config import Config
from service import __version__
from service.core.urls import non_public_reason

USER_AGENT = f"mailhooks/{__version__}"


class BlockedAddress(OSError):
    """The endpoint's host resolves to an address deliveries may not reach."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves like the system, but refuses a name if any of its addresses is not public
    (loopback, private, link-local, metadata, …): aiohttp then connects only to addresses
    this resolver returned, so a name cannot be re-pointed between check and connect."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            reason = non_public_reason(ipaddress.ip_address(result["host"]))
            if reason:
                raise BlockedAddress(f"{host} resolves to {result['host']}, {reason}")
        return results

    async def close(self) -> None:
        await self._inner.close()


@functools.lru_cache(maxsize=4096)
def parse_url(url: str) -> httpx.URL:
    """Parsed once per endpoint URL (URLs are immutable), not once per attempt."""
    return httpx.URL(url)


def aiohttp_session(config: Config, dns: AbstractResolver | None = None) -> aiohttp.ClientSession:
    """Create inside the running event loop (the session binds to it). `dns` replaces the
    system's resolver (tests); the public-only check applies to it all the same."""
    inner = dns or ThreadedResolver()
    resolver = inner if config.allow_private_urls else PublicOnlyResolver(inner)
    connector = aiohttp.TCPConnector(
        resolver=resolver,
        limit=config.delivery_concurrency,
        ttl_dns_cache=10,
        ssl=ssl.create_default_context(),
    )
    return aiohttp.ClientSession(connector=connector)


class WebhookClient:
    """POSTs deliveries straight to the transport. httpx.AsyncClient's per-request layers
    (cookie jar, auth flow, redirect handling, default headers) do nothing for a webhook
    sender, yet cost about a tenth of the worker's CPU in a profile (docs/performance.md).
    `transport` is for tests and benchmarks; by default it is aiohttp's, resolving names with
    `dns` (tests) or the system's resolver."""

    def __init__(
        self,
        config: Config,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        dns: AbstractResolver | None = None,
    ) -> None:
        self._transport = transport or AiohttpTransport(client=lambda: aiohttp_session(config, dns))
        self._timeout = httpx.Timeout(config.delivery_timeout).as_dict()

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Exchange:
        """`async with client.post(url, headers, body) as response:` the response with its
        body unread (read what you need, e.g. with aiter_raw); closed on exit."""
        request = httpx.Request(
            "POST",
            parse_url(url),
            headers=headers,
            content=body,
            extensions={"timeout": self._timeout},
        )
        return Exchange(self._transport, request)

    async def aclose(self) -> None:
        await self._transport.aclose()


class Exchange:
    """One request and its response, as an async context manager: a plain class rather than
    an asynccontextmanager, whose generator adds a frame to every await of the request."""

    __slots__ = ("_request", "_response", "_transport")

    def __init__(self, transport: httpx.AsyncBaseTransport, request: httpx.Request) -> None:
        self._transport = transport
        self._request = request
        self._response: httpx.Response | None = None

    async def __aenter__(self) -> httpx.Response:
        self._response = await self._transport.handle_async_request(self._request)
        return self._response

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response is not None:
            await self._response.aclose()


def blocked_reason(exc: BaseException) -> str | None:
    """The BlockedAddress message somewhere in `exc`'s cause chain, if any."""
    seen: Any = exc
    while seen is not None:
        if isinstance(seen, BlockedAddress):
            return str(seen)
        os_error = getattr(seen, "os_error", None)
        if isinstance(os_error, BlockedAddress):
            return str(os_error)
        seen = seen.__cause__ or seen.__context__
    return None
