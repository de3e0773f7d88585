"""Which provider sent a request to the shared `POST /api/webhooks` URL (pure; never raises)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from service.providers.base import Provider
from service.providers.registry import PROVIDERS


def detect(
    headers: Mapping[str, str], body: bytes, providers: Sequence[Provider] = PROVIDERS
) -> Provider:
    """The first of `providers` whose `detects` is true, else the last one (the fallback).

    With the registry's order: Svix headers → resend; `x-amz-sns-message-type` → ses; Postal's
    signature headers → postal; SendGrid's signature header or a JSON array → sendgrid; an
    object with `signature` and `event-data` → mailgun; anything else → generic."""
    for provider in providers:
        if provider.detects(headers, body):
            return provider
    return providers[-1]
