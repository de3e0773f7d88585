"""The 24-hour chart's geometry (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from service.core.ids import epoch_ms
from service.http.portal.chart import PLOT_HEIGHT, WIDTH, hourly_chart, hourly_edges


class TestEdges:
    def test_whole_hours_ending_with_the_current_one(self) -> None:
        edges = hourly_edges(datetime(2026, 3, 3, 10, 25, 7, tzinfo=UTC))
        assert len(edges) == 25
        assert edges[-1] == epoch_ms(datetime(2026, 3, 3, 11, tzinfo=UTC))
        assert edges[0] == epoch_ms(datetime(2026, 3, 2, 11, tzinfo=UTC))
        assert {b - a for a, b in itertools.pairwise(edges)} == {3_600_000}


class TestChart:
    def test_bars_stack_failures_on_successes_scaled_to_the_busiest_hour(self) -> None:
        edges = hourly_edges(datetime(2026, 3, 3, 10, tzinfo=UTC))
        succeeded, failed = [0] * 24, [0] * 24
        succeeded[3], failed[3], succeeded[23] = 6, 2, 4
        chart = hourly_chart(edges, succeeded, failed)
        assert (chart.succeeded, chart.failed, chart.peak) == (10, 2, 8)
        assert chart.summary == "Last 24 hours: 10 succeeded, 2 failed"
        busiest, last = chart.bars[3], chart.bars[23]
        assert busiest.succeeded_height + busiest.failed_height == PLOT_HEIGHT
        assert busiest.failed_y == 0
        assert busiest.succeeded_y == busiest.failed_height == PLOT_HEIGHT / 4
        assert last.succeeded_height == PLOT_HEIGHT / 2
        assert last.x + last.width < WIDTH
        assert busiest.label == "14:00 UTC: 6 succeeded, 2 failed"

    def test_an_empty_day_draws_nothing(self) -> None:
        chart = hourly_chart(hourly_edges(datetime(2026, 3, 3, tzinfo=UTC)), [0] * 24, [0] * 24)
        assert chart.peak == 0
        assert all(bar.succeeded_height == bar.failed_height == 0 for bar in chart.bars)
