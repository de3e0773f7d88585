"""Every inbound provider, in detection order. Adding one is its module plus one line here.

The inbound routes, `Config.provider_secrets`, detection, the start-up secret checks and the
OpenAPI operations are all derived from `PROVIDERS`; the functions deriving them take the
tuple as a parameter, so tests can pass a copy with a provider of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from service.providers import (
    brevo,
    generic,
    mailersend,
    mailgun,
    mailjet,
    mandrill,
    postal,
    postmark,
    resend,
    sendgrid,
    ses,
    sparkpost,
)
from service.providers.base import Provider

PROVIDERS: tuple[Provider, ...] = (
    resend.PROVIDER,
    # Known by their headers.
    ses.PROVIDER,
    postal.PROVIDER,
    # Before SendGrid, which takes any other JSON array: known by their arrays' first element.
    sparkpost.PROVIDER,
    mailjet.PROVIDER,
    brevo.PROVIDER,
    sendgrid.PROVIDER,
    mailersend.PROVIDER,
    mandrill.PROVIDER,
    mailgun.PROVIDER,
    postmark.PROVIDER,
    # Last: the fallback, which detects every request and is served at the shared URL.
    generic.PROVIDER,
)


def by_name(providers: Sequence[Provider]) -> Mapping[str, Provider]:
    """`providers` keyed by name; two providers with one name or one secret variable are a bug."""
    named = {provider.name: provider for provider in providers}
    variables = {provider.secret_variable for provider in providers}
    if len(named) != len(providers) or len(variables) != len(providers):
        raise ValueError("each provider needs its own name and its own secret variable")
    return named


BY_NAME = by_name(PROVIDERS)
