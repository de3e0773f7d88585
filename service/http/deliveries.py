"""The attempt log and delivery control, under /api/webhooks/manage/{id}."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.errors import Conflict, NotFound, ValidationFailed
from service.core.event_types import EVENT_TYPES, QUALIFIED_PREFIX
from service.core.ids import (
    LeaseTag,
    epoch_ms,
    format_timestamp,
    lease_owner,
    parse_timestamp,
    test_delivery_id,
    test_event_id,
)
from service.core.models import (
    RECOVER_REQUEST_DECODER,
    SYNTHETIC_EVENT_DECODER,
    Attempt,
    Delivery,
    DeliveryList,
    Event,
    RecoverResult,
)
from service.core.payload import build_payload, encode
from service.http.auth import in_account
from service.http.idempotency import idempotent
from service.http.requests import read_json
from service.http.responses import json_response, page_response
from service.http.state import AppState, app_state
from service.http.webhooks import path_id, query_int, webhook_in_account
from service.storage.deliveries import StoredDelivery, lease_ms
from service.storage.retries import recover_failed, requeue_delivery
from service.storage.webhooks import StoredWebhook

MAX_PAGE = 1000
DEFAULT_PAGE = 100
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
_ATTEMPT_DECODER = msgspec.json.Decoder(Attempt)


def iso_ms(ms: int | None) -> str | None:
    return None if ms is None else format_timestamp(datetime.fromtimestamp(ms / 1000, UTC))


def public(delivery: StoredDelivery, attempts: list[bytes] | None = None) -> Delivery:
    return Delivery(
        id=delivery.id,
        webhook_id=delivery.webhook_id,
        event_id=delivery.event_id,
        type=delivery.type,
        status=delivery.status,  # type: ignore[arg-type]
        attempts=delivery.attempts,
        created_at=iso_ms(delivery.created_at_ms) or "",
        updated_at=iso_ms(delivery.updated_at_ms) or "",
        next_attempt_at=iso_ms(delivery.next_attempt_at_ms),
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        attempt_log=None if attempts is None else [_ATTEMPT_DECODER.decode(a) for a in attempts],
    )


async def existing_webhook(request: Request, account: str) -> StoredWebhook:
    """The path's webhook (or the one a migration renamed it to); another account's answers
    404 exactly like a missing one."""
    return await webhook_in_account(app_state(request), account, path_id(request))


async def existing_delivery(request: Request, account: str) -> StoredDelivery:
    webhook = await existing_webhook(request, account)
    delivery_id: str = request.path_params["delivery_id"]
    delivery = await app_state(request).deliveries.get(delivery_id)
    if delivery is None or delivery.webhook_id != webhook.id:
        raise NotFound(f"delivery {delivery_id} does not exist for webhook {webhook.id}")
    return delivery


def now_ms(state: AppState) -> int:
    return epoch_ms(state.clock())


async def requeue(state: AppState, delivery: StoredDelivery, tag: LeaseTag) -> bool:
    return await requeue_delivery(
        state.deliveries,
        state.retries,
        delivery,
        tag,
        now_ms=now_ms(state),
        lease_ms=lease_ms(state.config),
    )


def status_param(request: Request) -> str | None:
    """The `status` filter of a deliveries listing: None for every status."""
    status = request.query_params.get("status") or None
    if status not in (None, *DELIVERY_STATUSES):
        raise ValidationFailed("status must be pending, succeeded or failed", field="status")
    return status


async def retry_now(state: AppState, delivery: StoredDelivery) -> StoredDelivery:
    """Attempt `delivery` again now: the delivery as re-queued; Conflict if an attempt holds
    it already."""
    if not await requeue(state, delivery, LeaseTag.MANUAL_RETRY):
        raise Conflict(f"delivery {delivery.id} is being attempted already")
    return await state.deliveries.get(delivery.id) or delivery


async def recover_since(state: AppState, webhook: StoredWebhook, since: str) -> int:
    """Re-queue the webhook's failed deliveries created since `since` (ISO 8601): how many."""
    moment = parse_timestamp(since)
    if moment is None:
        raise ValidationFailed("since must be an ISO 8601 time", field="since")
    return await recover_failed(
        state.deliveries,
        state.retries,
        webhook.id,
        since_ms=epoch_ms(moment),
        now_ms=now_ms(state),
        lease_ms=lease_ms(state.config),
    )


