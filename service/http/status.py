"""GET /api/status: is a worker alive, how far behind is it, how full is Redis."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.status import assess
from service.http.auth import operator_only
from service.http.responses import json_response
from service.http.state import app_state
from service.storage.deliveries import lease_ms

# An entry is normally acknowledged within a lease of being read, or reclaimed after two
# and acknowledged then; first attempts queued behind a slow endpoint may wait ten leases.
STUCK_AFTER_LEASES = 20


@operator_only
async def status(request: Request) -> Response:
    state = app_state(request)
    readings = await state.status.readings()
    stuck_after = STUCK_AFTER_LEASES * lease_ms(state.config) / 1000
    report = assess(
        readings,
        state.clock(),
        stuck_after_seconds=stuck_after,
        ingest_limit=state.config.ingest_memory_limit,
    )
    return json_response(report)


routes = [Route("/api/status", status, methods=["GET"])]
