"""The portal's webhook pages: the list, create, edit, enable or disable, a test event,
recovery, and one webhook with its 24-hour chart and its deliveries. Every change goes
through the same functions as the API's routes (service.http.webhooks, .deliveries)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, TypeVar

import msgspec
from starlette.responses import Response

from service.core.errors import Conflict, ValidationFailed
from service.core.event_types import WILDCARD
from service.core.models import WebhookCreate, WebhookUpdate
from service.core.signing import generate_secret
from service.http.deliveries import (
    existing_webhook,
    public,
    recover_since,
    send_test_event,
    status_param,
)
from service.http.portal.chart import hourly_chart, hourly_edges
from service.http.portal.session import Visit, portal_page
from service.http.webhooks import (
    create_in_account,
    query_int,
    rotate_in_account,
    update_in_account,
)
from service.storage.webhooks import StoredWebhook

logger = logging.getLogger("mailhooks.portal")
T = TypeVar("T")

WEBHOOKS_PAGE = 50
DELIVERIES_PAGE = 25
# What a redirect after a form says on the page it lands on (`?done=`): fixed texts only.
NOTICES = {
    "saved": "Webhook saved.",
    "enabled": "Webhook enabled: deliveries resume.",
    "disabled": "Webhook disabled: no deliveries until you enable it.",
    "recovered": "Failed deliveries queued again: {requeued}.",
}


def checked_form(model: type[T], fields: dict[str, Any]) -> T:
    """The form's fields through the API's request model: the same limits, the same
    messages naming the field."""
    try:
        return msgspec.convert(fields, model)
    except msgspec.ValidationError as exc:
        raise ValidationFailed.from_msgspec(exc) from exc


def form_events(visit: Visit) -> str:
    chosen = visit.values("events")
    return WILDCARD if WILDCARD in chosen else ",".join(chosen)


@portal_page
async def home(visit: Visit) -> Response:
    state, account = visit.state, visit.account.id
    after = query_int(visit.request, "after", default=0, low=0, high=2**53)
    webhooks, next_after = await state.webhooks.list(account, after=after, limit=WEBHOOKS_PAGE)
    edges = hourly_edges(state.clock())
    day = [edges[0], edges[-1]]  # the chart's 24 hours, in one interval
    counts = await state.deliveries.finished_counts([w.id for w in webhooks], day)
    return visit.render(
        "webhooks.html",
        section="webhooks",
        webhooks=webhooks,
        counts={wid: {s: c[0] for s, c in by.items()} for wid, by in counts.items()},
        next_after=next_after,
    )


@portal_page
async def new_webhook(visit: Visit) -> Response:
    return form_page(visit, None, url_value="", events=[WILDCARD])


@portal_page
async def create_webhook(visit: Visit) -> Response:
    url, events, secret = visit.value("url").strip(), form_events(visit), visit.value("secret")
    try:
        body = checked_form(
            WebhookCreate, {"url": url, "events": events, "secret": secret.strip() or None}
        )
        webhook = await create_in_account(
            visit.state,
            visit.account.id,
            url=body.url,
            events=body.events,
            secret=body.secret or generate_secret(),
            active=True,
        )
    except (ValidationFailed, Conflict) as exc:
        return form_page(visit, None, exc, url_value=url, events=events.split(","))
    logger.info("portal: webhook %d created in %s", webhook.id, visit.account.id)
    shown = None if body.secret else webhook.secret  # a generated secret is shown this once
    return visit.render("webhook_created.html", status=201, webhook=webhook, secret=shown)


def form_page(
    visit: Visit,
    webhook: StoredWebhook | None,
    exc: ValidationFailed | Conflict | None = None,
    **values: Any,
) -> Response:
    """The form to add (`webhook` None) or edit a webhook; after `exc`, as it was sent, with
    what is wrong said and linked to its field."""
    return visit.render(
        "webhook_form.html",
        status=exc.status if exc else 200,
        section="webhooks",
        webhook=webhook,
        error=exc.message if exc else None,
        error_field=exc.field if exc else None,
        **values,
    )


@portal_page
async def edit_webhook(visit: Visit) -> Response:
    webhook = await existing_webhook(visit.request, visit.account.id)
    return form_page(visit, webhook, url_value=webhook.url, events=list(webhook.events))


@portal_page
async def update_webhook(visit: Visit) -> Response:
    webhook = await existing_webhook(visit.request, visit.account.id)
    url, events = visit.value("url").strip(), form_events(visit)
    try:
        body = checked_form(WebhookUpdate, {"url": url, "events": events})
        await update_in_account(
            visit.state, visit.account.id, webhook.id, url=str(body.url), events=str(body.events)
        )
    except ValidationFailed as exc:
        return form_page(visit, webhook, exc, url_value=url, events=events.split(","))
    logger.info("portal: webhook %d updated", webhook.id)
    return visit.redirect("portal:webhook", {"done": "saved"}, webhook_id=webhook.id)


@portal_page
async def set_active(visit: Visit) -> Response:
    webhook = await existing_webhook(visit.request, visit.account.id)
    active = visit.value("active") == "true"
    await update_in_account(visit.state, visit.account.id, webhook.id, active=active)
    logger.info("portal: webhook %d %s", webhook.id, "enabled" if active else "disabled")
    done = "enabled" if active else "disabled"
    return visit.redirect("portal:webhook", {"done": done}, webhook_id=webhook.id)


@portal_page
async def send_test(visit: Visit) -> Response:
    webhook = await existing_webhook(visit.request, visit.account.id)
    delivery = await send_test_event(visit.state, webhook, visit.value("type"))
    return visit.redirect(
        "portal:delivery", {"done": "test"}, webhook_id=webhook.id, delivery_id=delivery.id
    )


# The grace periods the form offers (seconds): the API takes any from 0 to 7 days.
GRACE_CHOICES = {"0": 0, "3600": 3600, "86400": 86400, "604800": 604800}


@portal_page
async def rotate_secret(visit: Visit) -> Response:
    """A generated secret, shown once on the page this answers with (not a redirect: the
    secret must not travel in a URL)."""
    webhook = await existing_webhook(visit.request, visit.account.id)
    grace = GRACE_CHOICES.get(visit.value("grace"))
    if grace is None:
        raise ValidationFailed("choose how long the old secret keeps signing", field="grace")
    result = await rotate_in_account(visit.state, visit.account.id, webhook.id, None, grace)
    logger.info("portal: webhook %d secret rotated", webhook.id)
    return visit.render(
        "webhook_rotated.html",
        section="webhooks",
        webhook=webhook,
        secret=result.secret,
        previous_expire_at=result.previous_secrets_expire_at,
    )


@portal_page
async def recover(visit: Visit) -> Response:
    webhook = await existing_webhook(visit.request, visit.account.id)
    requeued = await recover_since(visit.state, webhook, visit.value("since"))
    query = {"done": "recovered", "requeued": requeued}
    return visit.redirect("portal:webhook", query, webhook_id=webhook.id)


@portal_page
async def webhook_page(visit: Visit) -> Response:
    request, state = visit.request, visit.state
    webhook = await existing_webhook(request, visit.account.id)
    status = status_param(request)
    before = request.query_params.get("before") or None
    deliveries, next_before = await state.deliveries.page(
        webhook.id, status=status, before=before, limit=DELIVERIES_PAGE
    )
    now = state.clock()
    edges = hourly_edges(now)
    counts = (await state.deliveries.finished_counts([webhook.id], edges))[webhook.id]
    done = request.query_params.get("done", "")
    requeued = query_int(request, "requeued", default=0, low=0, high=10**9)
    notice = NOTICES[done].format(requeued=requeued) if done in NOTICES else None
    return visit.render(
        "webhook.html",
        section="webhooks",
        webhook=webhook,
        chart=hourly_chart(edges, counts["succeeded"], counts["failed"]),
        deliveries=[public(d) for d in deliveries],
        status_filter=status,
        before=before,
        next_before=next_before,
        recover_since=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        notice=notice,
    )
