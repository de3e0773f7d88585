from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from config import DEFAULT_RETRY_SCHEDULE
from service.core.schedule import (
    SATURATED_FIRST_LOOK_SECONDS,
    next_delay,
    parse_retry_after,
    saturated_delay,
)

NOW = datetime(2026, 3, 3, 10, 0, 0, tzinfo=UTC)


class TestNextDelay:
    def test_follows_the_schedule_within_jitter(self) -> None:
        rng = random.Random(1)
        for attempts_made in range(1, len(DEFAULT_RETRY_SCHEDULE)):
            base = DEFAULT_RETRY_SCHEDULE[attempts_made]
            delays = [next_delay(DEFAULT_RETRY_SCHEDULE, attempts_made, rng) for _ in range(200)]
            assert all(d is not None and 0.8 * base <= d <= 1.2 * base for d in delays)
            if base:
                assert len({round(d or 0, 6) for d in delays}) > 100  # really jittered

    def test_default_schedule_is_the_documented_one(self) -> None:
        assert DEFAULT_RETRY_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)

    def test_spent_schedule_is_none(self) -> None:
        rng = random.Random(1)
        assert next_delay((0, 1, 2), 3, rng) is None
        assert next_delay((0,), 1, rng) is None

    def test_retry_after_replaces_the_delay_bounded_by_the_longest(self) -> None:
        rng = random.Random(1)
        assert next_delay((0, 5, 60), 1, rng, retry_after=30) == 30
        assert next_delay((0, 5, 60), 1, rng, retry_after=10_000) == 60
        assert next_delay((0, 5, 60), 1, rng, retry_after=-3) == 0

    def test_retry_after_does_not_extend_a_spent_schedule(self) -> None:
        assert next_delay((0, 5), 2, random.Random(1), retry_after=1) is None


class TestSaturatedDelay:
    def draws(self, timeout: float, waited: float | None) -> list[float]:
        rng = random.Random(3)
        return [saturated_delay(timeout, waited, rng) for _ in range(500)]

    @pytest.mark.parametrize(
        ("waited", "base"),
        [
            (None, 15.0),  # not known to have been put off: a request timeout
            (0.0, SATURATED_FIRST_LOOK_SECONDS),  # just handed off: soon
            (0.3, SATURATED_FIRST_LOOK_SECONDS),
            (4.0, 4.0),  # as long again as it has waited
            (60.0, 15.0),  # never longer than a request timeout
        ],
    )
    def test_half_to_all_of_its_base(self, waited: float | None, base: float) -> None:
        delays = self.draws(15.0, waited)
        assert all(0.5 * base <= d <= base for d in delays)
        assert min(delays) < 0.55 * base  # really spread
        assert max(delays) > 0.95 * base

    def test_the_wait_grows_with_each_look_up_to_the_timeout(self) -> None:
        # Looked at again at the latest possible moment each time, still saturated.
        rng = random.Random(5)
        waited, looks = 0.0, []
        while waited < 60:
            waited += saturated_delay(15.0, waited, rng)
            looks.append(waited)
        gaps = [b - a for a, b in zip([0.0, *looks], looks, strict=False)]
        assert gaps[0] <= SATURATED_FIRST_LOOK_SECONDS
        assert all(gap <= 15.0 for gap in gaps)
        # Past the first few looks, never more often than every half a timeout.
        assert all(gap >= 7.5 for gap, at in zip(gaps, looks, strict=True) if at > 30)
        assert len(looks) < 16  # a constant first-look interval would take 60 or more


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("120", 120.0),
            (" 7 ", 7.0),
            ("Tue, 03 Mar 2026 10:00:30 GMT", 30.0),
            ("Tue, 03 Mar 2026 09:00:00 GMT", 0.0),
            (None, None),
            ("soon", None),
            ("-5", None),
            ("", None),
            ("²", None),  # a digit to str.isdigit, not to float()
        ],
    )
    def test_values(self, value: str | None, expected: float | None) -> None:
        assert parse_retry_after(value, NOW) == expected
