"""A webhook's last 24 hours as bars, one an hour: the geometry of the server-rendered SVG
(pure; the template draws it). Counts come from the delivery indexes by creation time
(DeliveryStore.finished_counts): 48 ZLEXCOUNTs a webhook, whatever its traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.core.ids import epoch_ms

HOURS = 24
WIDTH = 480
PLOT_HEIGHT = 100
BAR_GAP = 2


def hourly_edges(now: datetime, hours: int = HOURS) -> list[int]:
    """`hours + 1` edges in ms: whole hours, the last one the end of the current hour."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return [epoch_ms(end - timedelta(hours=hours - i)) for i in range(hours + 1)]


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    succeeded: int
    failed: int
    succeeded_y: float
    succeeded_height: float
    failed_y: float
    failed_height: float
    label: str  # for the bar's <title>: "09:00 UTC: 3 succeeded, 1 failed"


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    succeeded: int
    failed: int
    peak: int
    width: int = WIDTH
    plot_height: int = PLOT_HEIGHT

    @property
    def summary(self) -> str:
        return f"Last 24 hours: {self.succeeded} succeeded, {self.failed} failed"


def hourly_chart(edges_ms: list[int], succeeded: list[int], failed: list[int]) -> Chart:
    """Stacked bars (failures on top) scaled to the busiest hour."""
    peak = max((s + f for s, f in zip(succeeded, failed, strict=True)), default=0)
    scale = PLOT_HEIGHT / max(peak, 1)
    step = WIDTH / len(succeeded)
    bars = []
    for i, (ok, bad) in enumerate(zip(succeeded, failed, strict=True)):
        ok_height, bad_height = ok * scale, bad * scale
        start = datetime.fromtimestamp(edges_ms[i] / 1000, UTC)
        bars.append(
            Bar(
                x=round(i * step + BAR_GAP / 2, 2),
                width=round(step - BAR_GAP, 2),
                succeeded=ok,
                failed=bad,
                succeeded_y=round(PLOT_HEIGHT - ok_height, 2),
                succeeded_height=round(ok_height, 2),
                failed_y=round(PLOT_HEIGHT - ok_height - bad_height, 2),
                failed_height=round(bad_height, 2),
                label=f"{start:%H:%M} UTC: {ok} succeeded, {bad} failed",
            )
        )
    return Chart(bars=bars, succeeded=sum(succeeded), failed=sum(failed), peak=peak)
