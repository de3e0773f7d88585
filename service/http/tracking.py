"""The public tracking URLs, the platform's hottest: the open pixel, the click, the opt-out.

    GET  /t/o/{token}   a 1x1 transparent GIF, never cached; records email.open
    GET  /t/c/{token}   302 to the link's target; records email.click with its URL
    GET  /t/u/{token}   a page with an Unsubscribe button; records nothing (scanners GET links)
    POST /t/u/{token}   List-Unsubscribe=One-Click (RFC 8058): records email.unsubscribe, 200

Each token carries its account, email, recipient and target, signed (service.core.tracking):
nothing is looked up, and a token that does not verify is a 404 that records nothing, so no
URL here redirects anywhere we did not sign. An open or a click is one append (through the
shared pipeline) and answered; if Redis cannot take it, the recipient still gets the image or
reaches the link, and the event is lost (logged). An unsubscribe is answered only once stored.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Mapping

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.core.errors import (
    STORE_FULL_MESSAGE,
    NotFound,
    StoreFull,
    StoreUnavailable,
    ValidationFailed,
)
from service.core.ids import format_timestamp, tracking_event_key
from service.core.machines import PURPOSE_HEADERS, machine
from service.core.models import Click, Event
from service.core.tracking import (
    CLICK,
    ONE_CLICK,
    ONE_CLICK_FIELD,
    ONE_CLICK_VALUE,
    OPEN,
    PIXEL_GIF,
    UNSUBSCRIBE,
    Verified,
)
from service.http.requests import read_body
from service.http.routing import KNOWN_ACCOUNT_SECONDS
from service.http.state import STATE_KEY, AppState, app_state
from service.providers import forms

logger = logging.getLogger("mailhooks.tracking")

# The provider name of first-party events (their `provider` field and counters).
PROVIDER = "mailhooks"
# An open or click of the same link within the same second is one event; its de-duplication
# key outlives that second by enough for a retried append to be recognised.
REPEAT_SECONDS = 10
MAX_USER_AGENT = 512
LOG_EVERY_SECONDS = 10.0

_NO_CACHE = [
    (b"cache-control", b"no-cache, no-store, must-revalidate, private, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]
_PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL_GIF)).encode()),
    *_NO_CACHE,
]
_PAGE_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-robots-tag": "noindex",
}
_PURPOSES = frozenset(name.encode() for name in PURPOSE_HEADERS)


def verified(scope: Scope, state: AppState, kind: str) -> Verified:
    """The claims of the request's token of `kind`; a 404 when it does not verify."""
    token: str = scope["path_params"]["token"]
    found = state.signer.verify(token, kind) if state.signer is not None else None
    if found is None:
        raise NotFound("no such tracking link")
    return found


class LossLog:
    """Warns about events lost to an unavailable Redis at most every LOG_EVERY_SECONDS, with
    the count since: a Redis outage must not become a line per pixel."""

    def __init__(self) -> None:
        self.lost = 0
        self.logged_at = float("-inf")

    def note(self, exc: BaseException) -> None:
        self.lost += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY_SECONDS:
            logger.warning(
                "tracking events not recorded (%s): %d since the last warning",
                type(exc).__name__,
                self.lost,
            )
            self.lost, self.logged_at = 0, now


LOSSES = LossLog()


