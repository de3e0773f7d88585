"""The one HTTP client deliveries go out through: httpx's requests, responses and exceptions
over aiohttp's transport (several times plain httpx's throughput here: docs/performance.md),
with a resolver that refuses private addresses, so the address checked is the address
connected to.

With DELIVERY_PROXY_URL, aiohttp's transport sends every request through that proxy (absolute
form for http://, CONNECT for https://). The proxy resolves destinations then, and connects to
them: the connector resolves only the proxy's own name (private, often), and each
destination's name is resolved and checked here before its request (`DestinationCheck`), with
the same verdict as without a proxy."""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import time
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from httpx_aiohttp import AiohttpTransport

from config import Config
from service import __version__
from service.core.urls import ip_literal, non_public_reason

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
    # Through a proxy, the connector resolves the proxy's name alone: DestinationCheck
    # checks the destinations.
    public_only = not (config.allow_private_urls or config.delivery_proxy_url)
    resolver = PublicOnlyResolver(inner) if public_only else inner
    connector = aiohttp.TCPConnector(
        resolver=resolver,
        limit=config.delivery_concurrency,
        ttl_dns_cache=10,
        ssl=ssl.create_default_context(),
    )
    # The session's proxy, not the transport's: aiohttp takes credentials from the proxy URL
    # itself (Proxy-Authorization on each request, or on CONNECT), where the transport would
    # pass them as aiohttp's deprecated BasicAuth.
    return aiohttp.ClientSession(connector=connector, proxy=config.delivery_proxy_url or None)


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
        self._transport: httpx.AsyncBaseTransport
        if transport is not None:
            self._transport = transport
        else:
            self._transport = AiohttpTransport(client=lambda: aiohttp_session(config, dns))
            if config.delivery_proxy_url and not config.allow_private_urls:
                self._transport = DestinationCheck(
                    self._transport, PublicOnlyResolver(dns or ThreadedResolver())
                )
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


class DestinationCheck(httpx.AsyncBaseTransport):
    """Before each request through a proxy, resolves the destination's name and refuses it
    (BlockedAddress, as a ConnectError) unless every address is public: the proxy resolves
    it again to connect, so this is the verdict without a proxy, not a pin of the address.
    Verdicts are kept for `ttl` seconds per name, as the connector caches DNS without a
    proxy. IP literals are left to the sender, which checks them before any request."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, resolver: AbstractResolver, *, ttl: float = 10.0
    ) -> None:
        self._inner = inner
        self._resolver = resolver
        self._ttl = ttl
        self._verdicts: dict[str, tuple[float, str | None]] = {}  # name → (until, refusal)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if ip_literal(host) is None:
            refusal = await self._verdict(host)
            if refusal is not None:
                raise httpx.ConnectError(refusal) from BlockedAddress(refusal)
        return await self._inner.handle_async_request(request)

    async def _verdict(self, host: str) -> str | None:
        now = time.monotonic()
        cached = self._verdicts.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            await self._resolver.resolve(host, 0, socket.AF_UNSPEC)
            refusal = None
        except BlockedAddress as exc:
            refusal = str(exc)
        except OSError as exc:  # no such name, or the resolver failed: not cached
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if len(self._verdicts) > 10_000:  # a bound, not a cache policy
            self._verdicts.clear()
        self._verdicts[host] = (now + self._ttl, refusal)
        return refusal

    async def aclose(self) -> None:
        await self._inner.aclose()
        await self._resolver.close()


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
