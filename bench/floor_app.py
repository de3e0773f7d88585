"""The ingest floor: a bare Starlette app with one route, run under the web process's own
uvicorn command line (`bench.floor_app:create_app --factory`). The route reads the body,
decodes it with msgspec and does one XADD to the same Redis: what any ingest must do at least.
It uses the service's own Redis client (service.storage.connection.connect), so the floor
has the same client stack as the system it is compared with, and its logging (the access log
as shipped, off unless ACCESS_LOG says otherwise).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config import Config
from service import logs
from service.storage.connection import connect

STREAM = "bench:floor"
OK = b'{"received":true}'


def create_app() -> Starlette:
    config = Config.from_env()
    logs.configure(config)  # the service's logging: the access log as shipped
    logs.lean_records()
    redis = connect(config)

    async def receive(request: Request) -> Response:
        body = await request.body()
        event: Any = msgspec.json.decode(body)
        await redis.xadd(STREAM, {"e": msgspec.json.encode(event)}, maxlen=1_000_000)
        return Response(OK, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await redis.aclose()

    return Starlette(routes=[Route("/api/webhooks", receive, methods=["POST"])], lifespan=lifespan)
