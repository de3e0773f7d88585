"""GET /api/event-types: the catalogue of event types an endpoint can receive, each with the
JSON Schema of its deliveries' body (service.core.catalogue). The same for every caller, so
encoded once."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.catalogue import catalogue_infos
from service.core.models import ENCODER, EventTypeList
from service.http.auth import authenticate

CATALOGUE_BYTES = ENCODER.encode(EventTypeList(event_types=catalogue_infos()))


async def list_event_types(request: Request) -> Response:
    await authenticate(request)  # any valid key: an account's, API_KEYS, an admin's
    return Response(CATALOGUE_BYTES, media_type="application/json")


routes = [Route("/api/event-types", list_event_types, methods=["GET"])]
