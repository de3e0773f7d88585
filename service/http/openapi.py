"""The OpenAPI 3.1 document, generated from the msgspec models, and the /docs page.

Each operation is declared once below (path, method, models, statuses), the inbound ones one
per registered provider; the schemas come from `msgspec.json.schema_components`, so a model
change shows up in the spec without editing it. A test checks that every route of the app is
declared here and nothing else is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import swagger_ui_bundle
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service import __version__
from service.core.models import (
    Account,
    AccountCreate,
    AccountList,
    AccountUpdate,
    ApiKeyCreated,
    ApiKeyList,
    DeadLetter,
    DeadLetterList,
    Delivery,
    DeliveryExhaustedPayload,
    DeliveryList,
    EmailRegistration,
    EmailRegistrationResult,
    ErrorBody,
    Event,
    EventList,
    EventTypeList,
    GenericInboundEvent,
    Health,
    PortalLink,
    Received,
    RecoverRequest,
    RecoverResult,
    Redriven,
    RedriveRequest,
    RedriveResult,
    SecretRotate,
    SecretRotation,
    ServiceStatus,
    Suppression,
    SuppressionCreate,
    SuppressionList,
    SyntheticEventRequest,
    TrackedHtml,
    TrackedHtmlRequest,
    TrackingRequest,
    TrackingUrls,
    Webhook,
    WebhookCreate,
    WebhookDisabledPayload,
    WebhookList,
    WebhookPayload,
    WebhookUpdate,
)
from service.http.inbound import SHARED_PATH, inbound_paths
from service.providers.base import Provider
from service.providers.registry import PROVIDERS

REF = "#/components/schemas/{name}"
SIGNATURE_401 = "Missing, malformed, wrong or expired provider signature or credentials"
ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON, or an admin key names no account (X-Account-Id)",
    401: "Missing or invalid API key",
    403: (
        "The key may not use this route (an account key on an admin route); inbound: a "
        "provider-signed request from a sender not allowed (SES: a topic not in SES_TOPIC_ARNS)"
    ),
    404: "No such resource (another account's answers the same)",
    409: (
        "A conflict: the delivery is being attempted already, a limit is reached; an "
        "Idempotency-Key used with another body (idempotency_key_reused) or whose first "
        "request is still running (idempotency_in_progress)"
    ),
    413: "The body is larger than MAX_BODY_BYTES",
    415: "The body is not application/json",
    422: "The body or a parameter failed validation; `field` names it",
    501: (
        "This deployment has not enabled the feature (the portal: PORTAL_SECRET is unset; "
        "tracking: PUBLIC_URL and TRACKING_SIGNING_KEY are unset)"
    ),
    503: (
        "Redis is unavailable (store_unavailable), or full (store_full; inbound: nearly full); "
        "inbound: a provider's signing certificate could not be fetched (signing_key_unavailable)"
    ),
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    ok_status: int
    ok_type: type | None
    request: type | None = None
    errors: tuple[int, ...] = ()
    security: str = "account"  # a key of SECURITY
    parameters: list[dict[str, Any]] = field(default_factory=list)
    # A success that is not JSON (the pixel, a redirect, a page): its media type and headers.
    ok_media: str | None = None
    ok_description: str = "Success"
    ok_headers: dict[str, Any] | None = None
    request_required: bool = True


def _query(
    name: str,
    description: str,
    type_: str = "integer",
    *,
    minimum: int = 0,
    maximum: int | None = None,
    format_: str | None = None,
    enum: list[str] | None = None,
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": type_}
    if type_ == "integer":
        schema["minimum"] = minimum
        if maximum is not None:
            schema["maximum"] = maximum
    if format_ is not None:
        schema["format"] = format_
    if enum is not None:
        schema["enum"] = enum
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


ID_PARAM = {"name": "webhook_id", "in": "path", "required": True, "schema": {"type": "integer"}}
DELIVERY_ID_PARAM = {
    "name": "delivery_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
ACCOUNT_ID_PARAM = {
    "name": "account_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
IDEMPOTENCY_PARAM: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Up to 255 visible ASCII characters (a UUID). The same key from the same caller on the "
        "same path within 24 hours returns the first 2xx response again (with "
        "Idempotent-Replayed: true) instead of running again; with another body, a 409. See "
        "docs/api.md"
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
KEY_ID_PARAM = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
DEAD_LETTER_ID_PARAM = {
    "name": "dead_letter_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
SECURITY_SCHEMES: dict[str, Any] = {
    "accountKey": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "An account's key (mh_…, from POST /api/accounts/{id}/keys), or one of API_KEYS "
            "(the default account's)"
        ),
    },
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An operator's key, one of ADMIN_API_KEYS",
    },
    "accountId": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Account-Id",
        "description": "With an admin key: the account (acc_…) to act in",
    },
}
# Who may call an operation: each inner object is one way (all its schemes together).
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "account": [{"accountKey": []}, {"adminKey": [], "accountId": []}],
    # Events: an admin key without X-Account-Id reads every account's.
    "any": [{"accountKey": []}, {"adminKey": []}],
    "operator": [{"adminKey": []}, {"accountKey": []}],  # API_KEYS only, of the account keys
    "admin": [{"adminKey": []}],
    # An admin key for any account; an account's own key for its own id only.
    "admin_or_own": [{"adminKey": []}, {"accountKey": []}],
    "none": [],
}
EVENT_ID_PARAM = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}
TOKEN_PARAM = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "A signed tracking token, as POST /api/tracking made it",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
}
EMAIL_PARAM = {
    "name": "email",
    "in": "path",
    "required": True,
    "description": "The address (any case)",
    "schema": {"type": "string"},
}
INBOUND_SUMMARY = (
    'Receive {what}; answers {{"received": true}} once stored (retries de-duplicated). '
    "See docs/inbound.md for formats and signatures"
)


def inbound_operations(providers: Sequence[Provider] = PROVIDERS) -> tuple[Operation, ...]:
    """One per provider, at its URL, summarised by its `summary`; the shared URL's body is
    documented as the generic format."""
    return tuple(
        Operation(
            "post",
            path,
            INBOUND_SUMMARY.format(what=provider.summary),
            200,
            Received,
            request=GenericInboundEvent if path == SHARED_PATH else None,
            errors=(401, 403, 413, 422, 503),
            security="none",
        )
        for path, provider in inbound_paths(providers)
    )


MANAGE = "/api/webhooks/manage"
ONE = MANAGE + "/{webhook_id}"

MANAGEMENT_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        MANAGE,
        "List all registered webhook endpoints, oldest first",
        200,
        WebhookList,
        errors=(401, 422, 503),
        parameters=[
            _query(
                "limit", "Page size, 1-1000 (default: all, up to 1000)", minimum=1, maximum=1000
            ),
            _query("after", "Only webhooks with a larger id; the Link header gives the next page"),
        ],
    ),
    Operation(
        "post",
        MANAGE,
        "Register a new webhook endpoint (a generated secret is returned once)",
        201,
        Webhook,
        request=WebhookCreate,
        errors=(400, 401, 409, 413, 415, 422, 503),
        parameters=[IDEMPOTENCY_PARAM],
    ),
    Operation("get", ONE, "Get one webhook", 200, Webhook, errors=(401, 404, 503)),
    Operation(
        "patch",
        ONE,
        "Update a webhook's url, events, secret or active flag",
        200,
        Webhook,
        request=WebhookUpdate,
        errors=(400, 401, 404, 413, 415, 422, 503),
    ),
    Operation("delete", ONE, "Delete a webhook", 204, None, errors=(401, 404, 503)),
    Operation(
        "post",
        ONE + "/secret/rotate",
        "Rotate the secret: the replaced one keeps signing webhook-signature beside the new "
        "one for the grace period (a generated secret is returned once)",
        200,
        SecretRotation,
        request=SecretRotate,
        errors=(400, 401, 404, 409, 413, 415, 422, 503),
        parameters=[IDEMPOTENCY_PARAM],
    ),
    Operation(
        "get",
        ONE + "/deliveries",
        "A webhook's deliveries, newest first (Link header for the next page)",
        200,
        DeliveryList,
        errors=(401, 404, 422, 503),
        parameters=[
            _query(
                "status",
                "Only pending, succeeded or failed deliveries",
                "string",
                enum=["pending", "succeeded", "failed"],
            ),
            _query("limit", "Page size, 1-1000 (default 100)", minimum=1, maximum=1000),
            _query("before", "The cursor from the previous page's Link header", "string"),
        ],
    ),
    Operation(
        "get",
        ONE + "/deliveries/{delivery_id}",
        "One delivery with its attempt log",
        200,
        Delivery,
        errors=(401, 404, 503),
    ),
    Operation(
        "post",
        ONE + "/deliveries/{delivery_id}/retry",
        "Attempt a delivery again now (failed or succeeded alike)",
        202,
        Delivery,
        errors=(401, 404, 409, 503),
    ),
    Operation(
        "post",
        ONE + "/recover",
        "Re-queue every failed delivery created since a time",
        202,
        RecoverResult,
        request=RecoverRequest,
        errors=(400, 401, 404, 413, 415, 422, 503),
    ),
    Operation(
        "post",
        ONE + "/test",
        "Deliver a synthetic event of a type to this webhook, like a real one",
        202,
        Delivery,
        request=SyntheticEventRequest,
        errors=(400, 401, 404, 409, 413, 415, 422, 503),
        parameters=[IDEMPOTENCY_PARAM],
    ),
)
READING_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/api/events",
        "Stored events, newest first, filtered and paged (Link header for the next page)",
        200,
        EventList,
        errors=(401, 403, 422, 503),
        parameters=[
            _query(
                "type", "Only this type: open, click, bounce, … (email.open form too)", "string"
            ),
            _query(
                "email_id", "Only events about this email (the provider's message id)", "string"
            ),
            _query("recipient", "Only events for this recipient (case-insensitive)", "string"),
            _query("limit", "Page size, 1-1000 (default 100)", minimum=1, maximum=1000),
            _query(
                "before", "Only events older than this event id (from the Link header)", "string"
            ),
            _query(
                "unrouted",
                "Admin keys: only the events routed to no account",
                "string",
                enum=["true", "false"],
            ),
        ],
        security="any",
    ),
    Operation(
        "get",
        "/api/events/{event_id}",
        "One stored event",
        200,
        Event,
        errors=(401, 404, 503),
        security="any",
    ),
    Operation(
        "get",
        "/api/event-types",
        "Every event type an endpoint can receive, with the JSON Schema of its body",
        200,
        EventTypeList,
        errors=(401, 404, 503),
        security="any",
    ),
    Operation(
        "get",
        "/api/status",
        "Worker liveness, delivery backlog and Redis memory, with any problems named",
        200,
        ServiceStatus,
        errors=(401, 403, 503),
        security="operator",
    ),
    Operation("get", "/healthz", "The process is alive", 200, Health, security="none"),
    Operation("get", "/readyz", "Redis answers", 200, Health, errors=(503,), security="none"),
)
ACCOUNT = "/api/accounts/{account_id}"
ACCOUNT_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/emails",
        "Register emails sent without an account tag as this account's (up to 1,000)",
        200,
        EmailRegistrationResult,
        request=EmailRegistration,
        errors=(400, 401, 409, 413, 415, 422, 503),
        parameters=[IDEMPOTENCY_PARAM],
    ),
    Operation(
        "get",
        "/api/accounts",
        "Every account, oldest first (Link header for the next page)",
        200,
        AccountList,
        errors=(401, 403, 422, 503),
        security="admin",
        parameters=[
            _query("limit", "Page size, 1-1000 (default 100)", minimum=1, maximum=1000),
            _query("after", "Only accounts created after this id (acc_…)", "string"),
        ],
    ),
    Operation(
        "post",
        "/api/accounts",
        "Create an account",
        201,
        Account,
        request=AccountCreate,
        errors=(400, 401, 403, 409, 413, 415, 422, 503),
        security="admin",
        parameters=[IDEMPOTENCY_PARAM],
    ),
    Operation(
        "get", ACCOUNT, "One account", 200, Account, errors=(401, 403, 404, 503), security="admin"
    ),
    Operation(
        "patch",
        ACCOUNT,
        "Rename an account",
        200,
        Account,
        request=AccountUpdate,
        errors=(400, 401, 403, 404, 413, 415, 422, 503),
        security="admin",
    ),
    Operation(
        "delete",
        ACCOUNT,
        "Delete an account with its webhooks, deliveries, keys and email registrations",
        204,
        None,
        errors=(401, 403, 404, 409, 503),
        security="admin",
    ),
    Operation(
        "get",
        ACCOUNT + "/keys",
        "An account's API keys (ids and prefixes, never the keys)",
        200,
        ApiKeyList,
        errors=(401, 403, 404, 503),
        security="admin",
    ),
    Operation(
        "post",
        ACCOUNT + "/keys",
        "Create an API key for an account: the key is in this response only (and in "
        "replays of it to the same caller with the same Idempotency-Key)",
        201,
        ApiKeyCreated,
        errors=(401, 403, 404, 409, 422, 503),
        security="admin",
        parameters=[IDEMPOTENCY_PARAM],
    ),
    Operation(
        "delete",
        ACCOUNT + "/keys/{key_id}",
        "Revoke an API key: refused by every web process from its next request",
        204,
        None,
        errors=(401, 403, 404, 503),
        security="admin",
    ),
    Operation(
        "post",
        ACCOUNT + "/portal-links",
        "A link to the account's customer portal, usable once within 10 minutes (admin key, "
        "or the account's own key); see docs/portal.md",
        201,
        PortalLink,
        errors=(401, 404, 501, 503),
        security="admin_or_own",
    ),
)
# Served, but no API operation: the spec and its page, and the customer portal's HTML pages
# and assets (docs/portal.md). A test holds every other route to an operation above.
NOT_IN_SPEC = ("/openapi.json", "/docs", "/docs/assets", "/portal")


DEAD_LETTERS = "/api/dead-letters"
DEAD_LETTER = DEAD_LETTERS + "/{dead_letter_id}"
DEAD_LETTER_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        DEAD_LETTERS,
        "Events the worker could not process, set aside undelivered: newest first (Link header "
        "for the next page)",
        200,
        DeadLetterList,
        errors=(401, 403, 422, 503),
        security="admin",
        parameters=[
            _query("limit", "Page size, 1-1000 (default 100)", minimum=1, maximum=1000),
            _query("before", "The cursor from the previous page's Link header", "string"),
        ],
    ),
    Operation(
        "get",
        DEAD_LETTER,
        "One dead letter: why, and the original entry's fields (decoded where possible)",
        200,
        DeadLetter,
        errors=(401, 403, 404, 503),
        security="admin",
    ),
    Operation(
        "post",
        DEAD_LETTER + "/redrive",
        "Append its event to the events stream again, as a new event (new id), and remove the "
        "dead letter: delivered at least once more to every subscriber",
        202,
        Redriven,
        errors=(401, 403, 404, 409, 503),
        security="admin",
    ),
    Operation(
        "post",
        DEAD_LETTERS + "/redrive",
        "Redrive every dead letter, or those set aside since a time (no body: all)",
        202,
        RedriveResult,
        request=RedriveRequest,
        request_required=False,
        errors=(400, 401, 403, 413, 415, 422, 503),
        security="admin",
    ),
    Operation(
        "delete",
        DEAD_LETTER,
        "Delete a dead letter (its event is not delivered)",
        204,
        None,
        errors=(401, 403, 404, 503),
        security="admin",
    ),
)


NO_STORE = {"Cache-Control": {"schema": {"type": "string"}, "description": "never cached"}}
TRACKING_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/tracking",
        "Make an email's tracking URLs for one recipient: the pixel, each link, the opt-out "
        "link and its List-Unsubscribe headers (docs/tracking.md)",
        200,
        TrackingUrls,
        request=TrackingRequest,
        errors=(400, 401, 413, 415, 422, 501, 503),
    ),
    Operation(
        "post",
        "/api/tracking/html",
        "Track a message's HTML for one recipient: links replaced, the pixel added, "
        "{{unsubscribe_url}} filled in",
        200,
        TrackedHtml,
        request=TrackedHtmlRequest,
        errors=(400, 401, 413, 415, 422, 501, 503),
    ),
    Operation(
        "get",
        "/t/o/{token}",
        "The open pixel: a 1x1 transparent GIF; records email.open",
        200,
        None,
        errors=(404,),
        security="none",
        ok_media="image/gif",
        ok_description="The pixel, not cacheable",
        ok_headers=NO_STORE,
    ),
    Operation(
        "get",
        "/t/c/{token}",
        "A tracked link: redirects to its target; records email.click",
        302,
        None,
        errors=(404,),
        security="none",
        ok_description="To the link's target, as signed in the token",
        ok_headers={
            "Location": {"schema": {"type": "string"}, "description": "The target"},
            **NO_STORE,
        },
    ),
    Operation(
        "get",
        "/t/u/{token}",
        "The opt-out link, followed: a page with an Unsubscribe button; changes nothing",
        200,
        None,
        errors=(404,),
        security="none",
        ok_media="text/html",
    ),
    Operation(
        "post",
        "/t/u/{token}",
        "One-click unsubscribe (RFC 8058, body List-Unsubscribe=One-Click): records "
        "email.unsubscribe and suppresses the recipient",
        200,
        None,
        errors=(404, 413, 422, 503),
        security="none",
        ok_media="text/html",
        ok_description="Unsubscribed (a page saying so)",
    ),
)
SUPPRESSION_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/api/suppressions",
        "The account's suppressed addresses, by address (Link header for the next page)",
        200,
        SuppressionList,
        errors=(400, 401, 422, 503),
        parameters=[
            _query(
                "reason",
                "Only those suppressed for this reason",
                "string",
                enum=["hard_bounce", "complaint", "unsubscribe", "manual"],
            ),
            _query("limit", "Page size, 1-1000 (default 100)", minimum=1, maximum=1000),
            _query("after", "Only addresses after this one (from the Link header)", "string"),
        ],
    ),
    Operation(
        "post",
        "/api/suppressions",
        "Suppress an address by hand (201; 200 with the entry it has if listed already)",
        201,
        Suppression,
        request=SuppressionCreate,
        errors=(400, 401, 413, 415, 422, 503),
    ),
    Operation(
        "get",
        "/api/suppressions/{email}",
        "Whether an address is suppressed: its entry, or 404 (the check before sending)",
        200,
        Suppression,
        errors=(400, 401, 404, 422, 503),
    ),
    Operation(
        "delete",
        "/api/suppressions/{email}",
        "Lift an address's suppression",
        204,
        None,
        errors=(400, 401, 404, 422, 503),
    ),
)


def operations(providers: Sequence[Provider] = PROVIDERS) -> tuple[Operation, ...]:
    """Every operation, in the document's order; the inbound ones follow from `providers`."""
    return (
        *MANAGEMENT_OPERATIONS,
        *inbound_operations(providers),
        *READING_OPERATIONS,
        *ACCOUNT_OPERATIONS,
        *TRACKING_OPERATIONS,
        *SUPPRESSION_OPERATIONS,
        *DEAD_LETTER_OPERATIONS,
    )


