"""Inbound provider callbacks: POST /api/webhooks (provider detected) and one URL per provider.

The handler does the minimum: raw bytes → verify → normalise → route each event to its
account (service.http.routing) → one atomic append → 200. The
routes follow from the provider registry: the fallback provider (the last) is served at the
shared URL, which detects the provider; every other one also has `/api/webhooks/{name}`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import redis.exceptions
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import logs
from service.core.errors import (
    STORE_FULL_MESSAGE,
    InvalidSignature,
    MailhooksError,
    StoreFull,
    StoreUnavailable,
    UnsupportedMediaType,
)
from service.core.ids import format_timestamp
from service.core.metrics import RequestOutcome, request_outcome
from service.core.models import Event, Received
from service.core.normalized import Ignored
from service.http.requests import media_type, read_body
from service.http.responses import json_response
from service.http.routing import route_events
from service.http.state import AppState, app_state
from service.providers.base import Provider
from service.providers.detect import detect
from service.providers.registry import PROVIDERS
from service.storage.events import AppendResult

logger = logging.getLogger("mailhooks.inbound")

SHARED_PATH = "/api/webhooks"
# The provider label of a request to the shared URL refused before detection (too large, slow).
UNDETECTED = "unknown"


def inbound_paths(providers: Sequence[Provider] = PROVIDERS) -> list[tuple[str, Provider]]:
    """Each provider's URL, the shared one first: it belongs to the fallback (the last)."""
    *named, fallback = providers
    return [(SHARED_PATH, fallback), *((f"{SHARED_PATH}/{p.name}", p) for p in named)]


async def receive(
    request: Request, provider: Provider | None, providers: Sequence[Provider] = PROVIDERS
) -> Response:
    """Handle one provider request; `provider` None means detect it among `providers`.
    Counted by provider (`unknown`: refused before it was detected) and outcome."""
    if request.method == "HEAD":  # a check that the URL answers
        return Response(status_code=200)
    state = app_state(request)
    name = UNDETECTED if provider is None else provider.name
    try:
        body = await read_body(request, state.config, state.deadlines)
        if provider is None:
            provider = detect(request.headers, body, providers)
            name = provider.name
        if provider.is_probe(body, request.headers):
            # The provider checking the URL answers; it carries no event, so nothing to verify.
            outcome, response = RequestOutcome.PROBE, json_response(Received(received=True))
        else:
            outcome, response = (
                RequestOutcome.ACCEPTED,
                await accept(request, state, provider, body),
            )
    except Exception as exc:  # counted, then answered by the error handlers as ever
        state.metrics.tally.inbound_request(name, refusal(exc))
        raise
    state.metrics.tally.inbound_request(name, outcome)
    return response


def refusal(exc: Exception) -> RequestOutcome:
    """Why a request was refused, as its metric's outcome."""
    if isinstance(exc, MailhooksError):
        return request_outcome(exc.code)
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return RequestOutcome.STORE_FULL
    if isinstance(exc, redis.exceptions.RedisError):
        return RequestOutcome.STORE_UNAVAILABLE
    return RequestOutcome.ERROR


