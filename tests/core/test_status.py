"""service.core.status: the pure assessment behind GET /api/status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.core.ids import entry_time, format_timestamp
from service.core.status import Readings, assess, unread
from service.storage.capacity import over_limit
from tests.conftest import FIXED_NOW

NOW = FIXED_NOW
NOW_MS = int(NOW.timestamp() * 1000)


def readings(**overrides: object) -> Readings:
    values: dict[str, object] = {
        "stored": 10,
        "heartbeat": format_timestamp(NOW),
        "used_memory": 1_000_000,
        "maxmemory": 0,
        "group_exists": True,
        "lag": 0,
        "last_delivered": "9-0",
        "last_entry": "9-0",
        "in_progress": 0,
        "oldest_in_progress": None,
        **overrides,
    }
    return Readings(**values)  # type: ignore[arg-type]


class TestAssess:
    def test_a_live_worker_keeping_up_is_ok(self) -> None:
        report = assess(readings(), NOW, stuck_after_seconds=600, ingest_limit=0.9)
        assert report.status == "ok"
        assert report.problems == []
        assert report.worker.alive is True
        assert report.redis_memory.max_bytes is None
        assert report.redis_memory.used_fraction is None

    def test_dead_letters_are_counted_and_a_problem(self) -> None:
        report = assess(readings(dead_letters=3), NOW, stuck_after_seconds=600, ingest_limit=0.9)
        assert report.status == "degraded"
        assert report.events.dead_letters == 3
        assert report.problems == [
            "3 dead letters: events the worker could not process, set aside undelivered (see "
            "the worker's log); inspect, redrive or delete them (GET /api/dead-letters)"
        ]

    def test_no_heartbeat_is_degraded(self) -> None:
        report = assess(readings(heartbeat=None), NOW, stuck_after_seconds=600, ingest_limit=0.9)
        assert report.status == "degraded"
        assert report.worker.alive is False
        assert ["worker" in problem for problem in report.problems] == [True]

    def test_without_the_group_every_stored_event_is_undelivered(self) -> None:
        report = assess(
            readings(group_exists=False, lag=None), NOW, stuck_after_seconds=600, ingest_limit=0.9
        )
        assert report.events.undelivered == 10

    def test_an_entry_in_progress_past_the_limit_is_stuck(self) -> None:
        fine = readings(in_progress=3, oldest_in_progress=f"{NOW_MS - 600_000}-0")
        report = assess(fine, NOW, stuck_after_seconds=600, ingest_limit=0.9)
        assert report.status == "ok"
        assert report.events.oldest_in_progress_age_seconds == 600.0
        assert report.events.oldest_in_progress_at == "2026-03-03T09:50:00Z"
        stuck = readings(in_progress=3, oldest_in_progress=f"{NOW_MS - 600_001}-0")
        report = assess(stuck, NOW, stuck_after_seconds=600, ingest_limit=0.9)
        assert report.status == "degraded"
        assert "in progress for 600 s" in report.problems[0]

    @pytest.mark.parametrize(
        ("used", "problem"),
        [
            (799, None),
            (800, "80% of maxmemory: ingest answers 503 from INGEST_MEMORY_LIMIT (90%)"),
            (900, "90% of maxmemory, past INGEST_MEMORY_LIMIT (90%): ingest answers 503 until"),
            (1000, "100% of maxmemory, past INGEST_MEMORY_LIMIT"),
        ],
    )
    def test_memory_near_maxmemory_is_degraded(self, used: int, problem: str | None) -> None:
        report = assess(
            readings(used_memory=used, maxmemory=1000),
            NOW,
            stuck_after_seconds=600,
            ingest_limit=0.9,
        )
        assert report.redis_memory.used_fraction == used / 1000
        if problem is None:
            assert report.status == "ok"
        else:
            assert report.status == "degraded"
            [found] = report.problems
            assert problem in found

    def test_just_below_the_limit_is_below_it_as_ingest_sees_it(self) -> None:
        used, maxmemory = 8_999_999, 10_000_000  # 0.9 once rounded for the report
        report = assess(
            readings(used_memory=used, maxmemory=maxmemory),
            NOW,
            stuck_after_seconds=600,
            ingest_limit=0.9,
        )
        assert report.redis_memory.used_fraction == 0.9
        assert over_limit(used, maxmemory, 0.9) is False
        [problem] = report.problems
        assert "past INGEST_MEMORY_LIMIT" not in problem

    def test_an_ingest_limit_below_the_warning_warns_from_the_limit(self) -> None:
        report = assess(
            readings(used_memory=700, maxmemory=1000),
            NOW,
            stuck_after_seconds=600,
            ingest_limit=0.7,
        )
        assert "past INGEST_MEMORY_LIMIT (70%)" in report.problems[0]

    def test_entry_time(self) -> None:
        assert entry_time("1772532000000-7") == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


class TestUnread:
    def test_caught_up_by_ids_is_zero_whatever_redis_counts(self) -> None:
        assert unread(readings(lag=2899)) == 0
        assert unread(readings(lag=None, last_delivered="10-0")) == 0

    def test_behind_is_redis_count_bounded_by_the_stream(self) -> None:
        behind = {"last_delivered": "8-5", "last_entry": "9-0"}
        assert unread(readings(lag=3, **behind)) == 3
        assert unread(readings(lag=5000, **behind)) == 10  # never more than stored
        assert unread(readings(lag=0, **behind)) == 1  # behind means one at least
        assert unread(readings(lag=None, **behind)) is None  # Redis cannot tell

    def test_ids_compare_as_numbers_not_text(self) -> None:
        assert unread(readings(lag=4, last_delivered="9-10", last_entry="10-0")) == 4
        assert unread(readings(lag=4, last_delivered="10-0", last_entry="9-10")) == 0

    def test_no_group_means_everything_stored_and_an_empty_stream_nothing(self) -> None:
        assert unread(readings(group_exists=False, lag=None)) == 10
        assert unread(readings(stored=0, lag=None, last_entry=None, last_delivered=None)) == 0
