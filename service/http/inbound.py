"""Inbound provider callbacks: POST /api/webhooks (provider detected) and one URL per provider.

The handler does the minimum: raw bytes → verify → normalise → one atomic append → 200.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import ModuleType

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config import Config
from service.core.errors import STORE_FULL_MESSAGE, InvalidSignature, StoreFull
from service.core.ids import format_timestamp
from service.core.models import Event, Received
from service.core.normalized import Ignored
from service.http.requests import read_body
from service.http.responses import json_response
from service.http.state import app_state
from service.providers import generic, mailgun, resend, sendgrid
from service.providers.detect import detect

logger = logging.getLogger("mailhooks.inbound")

PROVIDERS: Mapping[str, ModuleType] = {p.NAME: p for p in (generic, resend, sendgrid, mailgun)}

# Mailgun retries a failed delivery for about 8 hours with the original signature block, so
# its timestamp check must outlast that; replays inside the window are caught by the token.
MAILGUN_TOLERANCE_SECONDS = 12 * 3600

SECRET_VARIABLES = {
    generic.NAME: "INBOUND_SECRET",
    resend.NAME: "RESEND_WEBHOOK_SECRET",
    sendgrid.NAME: "SENDGRID_WEBHOOK_PUBLIC_KEY",
    mailgun.NAME: "MAILGUN_WEBHOOK_SIGNING_KEY",
}


def provider_secret(config: Config, provider: str) -> str:
    return {
        generic.NAME: config.inbound_secret,
        resend.NAME: config.resend_webhook_secret,
        sendgrid.NAME: config.sendgrid_webhook_public_key,
        mailgun.NAME: config.mailgun_webhook_signing_key,
    }[provider]


async def receive(request: Request, provider_name: str | None) -> Response:
    """Handle one provider request; `provider_name` None means detect it from the request."""
    state = app_state(request)
    body = await read_body(request, state.config.max_body_bytes)
    if provider_name is None:
        provider_name = detect(request.headers, body)
    provider = PROVIDERS[provider_name]
    secret = provider_secret(state.config, provider_name)
    now = state.clock()
    if secret:
        if provider is mailgun:
            tolerance = MAILGUN_TOLERANCE_SECONDS
            provider.verify(body, request.headers, secret, now=now.timestamp(), tolerance=tolerance)
        else:
            provider.verify(body, request.headers, secret, now=now.timestamp())
    elif not state.config.allow_unsigned_inbound:
        raise InvalidSignature(
            f"{provider_name} events are refused: set {SECRET_VARIABLES[provider_name]} "
            "to verify them"
        )
    normalized = provider.normalize(body, request.headers, received_at=format_timestamp(now))
    events = [item for item in normalized if isinstance(item, Event)]
    ignored = [item for item in normalized if isinstance(item, Ignored)]
    if await state.capacity.full():
        # Refused before Redis is full, so the worker can still deliver what is stored.
        raise StoreFull(STORE_FULL_MESSAGE)
    if provider is mailgun and secret:
        await claim_mailgun_token(request, body, events)
    result = await state.events.append(provider_name, events, ignored)
    # DEBUG: uvicorn's access log already notes every request; a second INFO line per request
    # was a seventh of the web process's CPU under load (docs/performance.md).
    logger.debug(
        "inbound %s: %d stored, %d duplicate, %d ignored",
        provider_name,
        len(result.stored),
        len(result.duplicates),
        len(ignored),
    )
    return json_response(Received(received=True))


async def claim_mailgun_token(request: Request, body: bytes, events: list[Event]) -> None:
    """Mailgun signs only timestamp + token, not the body: a token already used for another
    event is a replay of a captured signature over a forged body."""
    token = mailgun.signature_token(body)
    owner = events[0].provider_event_id if events else "ignored"
    state = app_state(request)
    if not await state.events.claim_token(
        "mailgun", token, owner or "", ttl_seconds=MAILGUN_TOLERANCE_SECONDS * 2
    ):
        raise InvalidSignature("signature.token was already used for another event")


async def receive_detected(request: Request) -> Response:
    return await receive(request, None)


def provider_endpoint(name: str) -> Route:
    async def endpoint(request: Request) -> Response:
        return await receive(request, name)

    return Route(f"/api/webhooks/{name}", endpoint, methods=["POST"], name=f"inbound_{name}")


routes = [
    Route("/api/webhooks", receive_detected, methods=["POST"], name="inbound"),
    *(provider_endpoint(name) for name in (resend.NAME, sendgrid.NAME, mailgun.NAME)),
]
