"""Reading stored events: GET /api/events (newest first, filtered, paged) and one event."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.errors import Forbidden, NotFound, ValidationFailed
from service.core.event_types import (
    EVENT_TYPES,
    QUALIFIED_PREFIX,
    SUBSCRIBABLE_TYPES,
    is_operational,
)
from service.core.ids import entry_id
from service.core.models import EventList
from service.http.auth import Principal, with_principal
from service.http.responses import json_response, page_response
from service.http.state import app_state
from service.http.webhooks import query_int
from service.storage.events import EventFilter

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def event_type_param(request: Request) -> str | None:
    raw = request.query_params.get("type")
    if raw is None or raw == "":
        return None
    name = raw.strip().lower()
    if is_operational(name):
        return name
    short = name.removeprefix(QUALIFIED_PREFIX)
    if short not in EVENT_TYPES:
        raise ValidationFailed(
            f"unknown event type {raw!r}; expected one of {', '.join(SUBSCRIBABLE_TYPES)}",
            field="type",
        )
    return QUALIFIED_PREFIX + short


def text_param(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > 998:  # the longest an RFC 5322 header line may be
        raise ValidationFailed(f"{name} is too long", field=name)
    return raw


def whose(request: Request, principal: Principal) -> tuple[str | None, bool]:
    """(account, every account): an account's key reads its own events; an admin key reads
    its X-Account-Id's, or every account's, or with `unrouted=true` the unrouted ones."""
    unrouted = request.query_params.get("unrouted", "").lower()
    if unrouted not in ("", "true", "false"):
        raise ValidationFailed("unrouted must be true or false", field="unrouted")
    if unrouted == "true":
        if not principal.admin:
            raise Forbidden("unrouted events are listed for admin keys only")
        return None, False
    if principal.account is None:
        return None, True
    return principal.account, False


@with_principal
async def list_events(request: Request, principal: Principal) -> Response:
    account, every_account = whose(request, principal)
    where = EventFilter(
        account=account,
        every_account=every_account,
        type=event_type_param(request),
        email_id=text_param(request, "email_id"),
        recipient=text_param(request, "recipient"),
    )
    limit = query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    before = text_param(request, "before")
    if before is not None and entry_id(before) is None:
        raise ValidationFailed("before must be an event id (evt_…)", field="before")
    events, next_before = await app_state(request).events.recent(where, before=before, limit=limit)
    return page_response(request, EventList(events=events), cursor="before", after=next_before)


@with_principal
async def get_event(request: Request, principal: Principal) -> Response:
    event_id: str = request.path_params["event_id"]
    event = await app_state(request).events.get(event_id)
    if event is not None and principal.account is not None:
        # Another account's event answers exactly like a missing one.
        event = event if event.account_id == principal.account else None
    if event is None:
        raise NotFound(f"event {event_id} does not exist")
    return json_response(event)


routes = [
    Route("/api/events", list_events, methods=["GET"]),
    Route("/api/events/{event_id}", get_event, methods=["GET"], name="event"),
]
