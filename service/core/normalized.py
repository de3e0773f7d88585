"""What a provider's `normalize` returns: canonical events, and the provider events that have no
canonical type. Here rather than in `service.providers` so that storage need not import them."""

from __future__ import annotations

from dataclasses import dataclass

from service.core.models import Event


@dataclass(frozen=True, slots=True)
class Ignored:
    """A provider event with no canonical type (processed, deferred, dropped, ...): accepted and
    counted, not delivered."""

    provider: str  # the provider's registry name, e.g. "sendgrid"
    provider_type: str  # the provider's own event name, e.g. "processed"
    # Something the operator must act on, which the web edge logs as a warning (an SNS
    # subscription waiting to be confirmed); never a secret of ours.
    notice: str | None = None


Normalized = Event | Ignored
