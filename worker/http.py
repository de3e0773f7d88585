"""The one HTTP client deliveries go out through: httpx's API over aiohttp's transport
(about seven times plain httpx's throughput here: docs/performance.md), with a resolver
that refuses private addresses, so the address checked is the address connected to."""

from __future__ import annotations

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
from service.urls import non_public_reason

USER_AGENT = f"mailhooks/{__version__}"


class BlockedAddress(OSError):
    """The endpoint's host resolves to an address deliveries may not reach."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves like the system, but refuses a name if any of its addresses is not public
    (loopback, private, link-local, metadata, …): aiohttp then connects only to addresses
    this resolver returned, so a name cannot be re-pointed between check and connect."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

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


def build_client(config: Config) -> httpx.AsyncClient:
    """Create inside the running event loop (the aiohttp session binds to it)."""

    def session() -> aiohttp.ClientSession:
        resolver: AbstractResolver = (
            ThreadedResolver() if config.allow_private_urls else PublicOnlyResolver()
        )
        connector = aiohttp.TCPConnector(
            resolver=resolver,
            limit=config.delivery_concurrency,
            ttl_dns_cache=10,
            ssl=ssl.create_default_context(),
        )
        return aiohttp.ClientSession(connector=connector)

    transport = AiohttpTransport(client=session)
    timeout = httpx.Timeout(config.delivery_timeout)
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
    )


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