class View:
    """The open pixel or the click, as a bare ASGI endpoint (Starlette's `Route` takes one):
    no Request or Response object, no per-request wrapper around `send`, the answer's
    headers built once. These are the platform's hottest URLs and that framework work was a
    tenth of each request's CPU (docs/performance.md). Errors still reach the app's
    exception handlers: a token that does not verify is the same JSON 404."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["state"][STATE_KEY]
        found = verified(scope, state, self.kind)
        await record_view(scope, state, found, self.kind)
        if self.kind == OPEN:
            await send({"type": "http.response.start", "status": 200, "headers": _PIXEL_HEADERS})
            await send({"type": "http.response.body", "body": PIXEL_GIF})
            return
        location = found.claims.url.encode("latin-1")  # ASCII: check_link made it so
        headers = [(b"location", location), (b"content-length", b"0"), *_NO_CACHE]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def record_view(scope: Scope, state: AppState, found: Verified, kind: str) -> None:
    """Store the open or click, flagged when a machine made it; never fails the request."""
    user_agent: str | None = None
    purposes: list[str] = []
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")[:MAX_USER_AGENT]
        elif name in _PURPOSES:
            purposes.append(value.decode("latin-1"))
    config = state.config
    now = state.clock()
    timestamp = now.timestamp()
    claims = found.claims
    networks = config.tracking_machine_networks
    client = scope.get("client") if networks else None
    event = Event(
        type="email.open" if kind == OPEN else "email.click",
        email_id=claims.email_id,
        occurred_at=format_timestamp(now),
        provider=PROVIDER,
        recipient=claims.recipient,
        provider_event_id=tracking_event_key(kind, found.tag, int(timestamp)),
        click=Click(url=claims.url) if kind == CLICK else None,
        user_agent=user_agent,
        machine=machine(
            kind=kind,
            method=scope["method"],
            user_agent=user_agent,
            purposes=purposes,
            address=client[0] if client else None,
            networks=networks,
            issued_at=claims.issued_at,
            now=timestamp,
            early_click_seconds=config.tracking_early_click_seconds,
        ),
        # The account is the token's: signed by us, so no routing is needed.
        account_id=claims.account,
    )
    try:
        if await state.capacity.full():
            raise StoreFull(STORE_FULL_MESSAGE)
        with state.deadlines.limit(config.ingest_timeout):
            await state.events.append(PROVIDER, [event], dedup_ttl_seconds=REPEAT_SECONDS)
    except (RedisError, TimeoutError, StoreUnavailable) as exc:
        LOSSES.note(exc)


async def unsubscribe_page(request: Request) -> Response:
    """GET: what a person who follows the link sees. Changes nothing: mail scanners and
    prefetchers GET every link of a message."""
    found = verified(request.scope, app_state(request), UNSUBSCRIBE)
    return page(
        "Unsubscribe",
        f"<p>Stop emails to <strong>{html.escape(found.claims.recipient)}</strong>?</p>"
        '<form method="post">'
        f'<input type="hidden" name="{ONE_CLICK_FIELD}" value="{ONE_CLICK_VALUE}">'
        '<button type="submit">Unsubscribe</button></form>',
    )


async def unsubscribe(request: Request) -> Response:
    """POST (RFC 8058 one-click, or the page's button): record email.unsubscribe, which puts
    the recipient on the account's suppression list. Answered once stored."""
    state = app_state(request)
    found = verified(request.scope, state, UNSUBSCRIBE)
    body = await read_body(request, state.config, state.deadlines)
    form = forms.parse(body, provider="the unsubscribe")
    if form.first(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
        raise ValidationFailed(
            f"an unsubscribe POST carries {ONE_CLICK} (RFC 8058)", field=ONE_CLICK_FIELD
        )
    claims = found.claims
    if await account_exists(state, claims.account):
        now = state.clock()
        event = Event(
            type="email.unsubscribe",
            email_id=claims.email_id,
            occurred_at=format_timestamp(now),
            provider=PROVIDER,
            recipient=claims.recipient,
            # One per link, however often it is posted (clients retry, people click twice).
            provider_event_id=tracking_event_key(UNSUBSCRIBE, found.tag),
            user_agent=request.headers.get("user-agent", "")[:MAX_USER_AGENT] or None,
            account_id=claims.account,
        )
        if await state.capacity.full():
            raise StoreFull(STORE_FULL_MESSAGE)
        try:
            with state.deadlines.limit(state.config.ingest_timeout):
                await state.events.append(PROVIDER, [event])
        except TimeoutError:
            raise StoreUnavailable("the event store did not answer in time; retry") from None
    # An account deleted since the link was made sends nothing more: the answer is the same.
    return page(
        "Unsubscribed",
        f"<p><strong>{html.escape(claims.recipient)}</strong> will get no more of these "
        "emails.</p>",
    )


async def account_exists(state: AppState, account: str) -> bool:
    """As routing decides it (service.http.routing): an account seen lately is trusted."""
    now = time.monotonic()
    if state.known_accounts.get(account, 0) >= now:
        return True
    if not await state.accounts.existing([account]):
        return False
    state.known_accounts[account] = now + KNOWN_ACCOUNT_SECONDS
    return True


def page(title: str, content: str, headers: Mapping[str, str] = _PAGE_HEADERS) -> Response:
    """A small, self-contained HTML page (no script, no outside resource)."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32em;"
        "margin:4em auto;padding:0 1em;line-height:1.5}button{font-size:1em;padding:.5em 1.5em}"
        f"</style></head><body><h1>{title}</h1>{content}</body></html>"
    )
    return Response(body, media_type="text/html", headers=headers)


routes = [
    Route("/t/o/{token}", View(OPEN), methods=["GET"], name="tracking_open"),
    Route("/t/c/{token}", View(CLICK), methods=["GET"], name="tracking_click"),
    Route("/t/u/{token}", unsubscribe_page, methods=["GET"], name="tracking_unsubscribe_page"),
    Route("/t/u/{token}", unsubscribe, methods=["POST"], name="tracking_unsubscribe"),
]
