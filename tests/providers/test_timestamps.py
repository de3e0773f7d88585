from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.errors import InvalidPayload, InvalidSignature
from service.providers.timestamps import check_age, check_fresh_iso, iso_utc

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


class TestIsoUtc:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2026-03-03T08:15:00Z", "2026-03-03T08:15:00Z"),  # canonical: as it is
            ("2026-03-03T08:15:00.123Z", "2026-03-03T08:15:00.123Z"),
            ("2026-03-03T09:15:00.123+01:00", "2026-03-03T08:15:00.123Z"),
            ("2026-03-03T08:15:00.5Z", "2026-03-03T08:15:00.500Z"),
            ("2026-03-03T08:15:00", "2026-03-03T08:15:00Z"),  # no offset: UTC
            (1772525700, "2026-03-03T08:15:00Z"),
            (1772525700.123, "2026-03-03T08:15:00.123Z"),
        ],
    )
    def test_canonical_form(self, value: str | float, expected: str) -> None:
        assert iso_utc(value, field="at") == expected

    @pytest.mark.parametrize(
        "value",
        [
            "2026-13-03T08:15:00Z",  # canonical in shape, no such month
            "2026-03-03T23:59:60Z",  # leap second: Python has none
            "\uff12026-03-03T08:15:00Z",  # a fullwidth digit
            "yesterday",
            True,
        ],
    )
    def test_refused_naming_the_field(self, value: str | bool) -> None:
        with pytest.raises(InvalidPayload) as caught:
            iso_utc(value, field="at")
        assert caught.value.field == "at"

    @given(
        moment=st.datetimes(
            min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)
        ),
        offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    )
    def test_any_offset_gives_the_utc_form_the_fast_path_keeps(
        self, moment: datetime, offset_minutes: int
    ) -> None:
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
        converted = iso_utc(local.isoformat(timespec="milliseconds"), field="at")
        assert converted == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert iso_utc(converted, field="at") == converted
