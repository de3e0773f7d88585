from __future__ import annotations

import pytest

from service.core.errors import InvalidSignature
from service.providers.timestamps import check_age, check_fresh_iso

NOW = 1_772_532_000  # 2026-03-03T10:00:00Z


class TestCheckFreshIso:
    @pytest.mark.parametrize(
        "timestamp",
        [
            "2026-03-03T10:00:00Z",
            "2026-03-03T10:00:00.000Z",
            "2026-03-03T09:00:00.5Z",  # an hour old
            "2026-03-03T11:00:00+01:00",
            "2026-03-03T10:59:59",  # no offset: UTC
        ],
    )
    def test_within_tolerance(self, timestamp: str) -> None:
        check_fresh_iso(timestamp, now=NOW, tolerance=3600, name="Timestamp")

    @pytest.mark.parametrize(
        ("timestamp", "message"),
        [
            ("2026-03-03T08:59:59Z", "Timestamp is too old"),
            ("2026-03-03T11:00:01Z", "Timestamp is in the future"),
            ("2026-03-03 10:00:01 PM", "not an ISO 8601 timestamp"),
            ("1772532000", "not an ISO 8601 timestamp"),
            ("", "not an ISO 8601 timestamp"),
            ("0001-01-01T00:00:00+01:00", "Timestamp is too old"),
            ("9999-12-31T23:30:00-01:00", "Timestamp is in the future"),
        ],
    )
    def test_refused(self, timestamp: str, message: str) -> None:
        with pytest.raises(InvalidSignature, match=message):
            check_fresh_iso(timestamp, now=NOW, tolerance=3600, name="Timestamp")


class TestCheckAge:
    @pytest.mark.parametrize("age", [0, 60, -60, 300, -300])
    def test_within(self, age: float) -> None:
        check_age(age, tolerance=300, name="timestamp")

    @pytest.mark.parametrize(
        ("age", "message"),
        [(300.5, "too old \\(300 s; tolerance 300 s\\)"), (-301, "in the future \\(301 s")],
    )
    def test_outside(self, age: float, message: str) -> None:
        with pytest.raises(InvalidSignature, match=f"timestamp is {message}"):
            check_age(age, tolerance=300, name="timestamp")