OPERATIONS = operations()


def _content(model: type) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(name=model.__name__)}}}


DELIVERY_DOC: dict[str, Any] = {
    "summary": "What your endpoint receives for each matching event",
    "description": (
        "Headers: Content-Type: application/json; X-Webhook-Signature: hex HMAC-SHA256 of "
        "the raw body keyed with your secret (UTF-8; after a rotation, the new secret's); "
        "Standard Webhooks' webhook-id (the same on every retry of a delivery), "
        "webhook-timestamp and webhook-signature (v1,<base64 HMAC-SHA256 of "
        "id.timestamp.body>, keyed with the base64-decoded part after whsec_, else the "
        "secret's bytes; during a rotation's grace period one v1,… per live secret, "
        "space-separated, newest first); User-Agent: mailhooks/<version>; and the "
        "endpoint's custom headers. Answer "
        "2xx to acknowledge; 410 disables the webhook; 429/503 may send Retry-After; "
        "anything else is retried on the schedule. Redirects are not followed."
    ),
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/WebhookPayload"}}
        },
    },
    "responses": {"2XX": {"description": "Acknowledged"}},
}


def _operational_doc(payload: type, summary: str) -> dict[str, Any]:
    """An operational event's delivery: signed and answered as every delivery is."""
    return {
        "summary": summary,
        "description": (
            "Sent to the account's webhooks subscribed to its type (or to *), never to the "
            "webhook it is about; headers, signatures and answers as for emailEvent."
        ),
        "requestBody": {"required": True, "content": _content(payload)},
        "responses": {"2XX": {"description": "Acknowledged"}},
    }


