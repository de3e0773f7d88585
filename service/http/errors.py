"""The one place errors become JSON responses: the service's own (`service.core.errors`),
Starlette's HTTPException (404 unknown route, 405 wrong method) and redis-py's errors.
Anything else is a bug and answers a bare 500 without details."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import msgspec
import redis.exceptions
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from service import logs
from service.core.errors import (
    STORE_FULL_MESSAGE,
    InvalidCredentials,
    MailhooksError,
    StoreFull,
    StoreUnavailable,
    Unauthorized,
)
from service.core.models import ErrorBody, ErrorDetail
from service.http.responses import json_response

logger = logging.getLogger("mailhooks")

_STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed"}
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="mailhooks"'}
# Providers that authenticate with basic auth (Postmark, SparkPost, Mailjet, Brevo) are told how.
_BASIC_AUTH_HEADERS = {"WWW-Authenticate": 'Basic realm="mailhooks"'}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    detail = ErrorDetail(code=code, message=message, field=field or msgspec.UNSET)
    return json_response(ErrorBody(error=detail), status, headers)


async def handle_mailhooks_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MailhooksError)
    # Only API-key failures invite Bearer auth, and failed provider basic auth invites Basic;
    # a bad provider signature invites nothing.
    headers = _UNAUTHORIZED_HEADERS if type(exc) is Unauthorized else None
    if isinstance(exc, InvalidCredentials):
        headers = _BASIC_AUTH_HEADERS
    return error_response(exc.status, exc.code, exc.message, exc.field, headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _STARLETTE_CODES.get(exc.status_code, "http_error")
    headers = exc.headers
    if exc.status_code == 405:
        # Starlette names only the first route whose path matched; a path served by several
        # routes (GET and POST on the collection, GET/PATCH/DELETE on one webhook) allows
        # the methods of them all.
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


def allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE and isinstance(route, Route) and route.methods:
            methods |= route.methods
    return sorted(methods)


async def handle_redis_error(request: Request, exc: Exception) -> Response:
    logger.error(
        "redis error on %s %s: %s",
        request.method,
        request.url.path,
        exc,
        extra=logs.ids(request.headers),
    )
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return error_response(503, StoreFull.code, STORE_FULL_MESSAGE)
    return error_response(503, StoreUnavailable.code, "the event store is unavailable; retry")


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Logged with its traceback by Starlette's ServerErrorMiddleware; the client learns nothing.
    return error_response(500, MailhooksError.code, "internal server error")


exception_handlers = {
    MailhooksError: handle_mailhooks_error,
    HTTPException: handle_http_exception,
    redis.exceptions.RedisError: handle_redis_error,
    Exception: handle_unexpected,
}
