from __future__ import annotations

import pytest

from service.core.outcome import Verdict, classify_status


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
