"""What the web process adds to uvicorn, named in the Procfile (`--http`): a deadline for a
request's headers, JSON for the 400s uvicorn answers itself, and an access log that never
holds a credential.

uvicorn arms no timer on a new connection and none while a request's headers trickle in: a
client sending a byte at a time holds a connection (and a file descriptor) for as long as it
likes. Here every request must complete its headers within READ_TIMEOUT of the connection
opening or of the previous response; the body's own deadline is in service.http.requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from urllib.parse import parse_qsl, urlencode

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from config import Config
from service.core.models import ErrorBody, ErrorDetail
from service.core.tracking import PATH_PREFIX as TRACKING_PREFIX

_ENCODER = msgspec.json.Encoder()
# Query parameters whose value is a credential: an API key pasted into a URL must not reach
# the access log, even on the 401 it gets.
CREDENTIAL_NAMES = re.compile(
    r"key|token|secret|password|passwd|pwd|auth|signature|sig|credential|session", re.I
)
REDACTED = "***"


@functools.cache
def read_timeout() -> float:
    """READ_TIMEOUT, read once: uvicorn builds the protocol, not create_app."""
    return Config.from_env().read_timeout


class HeaderWatch:
    """The connections whose request headers are still arriving, checked by one coarse
    ticker (every `resolution` s, and only while there are some) rather than a loop timer
    per request: a timer handle per request was measurable at ingest rates (see
    service/deadlines.py for the same choice on the delivery path)."""

    def __init__(self, resolution: float = 0.5) -> None:
        self._resolution = resolution
        self._waiting: dict[HttpProtocol, float] = {}  # by when its headers must be in
        self._ticker: asyncio.TimerHandle | None = None

    def watch(self, protocol: HttpProtocol, loop: asyncio.AbstractEventLoop) -> None:
        if protocol not in self._waiting:
            self._waiting[protocol] = loop.time() + read_timeout()
            if self._ticker is None:
                self._ticker = loop.call_later(self._resolution, self._tick, loop)

    def unwatch(self, protocol: HttpProtocol) -> None:
        self._waiting.pop(protocol, None)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._ticker = None
        now = loop.time()
        for protocol in [p for p, when in self._waiting.items() if when <= now]:
            del self._waiting[protocol]
            protocol.headers_too_slow()
        if self._waiting:
            self._ticker = loop.call_later(self._resolution, self._tick, loop)


# One per process, as uvicorn builds a protocol per connection and hands it nothing of ours.
HEADER_WATCH = HeaderWatch()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and JSON 400s."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        HEADER_WATCH.watch(self, self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        HEADER_WATCH.unwatch(self)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        HEADER_WATCH.watch(self, self.loop)  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        HEADER_WATCH.unwatch(self)
        super().on_headers_complete()

    def headers_too_slow(self) -> None:
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took too long")
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse (a bad Content-Length, an unknown
        method, an oversized request line), in our error shape instead of plain text."""
        body = _ENCODER.encode(ErrorBody(error=ErrorDetail(code="bad_request", message=msg)))
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


class RedactCredentials(logging.Filter):
    """Replaces credential-like query values in uvicorn's access log lines with ***, and the
    token of a tracking URL (it holds a recipient's address)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client address, method, path with query, version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(redact_tracking(args[2])), *args[3:])
        return True


def redact_tracking(path: str) -> str:
    """`/t/o/<token>` → `/t/o/***`: the kind of URL stays, to read the log by."""
    if not path.startswith(TRACKING_PREFIX) or path.count("/") < 3:
        return path
    kind_end = path.index("/", len(TRACKING_PREFIX))
    return path[: kind_end + 1] + REDACTED


def redact_query(path: str) -> str:
    path_part, sep, query = path.partition("?")
    if not sep:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(CREDENTIAL_NAMES.search(name) for name, _ in pairs):
        return path
    cleaned = [(n, REDACTED if CREDENTIAL_NAMES.search(n) else v) for n, v in pairs]
    return f"{path_part}?{urlencode(cleaned, safe='*')}"


def install_access_log_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactCredentials) for f in access.filters):
        access.addFilter(RedactCredentials())
