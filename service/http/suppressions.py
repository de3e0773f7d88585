"""An account's suppression list (account key): the addresses it must not mail again.

    GET    /api/suppressions?reason=&after=&limit=   the list, by address, paged
    GET    /api/suppressions/{email}                 the sending path's check: 200 or 404
    POST   /api/suppressions {"email", "reason"?}    add by hand (201; 200 if listed already)
    DELETE /api/suppressions/{email}                 lift (204, or 404)

Hard bounces, complaints and unsubscribes add to it at ingest (service.storage.events).
Addresses compare case-insensitively: they are listed in lower case.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.errors import NotFound, ValidationFailed
from service.core.ids import format_timestamp
from service.core.models import SUPPRESSION_CREATE_DECODER, SuppressionList
from service.core.suppressions import REASONS, address_problem, normalize_address
from service.http.auth import in_account
from service.http.requests import read_json
from service.http.responses import json_response, page_response
from service.http.state import app_state
from service.http.webhooks import query_int

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def path_address(request: Request) -> str:
    address = normalize_address(request.path_params["email"])
    problem = address_problem(address)
    if problem:
        raise ValidationFailed(problem, field="email")
    return address


@in_account
async def list_suppressions(request: Request, account: str) -> Response:
    reason = request.query_params.get("reason") or None
    if reason is not None and reason not in REASONS:
        raise ValidationFailed(f"reason must be one of {', '.join(REASONS)}", field="reason")
    limit = query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    after = normalize_address(request.query_params.get("after", "")) or None
    found, next_after = await app_state(request).suppressions.list(
        account, reason=reason, after=after, limit=limit
    )
    return page_response(
        request, SuppressionList(suppressions=found), cursor="after", after=next_after
    )


@in_account
async def get_suppression(request: Request, account: str) -> Response:
    address = path_address(request)
    found = await app_state(request).suppressions.get(account, address)
    if found is None:
        raise NotFound(f"{address} is not suppressed")
    return json_response(found)


@in_account
async def add_suppression(request: Request, account: str) -> Response:
    state = app_state(request)
    body = await read_json(request, SUPPRESSION_CREATE_DECODER, state.config, state.deadlines)
    address = normalize_address(body.email)
    problem = address_problem(address)
    if problem:
        raise ValidationFailed(problem, field="email")
    entry, added = await state.suppressions.add(
        account, address, body.reason, now=format_timestamp(state.clock())
    )
    location = {"Location": f"/api/suppressions/{quote(address, safe='@')}"}
    return json_response(entry, 201 if added else 200, headers=location)


@in_account
async def delete_suppression(request: Request, account: str) -> Response:
    address = path_address(request)
    if not await app_state(request).suppressions.remove(account, address):
        raise NotFound(f"{address} is not suppressed")
    return Response(status_code=204)


routes = [
    Route("/api/suppressions", list_suppressions, methods=["GET"]),
    Route("/api/suppressions", add_suppression, methods=["POST"]),
    Route("/api/suppressions/{email:path}", get_suppression, methods=["GET"]),
    Route("/api/suppressions/{email:path}", delete_suppression, methods=["DELETE"]),
]
