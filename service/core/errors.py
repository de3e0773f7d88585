"""The service's errors: one hierarchy, grouped by the HTTP status each answers with.

    MailhooksError                 every handled error: status, code, message, field?
    ├── MalformedJson              400 the body is not JSON
    ├── AccountRequired            400 an admin key acting on an account's routes names none
    ├── Unauthorized               401 missing or wrong API key
    │   └── InvalidSignature       401 an inbound request's signature is missing or wrong
    │       └── InvalidCredentials 401 an inbound request's basic auth (or bearer token) is
    │                                  missing or wrong: answered with a Basic challenge
    ├── Forbidden                  403 an account key on an operator (admin) route, or an
    │                                  authentic inbound request from a sender not allowed here
    ├── NotFound                   404 no such resource (or another account's)
    ├── RequestTimeout             408 the body did not arrive within READ_TIMEOUT
    ├── Conflict                   409 the resource's state forbids it now (a limit, a lease)
    │   ├── IdempotencyKeyReused   409 an Idempotency-Key already used with another body
    │   └── IdempotencyInProgress  409 the first request with this Idempotency-Key is running
    ├── PayloadTooLarge            413 body over MAX_BODY_BYTES
    ├── UnsupportedMediaType       415 body is not application/json
    ├── ValidationFailed           422 JSON of the wrong shape or value; names the field
    │   └── InvalidPayload         422 a provider body that is not valid for its format
    ├── NotEnabled                 501 a feature this deployment has not configured (the
    │                                  portal without PORTAL_SECRET, tracking without
    │                                  PUBLIC_URL and TRACKING_SIGNING_KEY)
    ├── StoreUnavailable           503 Redis did not answer
    │   └── StoreFull              503 Redis is too full to take more events
    └── SigningKeyUnavailable      503 a provider's published signing key could not be fetched

The hierarchy only, with no I/O and no web framework: `service.http.errors` turns these (and
Starlette's and redis-py's own errors) into the JSON error shape, in that one place.
"""

from __future__ import annotations

import re
from typing import ClassVar

import msgspec


class MailhooksError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class MalformedJson(MailhooksError):
    status = 400
    code = "malformed_json"


class AccountRequired(MailhooksError):
    status = 400
    code = "account_required"


class Unauthorized(MailhooksError):
    status = 401
    code = "unauthorized"


class InvalidSignature(Unauthorized):
    code = "invalid_signature"


class InvalidCredentials(InvalidSignature):
    """A provider that signs nothing sent missing or wrong credentials (`Authorization`)."""

    code = "invalid_credentials"


class Forbidden(MailhooksError):
    """An account key on an operator's route; or a request signed by the provider, but by an
    account of it we do not take events from (an SNS topic that is not in SES_TOPIC_ARNS)."""

    status = 403
    code = "forbidden"


class NotFound(MailhooksError):
    status = 404
    code = "not_found"


class RequestTimeout(MailhooksError):
    status = 408
    code = "request_timeout"


class Conflict(MailhooksError):
    status = 409
    code = "conflict"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"


class PayloadTooLarge(MailhooksError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(MailhooksError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(MailhooksError):
    status = 422
    code = "validation_error"

    @classmethod
    def from_msgspec(cls, exc: msgspec.ValidationError) -> ValidationFailed:
        """msgspec says `... - at `$.url`` or `Object missing required field `url``."""
        text = str(exc)
        match = re.search(r" - at `\$\.?([^`]*)`$", text)
        if match:
            message = text[: match.start()]
            field = match.group(1) or None
        else:
            message = text
            named = re.search(r"(?:required|unknown) field `([^`]+)`", text)
            field = named.group(1) if named else None
        return cls(message, field=field)


class InvalidPayload(ValidationFailed):
    code = "invalid_payload"


class NotEnabled(MailhooksError):
    status = 501
    code = "not_enabled"


class StoreUnavailable(MailhooksError):
    status = 503
    code = "store_unavailable"


class StoreFull(StoreUnavailable):
    code = "store_full"


class SigningKeyUnavailable(MailhooksError):
    """The key a provider publishes by URL (SNS's signing certificate) did not arrive: its host
    failed or timed out. The provider retries a 503."""

    status = 503
    code = "signing_key_unavailable"


STORE_FULL_MESSAGE = "the event store is full; retry later"
