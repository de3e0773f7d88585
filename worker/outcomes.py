"""What the worker logs of delivery attempts: a line per attempt at INFO, up to
LINES_PER_SECOND of them, and a summary of them all every SUMMARY_SECONDS.

A line per delivery at INFO cost 6-7 % of the worker's CPU at thousands of deliveries a
second (bench.ab, docs/performance.md); counting costs 0.66 us an attempt. So a quiet deployment
sees every attempt, and a busy one sees the first LINES_PER_SECOND attempts of each second,
every attempt at DEBUG (LOG_LEVEL=DEBUG), and a summary line each minute with the counts of
all. A line says what the endpoint answered (its status, or why there was no answer) and
what follows; never the URL, the payload or the endpoint's reply.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from service.core.outcome import ErrorKind, Verdict
from service.storage.deliveries import StoredDelivery
from service.storage.webhooks import StoredWebhook
from worker.sender import SendResult

logger = logging.getLogger("mailhooks.delivery")

LINES_PER_SECOND = 20
SUMMARY_SECONDS = 60.0

# What an attempt's recorded status says of the delivery (record.lua's answers), and
# "gone" for a 410 and "abandoned" for no attempt at all.
OUTCOME_TEXT = {
    "succeeded": "succeeded",
    "pending": "failed, will retry",
    "failed": "failed, no attempts left",
    "gone": "failed, webhook disabled: 410 Gone",
    "disabled": "failed, webhook disabled after failing for DISABLE_AFTER",
    "abandoned": "abandoned",
    "lost": "not recorded: its lease was taken over",
}
# The same in the summary line, in this order.
SUMMARY_TEXT = {
    "succeeded": "succeeded",
    "pending": "to retry",
    "failed": "failed for good",
    "gone": "answered 410",
    "disabled": "disabled their webhook",
    "abandoned": "abandoned",
    "lost": "lost their lease",
}


class OutcomeLog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._second = 0
        self._lines = 0  # INFO lines in this second
        self._counts: Counter[str] = Counter()
        self._held = 0  # attempts not logged one by one at INFO since the last summary
        self._since = clock()

    def attempt(
        self,
        delivery: StoredDelivery,
        webhook: StoredWebhook,
        number: int,
        result: SendResult,
        verdict: Verdict,
        status: str,
        delay: float | None,
    ) -> None:
        # A 410 disables the webhook: record.lua answers "disabled" (or "failed", when it
        # was disabled already); "gone" says why.
        gone = verdict is Verdict.GONE and status in ("failed", "disabled")
        outcome = "gone" if gone else status
        level = self._count(outcome)
        if not logger.isEnabledFor(level):
            return
        if result.status_code is not None:
            answer = str(result.status_code)
        elif result.response:
            answer = f"{result.error} ({result.response})"
        else:
            answer = str(result.error)
        text = OUTCOME_TEXT.get(outcome, outcome)
        if outcome == "pending" and delay is not None:
            text = f"{text} in {delay:.0f} s"
        logger.log(
            level,
            "delivery %s to webhook %d %s: %s in %d ms (attempt %d)",
            delivery.id,
            webhook.id,
            text,
            answer,
            result.latency_ms,
            number,
            extra={
                "delivery_id": delivery.id,
                "event_id": delivery.event_id,
                "webhook_id": webhook.id,
                "account_id": webhook.account,
                "outcome": outcome,
                "status_code": result.status_code,
                "error": result.error,
                "attempt": number,
                "latency_ms": result.latency_ms,
            },
        )

    def abandoned(self, delivery: StoredDelivery, reason: ErrorKind) -> None:
        level = self._count("abandoned")
        logger.log(
            level,
            "delivery %s to webhook %d abandoned: %s",
            delivery.id,
            delivery.webhook_id,
            reason,
            extra={
                "delivery_id": delivery.id,
                "event_id": delivery.event_id,
                "webhook_id": delivery.webhook_id,
                "outcome": "abandoned",
                "error": reason,
            },
        )

    def _count(self, outcome: str) -> int:
        """Counts the outcome; the level to log its line at."""
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second, self._lines = second, 0
            self.summary_if_due(now)
        self._counts[outcome] += 1
        if self._lines < LINES_PER_SECOND:
            self._lines += 1
            return logging.INFO
        self._held += 1
        return logging.DEBUG

    def summary_if_due(self, now: float | None = None) -> None:
        """The counts since the last summary, at INFO, once SUMMARY_SECONDS have passed and
        if there were attempts. Also called by the heartbeat job, so that a quiet spell does
        not hold the last summary back."""
        now = self._clock() if now is None else now
        if now - self._since < SUMMARY_SECONDS:
            return
        if self._counts:
            order = {outcome: place for place, outcome in enumerate(SUMMARY_TEXT)}
            counted = sorted(self._counts.items(), key=lambda item: order.get(item[0], 99))
            counts = ", ".join(
                f"{count:,} {SUMMARY_TEXT.get(outcome, outcome)}" for outcome, count in counted
            )
            logger.info(
                "delivery attempts in the last %.0f s: %s (%s not logged one by one)",
                now - self._since,
                counts,
                f"{self._held:,}",
            )
        self._counts.clear()
        self._held = 0
        self._since = now
