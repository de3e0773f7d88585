"""The operators' dead letters: /api/dead-letters (admin keys only). Listing, inspecting,
redriving (one, all, or those since a time) and deleting what the worker set aside."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.errors import Conflict, NotFound, ValidationFailed
from service.core.ids import dead_letter_entry, epoch_ms, parse_timestamp
from service.core.models import (
    REDRIVE_REQUEST_DECODER,
    DeadLetterList,
    Redriven,
    RedriveResult,
)
from service.http.auth import admin_only
from service.http.idempotency import idempotent
from service.http.requests import media_type, read_body, read_json, require_json
from service.http.responses import json_response, page_response
from service.http.state import AppState, app_state
from service.http.webhooks import query_int
from service.storage.dead_letters import NothingToRedrive

logger = logging.getLogger("mailhooks.dead_letters")

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def path_letter(request: Request) -> str:
    letter_id: str = request.path_params["dead_letter_id"]
    return letter_id


@admin_only
async def list_dead_letters(request: Request) -> Response:
    limit = query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    before = request.query_params.get("before") or None
    if before is not None and dead_letter_entry(before) is None:
        raise ValidationFailed("before must be a dead letter id (dl_…)", field="before")
    found, next_before = await app_state(request).dead_letters.page(before=before, limit=limit)
    body = DeadLetterList(dead_letters=[letter.public() for letter in found])
    return page_response(request, body, cursor="before", after=next_before)


@admin_only
async def get_dead_letter(request: Request) -> Response:
    letter = await app_state(request).dead_letters.get(path_letter(request))
    if letter is None:
        raise NotFound(f"dead letter {path_letter(request)} does not exist")
    return json_response(letter.public(with_fields=True))


@admin_only
@idempotent
async def redrive_dead_letter(request: Request) -> Response:
    letter_id = path_letter(request)
    try:
        event_id = await app_state(request).dead_letters.redrive(letter_id)
    except NothingToRedrive as exc:
        raise Conflict(str(exc)) from None
    if event_id is None:
        raise NotFound(f"dead letter {letter_id} does not exist")
    logger.info("dead letter %s redriven as %s", letter_id, event_id)
    return json_response(Redriven(event_id=event_id), status=202)


async def since_ms(request: Request, state: AppState) -> int | None:
    """The body's `since`, if any: the body is optional (no body: every dead letter)."""
    if not media_type(request):
        if await read_body(request, state.config, state.deadlines):
            require_json(request)  # a body, but not JSON: 415
        return None
    body = await read_json(request, REDRIVE_REQUEST_DECODER, state.config, state.deadlines)
    if body.since is None:
        return None
    since = parse_timestamp(body.since)
    if since is None:
        raise ValidationFailed("since must be an ISO 8601 time", field="since")
    return epoch_ms(since)


@admin_only
@idempotent
async def redrive_dead_letters(request: Request) -> Response:
    state = app_state(request)
    redriven = await state.dead_letters.redrive_all(since_ms=await since_ms(request, state))
    logger.info("%d dead letters redriven", redriven)
    return json_response(RedriveResult(redriven=redriven), status=202)


@admin_only
async def delete_dead_letter(request: Request) -> Response:
    letter_id = path_letter(request)
    if not await app_state(request).dead_letters.delete(letter_id):
        raise NotFound(f"dead letter {letter_id} does not exist")
    logger.info("dead letter %s deleted", letter_id)
    return Response(status_code=204)


ONE = "/api/dead-letters/{dead_letter_id}"
routes = [
    Route("/api/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/api/dead-letters/redrive", redrive_dead_letters, methods=["POST"]),
    Route(ONE, get_dead_letter, methods=["GET"]),
    Route(ONE, delete_dead_letter, methods=["DELETE"]),
    Route(ONE + "/redrive", redrive_dead_letter, methods=["POST"]),
]
