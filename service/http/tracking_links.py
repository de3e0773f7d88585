"""Making tracking URLs for an email (account key): POST /api/tracking for the URLs themselves,
POST /api/tracking/html for a message's HTML with them in place (docs/tracking.md).

Nothing is stored: the URLs carry everything, signed. Each is made for one email and one
recipient, so a sending service calls once per recipient, after personalising the message.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.errors import NotEnabled, ValidationFailed
from service.core.models import (
    TRACKED_HTML_REQUEST_DECODER,
    TRACKING_REQUEST_DECODER,
    TrackedHtml,
    TrackingHeaders,
    TrackingUrls,
)
from service.core.suppressions import address_problem, normalize_address
from service.core.tracked_html import rewrite
from service.core.tracking import (
    InvalidLink,
    LinkMaker,
    is_tracking_url,
    unsubscribe_headers,
)
from service.http.auth import in_account
from service.http.requests import read_json
from service.http.responses import json_response
from service.http.state import AppState, app_state

NOT_CONFIGURED = "tracking is not configured here: set PUBLIC_URL and TRACKING_SIGNING_KEY"


def link_maker(state: AppState, account: str, email_id: str, recipient: str) -> LinkMaker:
    if state.signer is None:
        raise NotEnabled(NOT_CONFIGURED)
    recipient = recipient.strip()
    problem = address_problem(normalize_address(recipient))
    if problem:
        raise ValidationFailed(f"recipient: {problem}", field="recipient")
    return LinkMaker(
        signer=state.signer,
        public_url=state.config.public_url,
        account=account,
        email_id=email_id,
        recipient=recipient,
        issued_at=int(state.clock().timestamp()),
    )


def headers_model(unsubscribe_url: str) -> TrackingHeaders:
    headers = unsubscribe_headers(unsubscribe_url)
    return TrackingHeaders(
        list_unsubscribe=headers["List-Unsubscribe"],
        list_unsubscribe_post=headers["List-Unsubscribe-Post"],
    )


@in_account
async def make_urls(request: Request, account: str) -> Response:
    state = app_state(request)
    if state.signer is None:
        raise NotEnabled(NOT_CONFIGURED)
    body = await read_json(request, TRACKING_REQUEST_DECODER, state.config, state.deadlines)
    maker = link_maker(state, account, body.email_id, body.recipient)
    links: dict[str, str] = {}
    for position, link in enumerate(body.links):
        try:
            links[link] = maker.click_url(link)
        except InvalidLink as exc:
            raise ValidationFailed(f"links[{position}]: {exc}", field="links") from None
    unsubscribe_url = maker.unsubscribe_url()
    return json_response(
        TrackingUrls(
            open_url=maker.open_url(),
            links=links,
            unsubscribe_url=unsubscribe_url,
            headers=headers_model(unsubscribe_url),
        )
    )


@in_account
async def track_html(request: Request, account: str) -> Response:
    state = app_state(request)
    if state.signer is None:
        raise NotEnabled(NOT_CONFIGURED)
    body = await read_json(request, TRACKED_HTML_REQUEST_DECODER, state.config, state.deadlines)
    maker = link_maker(state, account, body.email_id, body.recipient)
    public_url = state.config.public_url
    open_url, unsubscribe_url = maker.open_url(), maker.unsubscribe_url()

    def track(url: str) -> str | None:
        if is_tracking_url(public_url, url):
            return None  # ours already, the unsubscribe URL among them
        try:
            return maker.click_url(url)
        except InvalidLink:
            return None  # left as it is, as a link we cannot follow safely

    # html.parser is pure Python (a few MB/s): a thread keeps a large message from holding
    # up the event loop, and with it the tracking URLs this process answers.
    rewritten = await asyncio.to_thread(
        rewrite,
        body.html,
        track=track if body.track_clicks else None,
        unsubscribe_url=unsubscribe_url,
        pixel_url=open_url if body.track_opens else None,
    )
    return json_response(
        TrackedHtml(
            html=rewritten.html,
            open_url=open_url,
            links=rewritten.links,
            unsubscribe_url=unsubscribe_url,
            headers=headers_model(unsubscribe_url),
        )
    )


routes = [
    Route("/api/tracking", make_urls, methods=["POST"]),
    Route("/api/tracking/html", track_html, methods=["POST"]),
]
