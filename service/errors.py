"""The service's errors and the one place they become JSON responses.

    MailhooksError                 every handled error: status, code, message, field?
    ├── MalformedJson              400 the body is not JSON
    ├── Unauthorized               401 missing or wrong API key
    │   └── InvalidSignature       401 an inbound request's signature is missing or wrong
    ├── NotFound                   404 no such resource
    ├── PayloadTooLarge            413 body over MAX_BODY_BYTES
    ├── UnsupportedMediaType       415 body is not application/json
    ├── ValidationFailed           422 JSON of the wrong shape or value; names the field
    │   └── InvalidPayload         422 a provider body that is not valid for its format
    └── StoreUnavailable           503 Redis did not answer
        └── StoreFull              503 Redis is too full to take more events

Starlette's own HTTPException (404 unknown route, 405 wrong method) and redis-py's errors are
converted here too, once; anything else is a bug and answers a bare 500 without details.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import ClassVar

import msgspec
import redis.exceptions
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.models import ErrorBody, ErrorDetail
from service.responses import json_response

logger = logging.getLogger("mailhooks")


class MailhooksError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class MalformedJson(MailhooksError):
    status = 400
    code = "malformed_json"


class Unauthorized(MailhooksError):
    status = 401
    code = "unauthorized"


class InvalidSignature(Unauthorized):
    code = "invalid_signature"


class NotFound(MailhooksError):
    status = 404
    code = "not_found"


class PayloadTooLarge(MailhooksError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(MailhooksError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(MailhooksError):
    status = 422
    code = "validation_error"

    @classmethod
    def from_msgspec(cls, exc: msgspec.ValidationError) -> ValidationFailed:
        """msgspec says `... - at `$.url`` or `Object missing required field `url``."""
        text = str(exc)
        match = re.search(r" - at `\$\.?([^`]*)`$", text)
        if match:
            message = text[: match.start()]
            field = match.group(1) or None
        else:
            message = text
            named = re.search(r"(?:required|unknown) field `([^`]+)`", text)
            field = named.group(1) if named else None
        return cls(message, field=field)


class InvalidPayload(ValidationFailed):
    code = "invalid_payload"


class StoreUnavailable(MailhooksError):
    status = 503
    code = "store_unavailable"


class StoreFull(StoreUnavailable):
    code = "store_full"


STORE_FULL_MESSAGE = "the event store is full; retry later"


_STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed"}
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="mailhooks"'}


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
    # Only API-key failures invite Bearer auth; a bad provider signature does not.
    headers = _UNAUTHORIZED_HEADERS if type(exc) is Unauthorized else None
    return error_response(exc.status, exc.code, exc.message, exc.field, headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _STARLETTE_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def handle_redis_error(request: Request, exc: Exception) -> Response:
    logger.error("redis error on %s %s: %s", request.method, request.url.path, exc)
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
