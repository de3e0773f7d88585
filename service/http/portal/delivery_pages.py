"""The portal's delivery and event pages: one delivery's attempts and its retry, and the
account's events found by email id or recipient with what was delivered where."""

from __future__ import annotations

from starlette.responses import Response

from service.core.errors import ValidationFailed
from service.core.ids import delivery_id, entry_id, epoch_ms
from service.http.deliveries import existing_delivery, public, retry_now
from service.http.events import text_param
from service.http.portal.session import Visit, portal_page
from service.storage.deliveries import StoredDelivery
from service.storage.events import EventFilter

EVENTS_PAGE = 20
SOON_MS = 30_000
NOTICES = {
    "test": "Test event sent: it is delivered like a real one.",
    "retried": "Delivery queued for another attempt now.",
}


@portal_page
async def delivery_page(visit: Visit) -> Response:
    delivery = await existing_delivery(visit.request, visit.account.id)
    attempts = await visit.state.deliveries.attempts(delivery.id)
    webhook_id: int = visit.request.path_params["webhook_id"]
    # Pending with its attempt due now or soon: the page (with JS) looks again in a moment.
    due = delivery.next_attempt_at_ms or 0
    refresh = delivery.status == "pending" and due - epoch_ms(visit.state.clock()) < SOON_MS
    return visit.render(
        "delivery.html",
        section="webhooks",
        webhook_id=webhook_id,
        delivery=public(delivery, attempts),
        refresh=refresh,
        notice=NOTICES.get(visit.request.query_params.get("done", "")),
    )


@portal_page
async def retry(visit: Visit) -> Response:
    delivery = await retry_now(
        visit.state, await existing_delivery(visit.request, visit.account.id)
    )
    return visit.redirect(
        "portal:delivery",
        {"done": "retried"},
        webhook_id=delivery.webhook_id,
        delivery_id=delivery.id,
    )


@portal_page
async def events_page(visit: Visit) -> Response:
    """Newest first, EVENTS_PAGE at a time; each with its deliveries to the account's
    webhooks, found by their deterministic ids (dlv_{entry}_{webhook}) in one round trip."""
    request, state, account = visit.request, visit.state, visit.account.id
    email_id, recipient = text_param(request, "email_id"), text_param(request, "recipient")
    before = text_param(request, "before")
    if before is not None and entry_id(before) is None:
        raise ValidationFailed("before must be an event id (evt_…)", field="before")
    where = EventFilter(account=account, email_id=email_id, recipient=recipient)
    events, next_before = await state.events.recent(where, before=before, limit=EVENTS_PAGE)
    webhooks, _ = await state.webhooks.list(
        account, after=0, limit=state.config.max_webhooks_per_account
    )
    wanted = [
        delivery_id(entry, webhook.id)
        for event in events
        if (entry := entry_id(str(event.id))) is not None
        for webhook in webhooks
    ]
    found = dict(zip(wanted, await state.deliveries.get_many(wanted), strict=True))
    delivered: dict[str, list[StoredDelivery]] = {}
    for event in events:
        entry = entry_id(str(event.id)) or ""
        delivered[str(event.id)] = [
            d for w in webhooks if (d := found.get(delivery_id(entry, w.id))) is not None
        ]
    return visit.render(
        "events.html",
        section="events",
        events=events,
        delivered=delivered,
        webhook_urls={w.id: w.url for w in webhooks},
        email_id=email_id or "",
        recipient=recipient or "",
        next_before=next_before,
    )
