"""The management API: /api/webhooks/manage (list, create, get, update, delete, rotate the
secret)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config import Config
from service import logs
from service.core.errors import Conflict, NotFound, ValidationFailed
from service.core.event_types import InvalidEventTypes, format_event_types, parse_event_types
from service.core.headers import CustomHeaders, InvalidHeader, check_headers
from service.core.ids import epoch_ms, format_timestamp
from service.core.models import (
    SECRET_ROTATE_DECODER,
    WEBHOOK_CREATE_DECODER,
    WEBHOOK_UPDATE_DECODER,
    SecretRotation,
    Webhook,
    WebhookList,
)
from service.core.signing import generate_secret
from service.core.urls import UnsafeUrl, check_endpoint_url
from service.http.auth import in_account
from service.http.idempotency import idempotent
from service.http.requests import read_json
from service.http.responses import json_response, page_response
from service.http.state import AppState, app_state
from service.storage.webhooks import (
    SecretsChanged,
    StoredWebhook,
    WebhookChanges,
    WebhookLimitReached,
)

logger = logging.getLogger("mailhooks.webhooks")

MAX_PAGE = 1000


def public(webhook: StoredWebhook) -> Webhook:
    """The API view of a webhook: everything but its secrets. Custom headers are shown, names
    and values, as Svix shows them: whoever holds the key could read them anyway by pointing
    the URL at a server of theirs (docs/api.md). They are never logged."""
    return Webhook(
        id=webhook.id,
        url=webhook.url,
        events=format_event_types(webhook.events),
        active=webhook.active,
        created_at=webhook.created_at,
        disabled_reason=webhook.disabled_reason if not webhook.active else None,
        rate_limit=webhook.rate_limit,
        headers=dict(webhook.headers) if webhook.headers else UNSET,
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


def checked_headers(headers: dict[str, str] | None) -> CustomHeaders:
    try:
        return check_headers(headers or {})
    except InvalidHeader as exc:
        raise ValidationFailed(str(exc), field=exc.field) from exc


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


async def webhook_in_account(state: AppState, account: str, webhook_id: int) -> StoredWebhook:
    """The account's webhook `webhook_id`, or the one `mailhooks migrate` renamed it to (its
    old id keeps working: docs/operations.md#moving-to-a-cluster); NotFound otherwise, another
    account's included."""
    webhook = await state.webhooks.get(webhook_id, account)
    if webhook is None:
        renamed = await state.webhooks.renamed(account, webhook_id)
        if renamed is not None:
            webhook = await state.webhooks.get(renamed, account)
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return webhook


async def create_in_account(
    state: AppState,
    account: str,
    *,
    url: str,
    events: str,
    secret: str,
    active: bool,
    rate_limit: int | None = None,
    headers: dict[str, str] | None = None,
) -> StoredWebhook:
    """Check `url`, `events` and `headers` (ValidationFailed naming the field) and create the
    webhook; Conflict when the account has MAX_WEBHOOKS_PER_ACCOUNT already."""
    limit = state.config.max_webhooks_per_account
    url = checked_url(url, state.config)
    checked = checked_events(events)
    custom = checked_headers(headers)
    try:
        return await state.webhooks.create(
            account=account,
            url=url,
            events=checked,
            secret=secret,
            active=active,
            now=format_timestamp(state.clock()),
            limit=limit,
            rate_limit=rate_limit,
            headers=custom,
        )
    except WebhookLimitReached:
        raise Conflict(
            f"this account has {limit} webhooks, the most it may have "
            "(MAX_WEBHOOKS_PER_ACCOUNT): delete one first"
        ) from None


async def update_in_account(
    state: AppState,
    account: str,
    webhook_id: int,
    *,
    url: str | None = None,
    events: str | None = None,
    secret: str | None = None,
    active: bool | None = None,
    rate_limit: int | UnsetType | None = UNSET,  # None: unlimited again
    headers: dict[str, str] | UnsetType | None = UNSET,  # None or {}: none any more
) -> StoredWebhook:
    """Change what is given (checked as on create); NotFound for another account's."""
    changes = WebhookChanges(
        url=None if url is None else checked_url(url, state.config),
        events=None if events is None else checked_events(events),
        secret=secret,
        active=active,
        rate_limit=rate_limit,
        headers=None if headers is UNSET else checked_headers(headers),
    )
    now = format_timestamp(state.clock())
    webhook = await state.webhooks.update(webhook_id, account, changes, now=now)
    if webhook is None and (renamed := await state.webhooks.renamed(account, webhook_id)):
        webhook = await state.webhooks.update(renamed, account, changes, now=now)
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return webhook


@in_account
async def list_webhooks(request: Request, account: str) -> Response:
    state = app_state(request)
    limit = query_int(request, "limit", default=MAX_PAGE, low=1, high=MAX_PAGE)
    after = query_int(request, "after", default=0, low=0, high=2**53)
    webhooks, next_after = await state.webhooks.list(account, after=after, limit=limit)
    body = WebhookList(webhooks=[public(w) for w in webhooks])
    return page_response(request, body, cursor="after", after=next_after)


