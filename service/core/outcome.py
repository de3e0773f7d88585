"""What an attempt's result means for the delivery (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"  # try again on the schedule (or after Retry-After)
    GONE = "gone"  # 410: the receiver asks us to stop for good


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
