"""One delivery request: POST the signed body, read the reply's head, and turn every way
it can fail into an error kind (service.core.outcome.ErrorKind) here, the one place the
transport's exceptions are seen."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import aiohttp
import httpx

from service.core.outcome import ErrorKind
from service.core.urls import private_host_reason
from service.deadlines import Deadlines
from worker.http import WebhookClient, blocked_reason, parse_url

logger = logging.getLogger("mailhooks.delivery")

RESPONSE_LOG_BYTES = 1024


@dataclass(frozen=True, slots=True)
class SendResult:
    latency_ms: int
    status_code: int | None = None
    error: ErrorKind | None = None
    response: str | None = None
    retry_after: str | None = None


class Sender:
    def __init__(self, http: WebhookClient, *, timeout: float, allow_private_urls: bool) -> None:
        self._http = http
        self._timeout = timeout
        self._allow_private_urls = allow_private_urls
        self._deadlines = Deadlines()  # each request's DELIVERY_TIMEOUT, on one timer

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult:
        """POST once; transport errors become an error kind here, the one place they are seen."""
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        if not self._allow_private_urls:
            reason = private_host_reason(parse_url(url).host.rstrip(".").lower())
            if reason:  # an IP literal: no resolver sees it, so check it here
                return SendResult(elapsed(), error=ErrorKind.BLOCKED_ADDRESS, response=reason)
        try:
            with self._deadlines.limit(self._timeout):
                async with self._http.post(url, headers, body) as response:
                    head = await _read_head(response)
                    return SendResult(
                        elapsed(),
                        status_code=response.status_code,
                        response=head.decode("utf-8", "replace"),
                        retry_after=response.headers.get("retry-after"),
                    )
        except (TimeoutError, httpx.TransportError) as exc:
            kind, detail = transport_error_kind(exc)
            return SendResult(elapsed(), error=kind, response=detail)
        except (httpx.HTTPError, aiohttp.ClientError, ValueError) as exc:
            # Whatever else an endpoint's reply can make the stack raise (a malformed status
            # line, a bad Content-Length, …) is the endpoint's fault: an attempt that failed.
            logger.info("malformed reply from %s: %r", httpx.URL(url).host, exc)
            return SendResult(elapsed(), error=ErrorKind.PROTOCOL_ERROR, response=repr(exc)[:1024])


def transport_error_kind(exc: BaseException) -> tuple[ErrorKind, str | None]:
    """What a request that got no reply ran into, and a detail for the attempt log.

    httpx-aiohttp maps every aiohttp.ClientConnectionError, a refused connection and our
    resolver's refusal included, to httpx.ConnectTimeout: the aiohttp exception it chains
    is what tells them apart, so it is looked at first."""
    blocked = blocked_reason(exc)
    if blocked:
        return ErrorKind.BLOCKED_ADDRESS, blocked
    cause = exc.__cause__
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        return ErrorKind.TIMEOUT, None  # our deadline, or aiohttp's own timeouts
    if isinstance(cause, aiohttp.ClientConnectorError):
        return ErrorKind.CONNECT_ERROR, str(cause)[:RESPONSE_LOG_BYTES]
    if isinstance(cause, aiohttp.ClientError):
        return ErrorKind.NETWORK_ERROR, str(cause)[:RESPONSE_LOG_BYTES]
    # Another transport (tests' httpx.MockTransport, plain httpx): httpx's own classes.
    if isinstance(exc, httpx.TimeoutException):
        return ErrorKind.TIMEOUT, None
    if isinstance(exc, httpx.ConnectError):
        return ErrorKind.CONNECT_ERROR, str(exc)[:RESPONSE_LOG_BYTES]
    return ErrorKind.NETWORK_ERROR, str(exc)[:RESPONSE_LOG_BYTES]


async def _read_head(response: httpx.Response) -> bytes:
    head = b""
    async for chunk in response.aiter_raw():
        head += chunk
        if len(head) >= RESPONSE_LOG_BYTES:
            break
    return head[:RESPONSE_LOG_BYTES]
