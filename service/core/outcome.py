"""What an attempt's result means for the delivery (pure): the one verdict, used by the
worker, stored by the record script (its values are the strings the Lua compares), and the
error kinds an attempt can end with."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from service.core.schedule import next_delay, parse_retry_after


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"  # 2xx: done
    RETRY = "retry"  # try again on the schedule (or after Retry-After)
    FAILED = "failed"  # the schedule is spent: failed, retryable by hand
    GONE = "gone"  # 410: the receiver asks us to stop for good (the webhook is disabled)
    ABANDONED = "abandoned"  # not attempted (webhook gone or disabled, event expired)


class ErrorKind(StrEnum):
    """An attempt's `last_error` (docs/delivery.md)."""

    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    BLOCKED_ADDRESS = "blocked_address"
    NETWORK_ERROR = "network_error"
    PROTOCOL_ERROR = "protocol_error"
    HTTP_STATUS = "http_status"  # answered, with a status that is not a success
    # Abandoned without an attempt:
    WEBHOOK_DELETED = "webhook_deleted"
    WEBHOOK_DISABLED = "webhook_disabled"
    EVENT_EXPIRED = "event_expired"


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    honour_retry_after: bool = False


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome(Verdict.SUCCEEDED)
    if status == 410:
        return Outcome(Verdict.GONE)
    if status in (429, 503):
        return Outcome(Verdict.RETRY, honour_retry_after=True)
    # Redirects are not followed (a 3xx is a misconfigured endpoint), and 4xx/5xx may be
    # transient on the receiver's side: all retry on the schedule.
    return Outcome(Verdict.RETRY)


def judge(
    status_code: int | None,
    retry_after: str | None,
    attempt_number: int,
    *,
    error: ErrorKind | None = None,
    schedule: tuple[float, ...],
    rng: random.Random,
    now: datetime,
) -> tuple[Verdict, float | None]:
    """The verdict on attempt `attempt_number` (1-based) and, for RETRY, the seconds until the
    next. `status_code` None means no answer (`error` says why): retried on the schedule,
    except a blocked address. That is the endpoint's name resolving to an address we never
    deliver to: retrying for 31 hours in case its DNS changes would only repeat the refusal,
    so the delivery fails at once (and stays retryable by hand once the DNS is fixed)."""
    if error is ErrorKind.BLOCKED_ADDRESS:
        return Verdict.FAILED, None
    delay_hint: float | None = None
    if status_code is not None:
        outcome = classify_status(status_code)
        if outcome.verdict is not Verdict.RETRY:
            return outcome.verdict, None
        if outcome.honour_retry_after:
            delay_hint = parse_retry_after(retry_after, now)
    delay = next_delay(schedule, attempt_number, rng, retry_after=delay_hint)
    return (Verdict.RETRY, delay) if delay is not None else (Verdict.FAILED, None)