async def send_test_event(
    state: AppState, webhook: StoredWebhook, event_type: str
) -> StoredDelivery:
    """Deliver a synthetic event of `event_type` (`bounce` or `email.bounce`; metadata
    {"test": true}) to `webhook` like a real one: the pending delivery."""
    short = event_type.strip().lower().removeprefix(QUALIFIED_PREFIX)
    if short not in EVENT_TYPES:
        raise ValidationFailed(f"unknown event type {event_type!r}", field="type")
    now = state.clock()
    token = secrets.token_hex(8)
    event = Event(
        type=QUALIFIED_PREFIX + short,
        email_id=f"msg_test_{token}",
        occurred_at=format_timestamp(now),
        provider="mailhooks",
        recipient="test@example.com",
        metadata={"test": True},
    )
    event_id = test_event_id(token)
    payload = encode(build_payload(event, event_id=event_id, stored_at=now))
    delivery_id = test_delivery_id(token, webhook.id)
    owner = lease_owner(delivery_id, LeaseTag.TEST)
    await state.deliveries.claim(
        delivery_id=delivery_id,
        webhook_id=webhook.id,
        event_id=event_id,
        event_type=event.type,
        owner=owner,
        now_ms=now_ms(state),
        lease_ms=lease_ms(state.config),
        payload=payload,
    )
    await state.retries.schedule(delivery_id, owner, delay=0)
    created = await state.deliveries.get(delivery_id)
    assert created is not None
    return created


@in_account
async def list_deliveries(request: Request, account: str) -> Response:
    webhook = await existing_webhook(request, account)
    status = status_param(request)
    limit = query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    before = request.query_params.get("before") or None
    found, next_before = await app_state(request).deliveries.page(
        webhook.id, status=status, before=before, limit=limit
    )
    body = DeliveryList(deliveries=[public(d) for d in found])
    return page_response(request, body, cursor="before", after=next_before)


@in_account
async def get_delivery(request: Request, account: str) -> Response:
    delivery = await existing_delivery(request, account)
    attempts = await app_state(request).deliveries.attempts(delivery.id)
    return json_response(public(delivery, attempts))


@in_account
async def retry_delivery(request: Request, account: str) -> Response:
    state = app_state(request)
    delivery = await retry_now(state, await existing_delivery(request, account))
    return json_response(public(delivery), status=202)


@in_account
async def recover(request: Request, account: str) -> Response:
    state = app_state(request)
    webhook = await existing_webhook(request, account)
    body = await read_json(request, RECOVER_REQUEST_DECODER, state.config, state.deadlines)
    requeued = await recover_since(state, webhook, body.since)
    return json_response(RecoverResult(requeued=requeued), status=202)


@in_account
@idempotent
async def send_test(request: Request, account: str) -> Response:
    state = app_state(request)
    webhook = await existing_webhook(request, account)
    body = await read_json(request, SYNTHETIC_EVENT_DECODER, state.config, state.deadlines)
    created = await send_test_event(state, webhook, body.type)
    return json_response(public(created), status=202)


ONE = "/api/webhooks/manage/{webhook_id:int}"
routes = [
    Route(ONE + "/deliveries", list_deliveries, methods=["GET"]),
    Route(ONE + "/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
    Route(ONE + "/deliveries/{delivery_id}/retry", retry_delivery, methods=["POST"]),
    Route(ONE + "/recover", recover, methods=["POST"]),
    Route(ONE + "/test", send_test, methods=["POST"]),
]
