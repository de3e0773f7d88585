from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from service.core.outcome import ErrorKind, Verdict, classify_status, judge
from tests import REPO


@pytest.mark.parametrize(
    ("status", "verdict", "retry_after"),
    [
        (200, Verdict.SUCCEEDED, False),
        (204, Verdict.SUCCEEDED, False),
        (299, Verdict.SUCCEEDED, False),
        (410, Verdict.GONE, False),
        (429, Verdict.RETRY, True),
        (503, Verdict.RETRY, True),
        (500, Verdict.RETRY, False),
        (404, Verdict.RETRY, False),
        (301, Verdict.RETRY, False),
        (400, Verdict.RETRY, False),
    ],
)
def test_classify_status(status: int, verdict: Verdict, retry_after: bool) -> None:
    outcome = classify_status(status)
    assert outcome.verdict is verdict
    assert outcome.honour_retry_after is retry_after


class TestJudge:
    NOW = datetime(2026, 3, 3, 10, 0, 0, tzinfo=UTC)
    SCHEDULE = (0.0, 5.0, 300.0)

    def judge(self, status: int | None, attempt: int, retry_after: str | None = None) -> Any:
        rng = random.Random(7)
        return judge(status, retry_after, attempt, schedule=self.SCHEDULE, rng=rng, now=self.NOW)

    def test_success_and_gone_end_the_delivery_whatever_the_attempt(self) -> None:
        assert self.judge(200, 3) == (Verdict.SUCCEEDED, None)
        assert self.judge(410, 1) == (Verdict.GONE, None)

    def test_failures_retry_on_the_schedule_with_jitter(self) -> None:
        verdict, delay = self.judge(500, 1)
        assert verdict is Verdict.RETRY
        assert 4.0 <= delay <= 6.0  # 5 s ± 20 %
        verdict, delay = self.judge(None, 2)  # no answer at all
        assert verdict is Verdict.RETRY
        assert 240.0 <= delay <= 360.0

    def test_the_spent_schedule_fails(self) -> None:
        assert self.judge(500, 3) == (Verdict.FAILED, None)
        assert self.judge(None, 3) == (Verdict.FAILED, None)

    def test_retry_after_is_honoured_on_429_and_503_only(self) -> None:
        assert self.judge(429, 1, "120") == (Verdict.RETRY, 120.0)
        assert self.judge(503, 1, "Tue, 03 Mar 2026 10:01:00 GMT") == (Verdict.RETRY, 60.0)
        verdict, delay = self.judge(500, 1, "120")
        assert verdict is Verdict.RETRY
        assert delay != 120.0

    def test_a_blocked_address_fails_at_once(self) -> None:
        rng = random.Random(7)
        verdict = judge(
            None, None, 1, error=ErrorKind.BLOCKED_ADDRESS, schedule=self.SCHEDULE, rng=rng,
            now=self.NOW,
        )  # fmt: skip
        assert verdict == (Verdict.FAILED, None)
        for kind in (ErrorKind.CONNECT_ERROR, ErrorKind.TIMEOUT, ErrorKind.NETWORK_ERROR):
            verdict, _ = judge(
                None, None, 1, error=kind, schedule=self.SCHEDULE, rng=rng, now=self.NOW
            )
            assert verdict is Verdict.RETRY

    def test_retry_after_is_bounded_by_the_longest_scheduled_delay(self) -> None:
        assert self.judge(429, 1, "999999") == (Verdict.RETRY, 300.0)


def test_verdicts_are_the_strings_the_record_script_compares() -> None:
    script = (REPO / "service" / "storage").glob("**/*")
    lua = "\n".join(p.read_text() for p in script if p.suffix in (".py", ".lua"))
    for verdict in (Verdict.SUCCEEDED, Verdict.RETRY, Verdict.GONE, Verdict.ABANDONED):
        assert f"'{verdict.value}'" in lua
