"""GET /api/status: is a worker alive, how far behind is it, how full is Redis."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.http.auth import operator_only
from service.http.responses import json_response
from service.http.state import app_state


@operator_only
async def status(request: Request) -> Response:
    state = app_state(request)
    return json_response(await state.status.report(state.config, state.clock))


routes = [Route("/api/status", status, methods=["GET"])]
