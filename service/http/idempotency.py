"""`Idempotency-Key` on the creating POSTs: the first request with a key runs; the same key
again within 24 h gets the first response back, or a 409 (docs/api.md#idempotent-requests).

    the key is free                  claim it (SET NX, a marker for 60 s), run, keep a 2xx
                                     response sealed for 24 h; release the key on anything else
    held by a response, same body    that response again, with Idempotent-Replayed: true
    held by a response, other body   409 idempotency_key_reused
    held by a running request        same body: wait for its response (up to WAIT_SECONDS),
                                     then 409 idempotency_in_progress; other body: 409 reused

Wraps an endpoint that already authenticated its caller (inside in_account / admin_only).
Requests without the header pay one header lookup.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from service.core.errors import IdempotencyInProgress, IdempotencyKeyReused, ValidationFailed
from service.core.idempotency import (
    HEADER,
    PENDING_TTL_SECONDS,
    RESULT_TTL_SECONDS,
    IdempotencyScope,
    SavedResponse,
    pending_fingerprint,
    pending_marker,
    valid_key,
)
from service.http.auth import ACCOUNT_HEADER, bearer_token
from service.http.requests import read_body
from service.http.state import app_state

# How long a request waits for the one running with the same key and body before a 409.
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.02
REPLAYED_HEADER = "Idempotent-Replayed"
# The response headers kept with the body (besides its media type).
KEPT_HEADERS = ("location",)
PENDING_TTL_MS = PENDING_TTL_SECONDS * 1000
RESULT_TTL_MS = RESULT_TTL_SECONDS * 1000

E = TypeVar("E", bound=Callable[..., Awaitable[Response]])


def idempotent(endpoint: E) -> E:
    """Honour Idempotency-Key on `endpoint(request, ...)`."""

    @functools.wraps(endpoint)
    async def guarded(request: Request, *args: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return await endpoint(request, *args)
        if not valid_key(key):
            raise ValidationFailed(
                f"{HEADER} must be 1 to 255 visible ASCII characters (a UUID, say)", field=HEADER
            )
        state = app_state(request)
        body = await read_body(request, state.config, state.deadlines)
        scope = IdempotencyScope(
            credential=bearer_token(request),
            account=request.headers.get(ACCOUNT_HEADER, "").strip(),
            method=request.method,
            path=request.url.path,
            key=key,
        )
        fingerprint = scope.fingerprint(body)
        marker = pending_marker(fingerprint)
        deadline = time.monotonic() + WAIT_SECONDS
        store = state.idempotency
        while (held := await store.claim(scope.digest, marker, ttl_ms=PENDING_TTL_MS)) is not None:
            if not held:
                continue  # expired between the two reads: claim again
            running = pending_fingerprint(held)
            if running is None:
                saved = scope.open(held)
                if saved is None or saved.fingerprint != fingerprint:
                    raise IdempotencyKeyReused(reused_message(key))
                return replay(saved)
            if running != fingerprint:
                raise IdempotencyKeyReused(reused_message(key))
            if time.monotonic() > deadline:
                raise IdempotencyInProgress(
                    f"a request with {HEADER} {key!r} is still running: retry later"
                )
            await asyncio.sleep(POLL_SECONDS)
        try:
            response = await endpoint(Request(request.scope, replaying(body)), *args)
        except BaseException:
            await asyncio.shield(store.settle(scope.digest, marker, b"", ttl_ms=0))
            raise
        if 200 <= response.status_code < 300:
            saved = SavedResponse(
                fingerprint=fingerprint,
                status=response.status_code,
                headers=[(n, response.headers[n]) for n in KEPT_HEADERS if n in response.headers],
                body=bytes(response.body),
            )
            await store.settle(scope.digest, marker, scope.seal(saved), ttl_ms=RESULT_TTL_MS)
        else:
            await store.settle(scope.digest, marker, b"", ttl_ms=0)
        return response

    return guarded  # type: ignore[return-value]


def reused_message(key: str) -> str:
    return (
        f"{HEADER} {key!r} was used with another request body in the last 24 hours: "
        "use a new key for a new request"
    )


def replaying(body: bytes) -> Callable[[], Awaitable[Message]]:
    """An ASGI receive that hands the endpoint the body already read."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def replay(saved: SavedResponse) -> Response:
    headers = dict(saved.headers)
    headers[REPLAYED_HEADER] = "true"
    return Response(
        saved.body, status_code=saved.status, headers=headers, media_type="application/json"
    )
