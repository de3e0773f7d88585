"""POST /api/accounts/{account_id}/portal-links: a link that opens the account's portal once
(docs/portal.md). An admin key for any account, an account's own key for its own."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.errors import NotEnabled, NotFound
from service.core.ids import format_timestamp
from service.core.models import PortalLink
from service.core.portal import LINK_SECONDS, sign_link
from service.http.auth import authenticate
from service.http.idempotency import idempotent
from service.http.responses import json_response
from service.http.state import app_state

logger = logging.getLogger("mailhooks.portal")


@idempotent
async def create_portal_link(request: Request) -> Response:
    state = app_state(request)
    principal = await authenticate(request)
    account_id: str = request.path_params["account_id"]
    # Another account's id answers exactly like a missing one.
    if not principal.admin and principal.account != account_id:
        raise NotFound(f"account {account_id} does not exist")
    if not state.config.portal_secret:
        raise NotEnabled("the portal is not enabled on this deployment: set PORTAL_SECRET")
    if await state.accounts.get(account_id) is None:
        raise NotFound(f"account {account_id} does not exist")
    expires_at = int(state.clock().timestamp()) + LINK_SECONDS
    token = sign_link(
        state.config.portal_secret,
        account=account_id,
        link_id=secrets.token_hex(16),
        expires_at=expires_at,
    )
    link = request.url_for("portal:login").include_query_params(token=token)
    logger.info("portal link issued for %s", account_id)  # never the link: it is a credential
    body = PortalLink(
        url=str(link), expires_at=format_timestamp(datetime.fromtimestamp(expires_at, UTC))
    )
    return json_response(body, status=201)


routes = [
    Route("/api/accounts/{account_id}/portal-links", create_portal_link, methods=["POST"]),
]
