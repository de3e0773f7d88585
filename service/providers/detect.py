"""Which provider sent a request to the shared `POST /api/webhooks` URL (pure; never raises)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from service.providers.base import Provider
from service.providers.registry import PROVIDERS


def detect(
    headers: Mapping[str, str], body: bytes, providers: Sequence[Provider] = PROVIDERS
) -> Provider:
    """The first of `providers` whose `detects` is true, else the last one (the fallback).

    With the registry's order:
    - Svix headers → resend;
    - `x-amz-sns-message-type` → ses;
    - Postal's signature headers → postal;
    - a JSON array whose first element has `msys` → sparkpost; Mailjet's or Brevo's event
      shapes → mailjet, brevo;
    - SendGrid's signature header or a JSON array → sendgrid;
    - a hex `Signature` header over a JSON object → mailersend;
    - `X-Mandrill-Signature`, or a form with `mandrill_events` → mandrill;
    - an object with `signature` and `event-data`, or a form with `timestamp`, `token` and
      `signature` → mailgun;
    - an object with a `RecordType` key → postmark;
    - anything else → generic."""
    for provider in providers:
        if provider.detects(headers, body):
            return provider
    return providers[-1]
