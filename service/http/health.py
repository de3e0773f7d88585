"""Platform checks: /healthz (the process answers) and /readyz (and Redis answers)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.errors import StoreUnavailable
from service.core.models import Health
from service.http.responses import json_response
from service.http.state import app_state


async def healthz(request: Request) -> Response:
    return json_response(Health(status="ok"))


async def readyz(request: Request) -> Response:
    # Any RedisError propagates to the error handler, which answers 503.
    if not await app_state(request).status.ping():
        raise StoreUnavailable("redis did not answer PING")
    return json_response(Health(status="ready"))


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
