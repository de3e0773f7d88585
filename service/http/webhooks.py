"""The management API: /api/webhooks/manage (list, create, get, update, delete)."""

from __future__ import annotations

import logging

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config import Config
from service import logs
from service.core.errors import Conflict, NotFound, ValidationFailed
from service.core.event_types import InvalidEventTypes, format_event_types, parse_event_types
from service.core.ids import format_timestamp
from service.core.models import WEBHOOK_CREATE_DECODER, WEBHOOK_UPDATE_DECODER, Webhook, WebhookList
from service.core.signing import generate_secret
from service.core.urls import UnsafeUrl, check_endpoint_url
from service.http.auth import in_account
from service.http.requests import read_json
from service.http.responses import json_response, page_response
from service.http.state import app_state
from service.storage.webhooks import StoredWebhook, WebhookChanges, WebhookLimitReached

logger = logging.getLogger("mailhooks.webhooks")

MAX_PAGE = 1000


def public(webhook: StoredWebhook) -> Webhook:
    """The API view of a webhook: everything but the secret."""
    return Webhook(
        id=webhook.id,
        url=webhook.url,
        events=format_event_types(webhook.events),
        active=webhook.active,
        created_at=webhook.created_at,
        disabled_reason=webhook.disabled_reason if not webhook.active else None,
    )


def checked_url(url: str, config: Config) -> str:
    try:
        return check_endpoint_url(
            url, allow_http=config.allow_http_urls, allow_private=config.allow_private_urls
        )
    except UnsafeUrl as exc:
        raise ValidationFailed(str(exc), field="url") from exc


def checked_events(events: str) -> tuple[str, ...]:
    try:
        return parse_event_types(events)
    except InvalidEventTypes as exc:
        raise ValidationFailed(str(exc), field="events") from exc


def query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ValidationFailed(f"{name} must be an integer from {low} to {high}", field=name)
    return int(raw)


def path_id(request: Request) -> int:
    webhook_id: int = request.path_params["webhook_id"]
    return webhook_id


@in_account
async def list_webhooks(request: Request, account: str) -> Response:
    state = app_state(request)
    limit = query_int(request, "limit", default=MAX_PAGE, low=1, high=MAX_PAGE)
    after = query_int(request, "after", default=0, low=0, high=2**53)
    webhooks, next_after = await state.webhooks.list(account, after=after, limit=limit)
    body = WebhookList(webhooks=[public(w) for w in webhooks])
    return page_response(request, body, cursor="after", after=next_after)


@in_account
async def create_webhook(request: Request, account: str) -> Response:
    state = app_state(request)
    body = await read_json(request, WEBHOOK_CREATE_DECODER, state.config, state.deadlines)
    url = checked_url(body.url, state.config)
    events = checked_events(body.events)
    secret = body.secret if body.secret is not None else generate_secret()
    limit = state.config.max_webhooks_per_account
    try:
        webhook = await state.webhooks.create(
            account=account,
            url=url,
            events=events,
            secret=secret,
            active=body.active,
            now=format_timestamp(state.clock()),
            limit=limit,
        )
    except WebhookLimitReached:
        raise Conflict(
            f"this account has {limit} webhooks, the most it may have "
            "(MAX_WEBHOOKS_PER_ACCOUNT): delete one first"
        ) from None
    logger.info(
        "webhook %d created in %s, events=%s",
        webhook.id,
        account,
        format_event_types(events),
        extra=logs.ids(request.headers, webhook_id=webhook.id, account_id=account),
    )
    response = public(webhook)
    if body.secret is None:
        # The one time a generated secret is shown: the caller cannot learn it later.
        response.secret = secret
    location = {"Location": str(request.url_for("webhook", webhook_id=webhook.id).path)}
    return json_response(response, status=201, headers=location)


@in_account
async def get_webhook(request: Request, account: str) -> Response:
    webhook = await app_state(request).webhooks.get(path_id(request), account)
    if webhook is None:
        raise NotFound(f"webhook {path_id(request)} does not exist")
    return json_response(public(webhook))


@in_account
async def update_webhook(request: Request, account: str) -> Response:
    state = app_state(request)
    body = await read_json(request, WEBHOOK_UPDATE_DECODER, state.config, state.deadlines)
    changes = WebhookChanges(
        url=None if body.url is UNSET else checked_url(body.url, state.config),
        events=None if body.events is UNSET else checked_events(body.events),
        secret=None if body.secret is UNSET else body.secret,
        active=None if body.active is UNSET else body.active,
    )
    webhook = await state.webhooks.update(
        path_id(request), account, changes, now=format_timestamp(state.clock())
    )
    if webhook is None:
        raise NotFound(f"webhook {path_id(request)} does not exist")
    logger.info(
        "webhook %d updated",
        webhook.id,
        extra=logs.ids(request.headers, webhook_id=webhook.id, account_id=account),
    )
    return json_response(public(webhook))


@in_account
async def delete_webhook(request: Request, account: str) -> Response:
    if not await app_state(request).webhooks.delete(path_id(request), account):
        raise NotFound(f"webhook {path_id(request)} does not exist")
    logger.info(
        "webhook %d deleted",
        path_id(request),
        extra=logs.ids(request.headers, webhook_id=path_id(request), account_id=account),
    )
    return Response(status_code=204)


routes = [
    Route("/api/webhooks/manage", list_webhooks, methods=["GET"]),
    Route("/api/webhooks/manage", create_webhook, methods=["POST"]),
    Route("/api/webhooks/manage/{webhook_id:int}", get_webhook, methods=["GET"], name="webhook"),
    Route("/api/webhooks/manage/{webhook_id:int}", update_webhook, methods=["PATCH"]),
    Route("/api/webhooks/manage/{webhook_id:int}", delete_webhook, methods=["DELETE"]),
]