async def accept(request: Request, state: AppState, provider: Provider, body: bytes) -> Response:
    """Verify, normalise, route and store one request's events."""
    now = state.clock()
    verified = await verify(state, provider, body, request.headers, now=now.timestamp())
    kind = media_type(request)
    if not provider.accepts_media_type(kind):
        shown = kind or "no Content-Type"
        raise UnsupportedMediaType(f"{provider.name} events are not sent as {shown}")
    normalized = provider.normalize(body, request.headers, received_at=format_timestamp(now))
    events = [item for item in normalized if isinstance(item, Event)]
    ignored = [item for item in normalized if isinstance(item, Ignored)]
    try:
        # A Redis that is restarting, failing over or gone silent gets a request answered
        # 503 within INGEST_TIMEOUT rather than held while the client retries its commands:
        # providers retry, and a retry of an event that did get stored is a duplicate.
        with state.deadlines.limit(state.config.ingest_timeout):
            result = await store(state, provider, body, events, ignored, verified=verified)
    except TimeoutError:
        raise StoreUnavailable(
            f"the event store did not answer within {state.config.ingest_timeout:g} s; retry"
        ) from None
    state.metrics.tally.inbound_events(provider.name, events, result.new, len(ignored))
    # DEBUG: the platform's router (or ACCESS_LOG) already notes every request; a second
    # INFO line per request was a seventh of the web process's CPU under load
    # (docs/performance.md).
    if logger.isEnabledFor(logging.DEBUG):
        stored = result.stored
        logger.debug(
            "inbound %s: %d stored, %d duplicate, %d ignored",
            provider.name,
            len(stored),
            len(result.duplicates),
            len(ignored),
            extra=logs.ids(request.headers, event_id=stored[0] if len(stored) == 1 else None),
        )
    for item in ignored:
        if item.notice:
            logger.warning(
                "inbound %s: %s", provider.name, item.notice, extra=logs.ids(request.headers)
            )
    return json_response(Received(received=True))


async def verify(
    state: AppState, provider: Provider, body: bytes, headers: Mapping[str, str], *, now: float
) -> bool:
    """Whether the request was verified (False: accepted unverified, as
    ALLOW_UNSIGNED_INBOUND allows); raises when it is refused. A provider that signs with a key
    it publishes is verified with that key, fetched from an allowed URL, whatever the config."""
    secret = state.config.provider_secrets.get(provider.name, "")
    key_url = provider.signing_key_url(body, headers, secret, now=now)
    if key_url is not None:
        key = await state.signing_keys.get(key_url)
        provider.verify_with_key(body, headers, secret, key, now=now)
        return True
    if secret:
        url = state.config.provider_urls.get(provider.name, "")
        provider.verify_request(body, headers, secret, now=now, url=url)
        return True
    if not state.config.allow_unsigned_inbound:
        raise InvalidSignature(
            f"{provider.name} events are refused: set {provider.secret_variable} to verify them"
        )
    return False


async def store(
    state: AppState,
    provider: Provider,
    body: bytes,
    events: list[Event],
    ignored: list[Ignored],
    *,
    verified: bool,
) -> AppendResult:
    if await state.capacity.full():
        # Refused before Redis is full, so the worker can still deliver what is stored.
        raise StoreFull(STORE_FULL_MESSAGE)
    if verified:
        await claim_replay_token(state, provider, body, events)
    await route_events(state, events)
    return await state.events.append(provider.name, events, ignored)


async def claim_replay_token(
    state: AppState, provider: Provider, body: bytes, events: list[Event]
) -> None:
    """A provider whose signature does not cover the body (Mailgun signs only timestamp +
    token) has a replay token: one already used for another event is a replay of a captured
    signature over a forged body."""
    token = provider.replay_token(body)
    if token is None:
        return
    owner = events[0].provider_event_id if events else "ignored"
    if not await state.events.claim_token(
        provider.name, token, owner or "", ttl_seconds=provider.tolerance_seconds * 2
    ):
        raise InvalidSignature(f"{provider.replay_token_field} was already used for another event")


def inbound_routes(providers: Sequence[Provider] = PROVIDERS) -> list[Route]:
    """`POST` on each of `inbound_paths(providers)`; the shared URL detects the provider.
    `HEAD` answers 200 with no body: Mandrill checks a URL that way when a webhook is added."""
    shared, *named = inbound_paths(providers)

    async def receive_detected(request: Request) -> Response:
        return await receive(request, None, providers)

    def provider_route(path: str, provider: Provider) -> Route:
        async def endpoint(request: Request) -> Response:
            return await receive(request, provider, providers)

        return Route(path, endpoint, methods=["POST", "HEAD"], name=f"inbound_{provider.name}")

    return [
        Route(shared[0], receive_detected, methods=["POST", "HEAD"], name="inbound"),
        *(provider_route(path, provider) for path, provider in named),
    ]


routes = inbound_routes()
