"""GET /metrics: the whole deployment's figures in Prometheus' text format.

Every web and worker process adds its counts to Redis once a second, so whichever web
process answers shows them all (Heroku's router cannot scrape dynos one by one, and workers
have no port); the gauges are read from Redis now. Asks for `METRICS_TOKEN` as a Bearer
token when it is set. Metrics and their labels: docs/operations.md#metrics.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable, Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.errors import Unauthorized
from service.core.ids import epoch_ms
from service.core.metrics import Kind, Values, gauge_values, read_counts
from service.http.state import app_state
from service.storage.deliveries import lease_ms

# The classic text format (0.0.4), which every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def check_token(request: Request, token: str) -> None:
    """Nothing to check without METRICS_TOKEN; else its Bearer token, in constant time."""
    if not token:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    valid = hmac.compare_digest(presented.strip().encode(), token.encode())
    if scheme.lower() != "bearer" or not valid:
        raise Unauthorized("send METRICS_TOKEN as Authorization: Bearer <token>")


async def metrics(request: Request) -> Response:
    state = app_state(request)
    check_token(request, state.config.metrics_token)
    await state.metrics.flush()  # this process's counts, up to now
    now = state.clock()
    snapshot = await state.metrics.store.snapshot(epoch_ms(now), lease_ms=lease_ms(state.config))
    counted = read_counts(snapshot.counts, per_account=state.config.metrics_per_account)
    families = [*counted.values(), *gauge_values(snapshot, now)]
    return Response(render(families), media_type=CONTENT_TYPE)


def render(families: Iterable[Values]) -> bytes:
    return generate_latest(_Families([metric_family(values) for values in families]))


def metric_family(values: Values) -> Metric:
    family = values.family
    labels = list(family.labels)
    if family.kind is Kind.HISTOGRAM:
        histogram = HistogramMetricFamily(family.name, family.help, labels=labels)
        for label_values, found in sorted(values.histograms.items()):
            buckets = [(_bound(bound), count) for bound, count in found.cumulative(family.buckets)]
            histogram.add_metric(list(label_values), buckets, found.sum)
        return histogram
    metric: CounterMetricFamily | GaugeMetricFamily
    if family.kind is Kind.COUNTER:
        metric = CounterMetricFamily(family.name, family.help, labels=labels)
    else:
        metric = GaugeMetricFamily(family.name, family.help, labels=labels)
    for label_values, value in sorted(values.samples.items()):
        metric.add_metric(list(label_values), value)
    return metric


def _bound(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


class _Families(Collector):
    """Families built for one scrape, as prometheus_client's exposition wants them."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


routes = [Route("/metrics", metrics, methods=["GET"])]
