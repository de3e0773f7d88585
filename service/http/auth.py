"""API-key authentication for the management and read APIs."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from service.core.errors import Unauthorized
from service.http.state import app_state

Endpoint = Callable[[Request], Awaitable[Response]]


def key_is_valid(presented: str, keys: tuple[str, ...]) -> bool:
    """Constant time in the presented key: every configured key is compared, always."""
    presented_bytes = presented.encode()
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(presented_bytes, key.encode())
    return valid


def authenticate(request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    if not key_is_valid(token.strip(), app_state(request).config.api_keys):
        raise Unauthorized("invalid API key")


def requires_api_key(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        authenticate(request)
        return await endpoint(request)

    return guarded
