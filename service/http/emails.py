"""POST /api/emails: an account registers the emails it sent without an account tag, so that
provider events about them route to it (docs/accounts.md)."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.ids import epoch_ms, format_timestamp
from service.core.models import EMAIL_REGISTRATION_DECODER, EmailRegistrationResult
from service.http.auth import in_account
from service.http.idempotency import idempotent
from service.http.requests import read_json
from service.http.responses import json_response
from service.http.state import app_state


@in_account
@idempotent
async def register_emails(request: Request, account: str) -> Response:
    state = app_state(request)
    body = await read_json(request, EMAIL_REGISTRATION_DECODER, state.config, state.deadlines)
    now = state.clock()
    ttl = state.config.email_owner_ttl_seconds
    conflicts = await state.accounts.register_emails(
        account, body.email_ids, ttl_ms=ttl * 1000, now_ms=epoch_ms(now)
    )
    unique = len(set(body.email_ids))
    result = EmailRegistrationResult(
        registered=unique - len(conflicts),
        conflicts=conflicts,
        expires_at=format_timestamp(now + timedelta(seconds=ttl)),
    )
    return json_response(result)


routes = [Route("/api/emails", register_emails, methods=["POST"])]
