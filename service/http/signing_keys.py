"""Signing keys that providers publish by URL (Amazon SNS's certificates), fetched for the
inbound routes (`Provider.signing_key_url`).

A request names the URL, so nothing is fetched unless the whole URL matches
SNS_CERT_URL_PATTERN (Amazon's `https://sns.<region>.amazonaws.com/….pem` by default): no
redirect is followed, the answer must arrive within `timeout` seconds and be at most
`max_bytes`. Keys are kept per URL, the most recently used `cache_size` of them (SNS moves to a
new URL when it rotates its certificate), and concurrent requests for one URL share one fetch.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict

import httpx

from service.core.errors import InvalidSignature, SigningKeyUnavailable

logger = logging.getLogger("mailhooks.inbound")

MAX_URL_LENGTH = 2048


class SigningKeys:
    def __init__(
        self,
        allowed: str,
        client: httpx.AsyncClient,
        *,
        timeout: float = 5.0,
        max_bytes: int = 64 * 1024,
        cache_size: int = 32,
    ) -> None:
        self._allowed = re.compile(allowed)
        self._client = client
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._cache_size = cache_size
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._fetching: dict[str, asyncio.Future[bytes]] = {}

    async def get(self, url: str) -> bytes:
        """The document at `url`. InvalidSignature when the URL is not allowed or names no key
        (a 4xx, a redirect, too large); SigningKeyUnavailable, which the provider retries, when
        its host fails or is too slow."""
        if len(url) > MAX_URL_LENGTH or not self._allowed.fullmatch(url):
            raise InvalidSignature("the signing certificate URL is not allowed")
        cached = self._cache.get(url)
        if cached is not None:
            self._cache.move_to_end(url)
            return cached
        fetching = self._fetching.get(url)
        if fetching is None:
            fetching = asyncio.ensure_future(self._fetch(url))
            self._fetching[url] = fetching
            fetching.add_done_callback(lambda done: self._fetched(url, done))
        # Shielded: a request that gives up (its client went away) leaves the fetch to others.
        return await asyncio.shield(fetching)

    def _fetched(self, url: str, done: asyncio.Future[bytes]) -> None:
        del self._fetching[url]
        if done.cancelled() or done.exception() is not None:
            return  # nothing kept: the next request tries again
        self._cache[url] = done.result()
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _fetch(self, url: str) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._read(url)
        except TimeoutError:
            raise SigningKeyUnavailable(
                f"the signing certificate did not arrive within {self._timeout:g} s; retry"
            ) from None
        except httpx.HTTPError as exc:
            raise SigningKeyUnavailable(
                f"the signing certificate could not be fetched ({type(exc).__name__}); retry"
            ) from None

    async def _read(self, url: str) -> bytes:
        async with self._client.stream("GET", url) as response:
            status = response.status_code
            if status >= 500:
                raise SigningKeyUnavailable(
                    f"the signing certificate's host answered {status}; retry"
                )
            if status != 200:
                raise InvalidSignature(f"the signing certificate URL answered {status}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_bytes:
                    raise InvalidSignature(
                        f"the signing certificate is larger than {self._max_bytes} bytes"
                    )
                chunks.append(chunk)
        logger.info("fetched the signing certificate %s", url)
        return b"".join(chunks)


def signing_keys_client(timeout: float = 5.0) -> httpx.AsyncClient:
    """The client certificates are fetched with: no redirects, no proxies or netrc from the
    environment, a handful of connections."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        headers={"User-Agent": "mailhooks"},
    )
