"""Reading request bodies: size limit, content type, JSON decoding into a model."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from starlette.requests import Request

from config import Config
from service.core.errors import (
    MalformedJson,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    ValidationFailed,
)
from service.deadlines import Deadlines

T = TypeVar("T")


async def read_body(request: Request, config: Config, deadlines: Deadlines) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed MAX_BODY_BYTES, and
    with 408 unless it has all arrived within READ_TIMEOUT (a client trickling a body must
    not hold a connection for ever)."""
    max_bytes = config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        with deadlines.limit(config.read_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {config.read_timeout:g} s"
        ) from None
    return b"".join(chunks)


def media_type(request: Request) -> str:
    """The body's Content-Type, lower case, without parameters ("" when there is none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_json(request: Request) -> None:
    kind = media_type(request)
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType("request body must be application/json")


async def read_json(
    request: Request, decoder: msgspec.json.Decoder[T], config: Config, deadlines: Deadlines
) -> T:
    require_json(request)
    body = await read_body(request, config, deadlines)
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ValidationFailed.from_msgspec(exc) from exc
    except msgspec.DecodeError as exc:
        raise MalformedJson(f"request body is not valid JSON: {exc}") from exc
