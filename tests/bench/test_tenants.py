"""The tenant-isolation benchmark's pure helpers (bench/tenants.py): latencies, their
summary, the goal and the wrk script. The benchmark itself runs in `make bench`, not here."""

from __future__ import annotations

import json
import math

import pytest

from bench.tenants import (
    backlog_script,
    jsonable,
    latencies_ms,
    percentile,
    summarize,
    verdict,
)


class TestLatenciesMs:
    def test_first_arrival_minus_send_time(self) -> None:
        sent = {"b-0": 100.0, "b-1": 100.05}
        seen = [("b-1", 100.07), ("b-0", 100.01), ("b-0", 100.5)]  # b-0 delivered twice
        assert latencies_ms(sent, seen) == pytest.approx([10.0, 20.0])

    def test_an_event_never_arrived_is_infinitely_late(self) -> None:
        assert latencies_ms({"b-0": 1.0, "b-1": 2.0}, [("b-0", 1.002)]) == [
            pytest.approx(2.0),
            math.inf,
        ]

    def test_arrivals_of_other_events_are_ignored(self) -> None:
        assert latencies_ms({"b-0": 1.0}, [("warm-0", 0.5), ("a-7", 1.1)]) == [math.inf]


class TestSummarize:
    def test_percentiles_over_every_sent_event(self) -> None:
        summary = summarize([float(n) for n in range(1, 101)])
        assert summary == {
            "sent": 100,
            "delivered": 100,
            "p50_ms": 50.0,
            "p99_ms": 99.0,
            "max_ms": 100.0,
        }

    def test_two_lost_events_of_a_hundred_make_p99_unbounded(self) -> None:
        summary = summarize([5.0] * 98 + [math.inf] * 2)
        assert summary["delivered"] == 98
        assert summary["p50_ms"] == 5.0
        assert summary["p99_ms"] == math.inf

    def test_nothing_sent(self) -> None:
        summary = summarize([])
        assert summary["sent"] == 0
        assert math.isnan(summary["p99_ms"])


class TestVerdict:
    def test_within_twice_alone_and_under_100_ms_is_met(self) -> None:
        judged = verdict(20.0, 39.0)
        assert (judged.ratio, judged.within_ratio, judged.under_p99, judged.met) == (
            pytest.approx(1.95),
            True,
            True,
            True,
        )

    def test_more_than_twice_alone_is_missed_even_under_100_ms(self) -> None:
        judged = verdict(10.0, 25.0)
        assert (judged.within_ratio, judged.under_p99, judged.met) == (False, True, False)

    def test_100_ms_or_more_is_missed_even_within_twice(self) -> None:
        judged = verdict(60.0, 100.0)
        assert (judged.within_ratio, judged.under_p99, judged.met) == (True, False, False)

    def test_never_delivered_is_missed(self) -> None:
        judged = verdict(20.0, math.inf)
        assert judged.ratio == math.inf
        assert not judged.met


def test_jsonable_writes_unbounded_figures_as_null() -> None:
    row = jsonable({"p99_ms": math.inf, "p50_ms": 3.5, "sent": 160, "max_ms": math.nan})
    assert json.loads(json.dumps(row, allow_nan=False)) == {
        "p99_ms": None,
        "p50_ms": 3.5,
        "sent": 160,
        "max_ms": None,
    }


def test_backlog_script_splits_the_events_over_the_threads() -> None:
    script = backlog_script("acc_a", "t1", 50_000, threads=2, connections=50)
    assert "math.min(sent, 25000)" in script  # each thread's share of unique bodies
    assert "answered == 25050" in script  # two answers per connection past it
    assert '"account_id":"acc_a"' in script


class TestPercentile:
    @pytest.mark.parametrize(
        ("pct", "expected"), [(50, 50.0), (99, 99.0), (99.5, 100.0), (100, 100.0), (0, 1.0)]
    )
    def test_nearest_rank_of_one_to_a_hundred(self, pct: float, expected: float) -> None:
        assert percentile([float(n) for n in range(100, 0, -1)], pct) == expected

    def test_p99_of_600_is_the_594th(self) -> None:
        assert percentile([float(n) for n in range(1, 601)], 99) == 594.0

    def test_an_unbounded_value_sorts_last(self) -> None:
        assert percentile([math.inf, 1.0, 2.0], 50) == 2.0
        assert percentile([math.inf, 1.0, 2.0], 99) == math.inf

    def test_nothing_is_nan(self) -> None:
        assert math.isnan(percentile([], 50))