# What endpoints receive: email events, and the operational events about the account's own
# webhooks and deliveries (docs/delivery.md#operational-events).
DELIVERIES: dict[str, tuple[type, dict[str, Any]]] = {
    "emailEvent": (WebhookPayload, DELIVERY_DOC),
    "webhookDisabled": (
        WebhookDisabledPayload,
        _operational_doc(
            WebhookDisabledPayload,
            "webhook.disabled: delivery disabled one of the account's webhooks (410, or failing)",
        ),
    ),
    "deliveryExhausted": (
        DeliveryExhaustedPayload,
        _operational_doc(
            DeliveryExhaustedPayload,
            "delivery.exhausted: a delivery's last attempt failed; it is failed, retryable",
        ),
    ),
}


def build_spec(operations: Sequence[Operation] = OPERATIONS) -> dict[str, Any]:
    models: set[type] = {ErrorBody, *(model for model, _ in DELIVERIES.values())}
    for op in operations:
        models.update(t for t in (op.ok_type, op.request) if t is not None)
    _, schemas = msgspec.json.schema_components(
        sorted(models, key=lambda t: t.__name__), ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        ok: dict[str, Any] = {"description": op.ok_description}
        if op.ok_type is not None:
            ok["content"] = _content(op.ok_type)
        elif op.ok_media is not None:
            binary = {"type": "string", "format": "binary"}
            schema = binary if op.ok_media.startswith("image/") else {"type": "string"}
            ok["content"] = {op.ok_media: {"schema": schema}}
        if op.ok_headers:
            ok["headers"] = op.ok_headers
        responses: dict[str, Any] = {str(op.ok_status): ok}
        for status in op.errors:
            signature = status == 401 and op.security == "none"
            responses[str(status)] = {
                "description": SIGNATURE_401 if signature else ERROR_DESCRIPTIONS[status],
                "content": _content(ErrorBody),
            }
        entry: dict[str, Any] = {"summary": op.summary, "responses": responses}
        parameters = list(op.parameters)
        if "{webhook_id}" in op.path:
            parameters.append(ID_PARAM)
        if "{event_id}" in op.path:
            parameters.append(EVENT_ID_PARAM)
        if "{delivery_id}" in op.path:
            parameters.append(DELIVERY_ID_PARAM)
        if "{account_id}" in op.path:
            parameters.append(ACCOUNT_ID_PARAM)
        if "{key_id}" in op.path:
            parameters.append(KEY_ID_PARAM)
        if "{token}" in op.path:
            parameters.append(TOKEN_PARAM)
        if "{email}" in op.path:
            parameters.append(EMAIL_PARAM)
        if "{dead_letter_id}" in op.path:
            parameters.append(DEAD_LETTER_ID_PARAM)
        if parameters:
            entry["parameters"] = parameters
        if op.request is not None:
            entry["requestBody"] = {
                "required": op.request_required,
                "content": _content(op.request),
            }
        entry["security"] = SECURITY[op.security]
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailhooks",
            "version": __version__,
            "description": (
                "Email event webhooks: register endpoints, receive provider events, track "
                "opens, clicks and unsubscribes, keep suppression lists."
            ),
        },
        "paths": paths,
        "webhooks": {name: {"post": doc} for name, (_, doc) in DELIVERIES.items()},
        "components": {
            "schemas": schemas,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>mailhooks API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});
  </script>
</body>
</html>
"""

SPEC_BYTES = msgspec.json.encode(build_spec())


async def openapi_json(request: Request) -> Response:
    return Response(SPEC_BYTES, media_type="application/json")


async def docs_page(request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)


routes = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
    Mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs"),
]