@in_account
@idempotent
async def create_webhook(request: Request, account: str) -> Response:
    state = app_state(request)
    body = await read_json(request, WEBHOOK_CREATE_DECODER, state.config, state.deadlines)
    secret = body.secret if body.secret is not None else generate_secret()
    webhook = await create_in_account(
        state,
        account,
        url=body.url,
        events=body.events,
        secret=secret,
        active=body.active,
        rate_limit=body.rate_limit,
        headers=body.headers,
    )
    logger.info(
        "webhook %d created in %s, events=%s",
        webhook.id,
        account,
        format_event_types(webhook.events),
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
    webhook = await webhook_in_account(app_state(request), account, path_id(request))
    return json_response(public(webhook))


@in_account
async def update_webhook(request: Request, account: str) -> Response:
    state = app_state(request)
    body = await read_json(request, WEBHOOK_UPDATE_DECODER, state.config, state.deadlines)
    webhook = await update_in_account(
        state,
        account,
        path_id(request),
        url=None if body.url is UNSET else body.url,
        events=None if body.events is UNSET else body.events,
        secret=None if body.secret is UNSET else body.secret,
        active=None if body.active is UNSET else body.active,
        rate_limit=body.rate_limit,
        headers=body.headers,
    )
    logger.info(
        "webhook %d updated",
        webhook.id,
        extra=logs.ids(request.headers, webhook_id=webhook.id, account_id=account),
    )
    return json_response(public(webhook))


@in_account
@idempotent
async def rotate_secret(request: Request, account: str) -> Response:
    """A new secret; the replaced one keeps signing webhook-signature beside it for the grace
    period (service.core.rotation)."""
    state = app_state(request)
    body = await read_json(request, SECRET_ROTATE_DECODER, state.config, state.deadlines)
    result = await rotate_in_account(
        state, account, path_id(request), body.secret, body.grace_period_seconds
    )
    return json_response(result)


async def rotate_in_account(
    state: AppState, account: str, webhook_id: int, secret: str | None, grace_seconds: int
) -> SecretRotation:
    """Rotate the webhook's secret (generated when `secret` is None, and then shown in the
    result, once): the API's route and the portal's form."""
    new_secret = secret if secret is not None else generate_secret()
    now = state.clock()

    async def rotate(webhook_id: int) -> StoredWebhook | None:
        return await state.webhooks.rotate_secret(
            webhook_id,
            account,
            secret=new_secret,
            grace_seconds=grace_seconds,
            now_ms=epoch_ms(now),
            now=format_timestamp(now),
        )

    try:
        webhook = await rotate(webhook_id)
        if webhook is None and (renamed := await state.webhooks.renamed(account, webhook_id)):
            webhook = await rotate(renamed)
    except SecretsChanged:
        raise Conflict("the secret is being rotated by another request: try again") from None
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    logger.info(
        "webhook %d secret rotated, previous secrets live for %d s",
        webhook.id,
        grace_seconds,
        extra=logs.ids(webhook_id=webhook.id, account_id=account),
    )
    expires = max((expiry for _, expiry in webhook.previous_secrets), default=None)
    result = SecretRotation(
        webhook_id=webhook.id,
        previous_secrets_expire_at=None if expires is None else format_ms(expires),
    )
    if secret is None:
        result.secret = new_secret  # the one time a generated secret is shown, as on create
    return result


def format_ms(ms: int) -> str:
    return format_timestamp(datetime.fromtimestamp(ms / 1000, UTC))


@in_account
async def delete_webhook(request: Request, account: str) -> Response:
    webhooks, webhook_id = app_state(request).webhooks, path_id(request)
    deleted = await webhooks.delete(webhook_id, account)
    if not deleted and (renamed := await webhooks.renamed(account, webhook_id)):
        deleted = await webhooks.delete(webhook_id := renamed, account)
    if not deleted:
        raise NotFound(f"webhook {path_id(request)} does not exist")
    logger.info(
        "webhook %d deleted",
        webhook_id,
        extra=logs.ids(request.headers, webhook_id=webhook_id, account_id=account),
    )
    return Response(status_code=204)


routes = [
    Route("/api/webhooks/manage", list_webhooks, methods=["GET"]),
    Route("/api/webhooks/manage", create_webhook, methods=["POST"]),
    Route("/api/webhooks/manage/{webhook_id:int}", get_webhook, methods=["GET"], name="webhook"),
    Route("/api/webhooks/manage/{webhook_id:int}", update_webhook, methods=["PATCH"]),
    Route("/api/webhooks/manage/{webhook_id:int}", delete_webhook, methods=["DELETE"]),
    Route("/api/webhooks/manage/{webhook_id:int}/secret/rotate", rotate_secret, methods=["POST"]),
]
