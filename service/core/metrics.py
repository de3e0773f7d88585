"""What the service counts, and how a count is kept and read back (pure).

Every process counts in memory (a `Tally`: a dict increment per event, no I/O on the hot
path); the stores flush each process's tally into one Redis hash once a second, and any web
process's `GET /metrics` reads that hash back, with gauges read from Redis at scrape time.
So one scrape sees every web and worker process (docs/operations.md#metrics).

A hash field is the family's key and its label values, `|`-separated, in the family's label
order: `deliveries|succeeded`. A histogram has a field per bucket, its upper bound last and
counted alone (not cumulative), and one for the sum: `delivery_latency_seconds|0.05`,
`delivery_latency_seconds|sum`. Label values are ours, never a caller's text: providers,
event types, outcomes, error kinds (and account ids only with METRICS_PER_ACCOUNT).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from service.core.event_types import EVENT_TYPES, QUALIFIED_PREFIX
from service.core.ids import entry_order
from service.core.models import Event
from service.core.outcome import ErrorKind, Verdict
from service.core.status import Readings, unread

PREFIX = "mailhooks_"
SEPARATOR = "|"
SUM = "sum"


class Kind(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"


@dataclass(frozen=True, slots=True, eq=False)  # identity: hashed per observation, cheaply
class Family:
    key: str  # its name without the prefix (and `_total`): the hash fields' first part
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # histograms: upper bounds, +Inf implied

    @property
    def name(self) -> str:
        """The Prometheus name: counters end in `_total` in the exposition."""
        return PREFIX + self.key


# Attempts end within DELIVERY_TIMEOUT (15 s by default, 300 s at most: +Inf).
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
# From ingest to the first success: milliseconds normally, hours when an endpoint was down
# (the retry schedule spans 31 hours by default).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0, 172800.0,
)  # fmt: skip

INBOUND_REQUESTS = Family(
    "inbound_requests",
    Kind.COUNTER,
    "Provider requests to the inbound URLs, by provider and outcome",
    ("provider", "outcome"),
)
INBOUND_EVENTS = Family(
    "inbound_events",
    Kind.COUNTER,
    "Provider events in accepted requests, by provider, canonical type and outcome",
    ("provider", "type", "outcome"),
)
DELIVERIES = Family(
    "deliveries",
    Kind.COUNTER,
    "Delivery outcomes recorded: one per attempt, and one per delivery abandoned unattempted",
    ("outcome",),
)
ATTEMPT_DURATION = Family(
    "delivery_attempt_duration_seconds",
    Kind.HISTOGRAM,
    "Time from sending a delivery request to its answer (or its error), by result",
    ("result",),
    ATTEMPT_BUCKETS,
)
DELIVERY_LATENCY = Family(
    "delivery_latency_seconds",
    Kind.HISTOGRAM,
    "Time from an event's ingest to its delivery's first success, retries included",
    (),
    LATENCY_BUCKETS,
)
WEBHOOKS_DISABLED = Family(
    "webhooks_disabled",
    Kind.COUNTER,
    "Webhooks disabled by the worker: gone (the endpoint answered 410), failing "
    "(nothing but failures for DISABLE_AFTER)",
    ("reason",),
)
ACCOUNT_INBOUND_EVENTS = Family(
    "account_inbound_events",
    Kind.COUNTER,
    "Inbound events routed to each account, stored or duplicate (METRICS_PER_ACCOUNT=true)",
    ("account", "outcome"),
)
ACCOUNT_DELIVERIES = Family(
    "account_deliveries",
    Kind.COUNTER,
    "Delivery outcomes by the webhook's account (METRICS_PER_ACCOUNT=true)",
    ("account", "outcome"),
)
# Counted in Redis, by the scripts and stores that already keep them.
UNREADABLE_EVENTS = Family(
    "unreadable_events",
    Kind.COUNTER,
    "Stream entries that were no event, acknowledged and skipped by the worker",
)

COUNTED: tuple[Family, ...] = (
    INBOUND_REQUESTS,
    INBOUND_EVENTS,
    DELIVERIES,
    ATTEMPT_DURATION,
    DELIVERY_LATENCY,
    WEBHOOKS_DISABLED,
)
PER_ACCOUNT: tuple[Family, ...] = (ACCOUNT_INBOUND_EVENTS, ACCOUNT_DELIVERIES)
BY_KEY: Mapping[str, Family] = {family.key: family for family in (*COUNTED, *PER_ACCOUNT)}

# Read at scrape time.
BACKLOG = Family(
    "backlog_events",
    Kind.GAUGE,
    "Stored events the delivery group has not finished: not read yet, or read and not "
    "acknowledged (absent when Redis cannot tell)",
)
IN_PROGRESS = Family(
    "events_in_progress", Kind.GAUGE, "Events read by a worker and not acknowledged yet"
)
OLDEST_UNDELIVERED = Family(
    "oldest_undelivered_seconds",
    Kind.GAUGE,
    "Age of the oldest event not acknowledged yet (0 when there is none); an entry is "
    "acknowledged once its deliveries succeeded, failed or were handed to a retry job",
)
EVENTS_STORED = Family("events_stored", Kind.GAUGE, "Entries in the events stream")
LANE_EVENTS = Family(
    "lane_events",
    Kind.GAUGE,
    "Events waiting in accounts' lanes: an account's backlog beyond what a worker holds, "
    "delivered in turn with every other account's (part of backlog_events)",
)
RETRIES_SCHEDULED = Family(
    "retries_scheduled",
    Kind.GAUGE,
    "Pending deliveries waiting for a later attempt: retries on the schedule, hand-offs from "
    "saturated endpoints",
)
RETRIES_DUE = Family(
    "retries_due",
    Kind.GAUGE,
    "Scheduled delivery attempts a second or more past their time, not started: above 0 for "
    "long, the worker is behind on retries",
)
DEAD_LETTERS = Family(
    "dead_letters", Kind.GAUGE, "Entries in the dead-letter streams (mh:events:dead)"
)
WORKER_UP = Family(
    "worker_up", Kind.GAUGE, "1 while some worker's heartbeat is fresh (under a minute old)"
)
REDIS_USED = Family("redis_memory_used_bytes", Kind.GAUGE, "Redis used_memory")
REDIS_MAX = Family("redis_memory_max_bytes", Kind.GAUGE, "Redis maxmemory (0: no limit)")

GAUGES: tuple[Family, ...] = (
    BACKLOG,
    IN_PROGRESS,
    LANE_EVENTS,
    OLDEST_UNDELIVERED,
    EVENTS_STORED,
    RETRIES_SCHEDULED,
    RETRIES_DUE,
    DEAD_LETTERS,
    WORKER_UP,
    REDIS_USED,
    REDIS_MAX,
)


# -- the outcomes (docs/operations.md#metrics lists them) ----------------------------------


class RequestOutcome(StrEnum):
    """What became of one inbound request: `accepted` (200), or why not."""

    ACCEPTED = "accepted"
    PROBE = "probe"  # 200: the provider checking that the URL answers (no event)
    INVALID_SIGNATURE = "invalid_signature"  # 401
    INVALID_PAYLOAD = "invalid_payload"  # 400/422: not JSON, not the provider's format
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    TOO_LARGE = "too_large"  # 413
    TIMEOUT = "timeout"  # 408: the body did not arrive within READ_TIMEOUT
    STORE_FULL = "store_full"  # 503: Redis past INGEST_MEMORY_LIMIT, or full
    STORE_UNAVAILABLE = "store_unavailable"  # 503: Redis down, silent or past INGEST_TIMEOUT
    ERROR = "error"  # anything else (a 500 is a bug)


_REQUEST_OUTCOMES = {
    "invalid_signature": RequestOutcome.INVALID_SIGNATURE,
    "unauthorized": RequestOutcome.INVALID_SIGNATURE,
    "invalid_payload": RequestOutcome.INVALID_PAYLOAD,
    "validation_error": RequestOutcome.INVALID_PAYLOAD,
    "malformed_json": RequestOutcome.INVALID_PAYLOAD,
    "unsupported_media_type": RequestOutcome.UNSUPPORTED_MEDIA_TYPE,
    "payload_too_large": RequestOutcome.TOO_LARGE,
    "request_timeout": RequestOutcome.TIMEOUT,
    "store_full": RequestOutcome.STORE_FULL,
    "store_unavailable": RequestOutcome.STORE_UNAVAILABLE,
}


def request_outcome(error_code: str) -> RequestOutcome:
    """The outcome of an inbound request refused with `error_code` (the JSON error's)."""
    return _REQUEST_OUTCOMES.get(error_code, RequestOutcome.ERROR)


class EventOutcome(StrEnum):
    """What became of one provider event in an accepted request (each counted once)."""

    STORED = "stored"  # stored for an account, to be delivered to its webhooks
    DUPLICATE = "duplicate"  # a provider's retry of an event stored before
    UNROUTED = "unrouted"  # stored for no account (docs/accounts.md): delivered to nobody
    IGNORED = "ignored"  # no canonical type (processed, deferred, …): accepted, not stored


class DeliveryOutcome(StrEnum):
    """One recorded delivery outcome. `succeeded`, `failed`, `gone`, `disabled` and
    `abandoned` end a delivery; `failed_retrying` is an attempt that failed with another
    one scheduled; `lost` an outcome not recorded because another worker held the lease."""

    SUCCEEDED = "succeeded"
    FAILED_RETRYING = "failed_retrying"
    FAILED = "failed"  # the schedule spent, or an address deliveries never reach
    GONE = "gone"  # 410: the webhook is disabled
    DISABLED = "disabled"  # this failure disabled the webhook (failing for DISABLE_AFTER)
    ABANDONED = "abandoned"  # not attempted: webhook deleted or disabled, event expired
    LOST = "lost"


_BY_VERDICT = {
    Verdict.SUCCEEDED: DeliveryOutcome.SUCCEEDED,
    Verdict.RETRY: DeliveryOutcome.FAILED_RETRYING,
    Verdict.FAILED: DeliveryOutcome.FAILED,
    Verdict.GONE: DeliveryOutcome.GONE,
    Verdict.ABANDONED: DeliveryOutcome.ABANDONED,
}


def delivery_outcome(verdict: Verdict, status: str) -> DeliveryOutcome:
    """The outcome of recording `verdict`, given the status the record script answered."""
    if status == "lost":
        return DeliveryOutcome.LOST
    if status == "disabled" and verdict is not Verdict.GONE:  # a 410 that disabled is gone
        return DeliveryOutcome.DISABLED
    return _BY_VERDICT[verdict]


def attempt_result(status_code: int | None, error: ErrorKind | None) -> str:
    """An attempt's result label: the status class (`2xx` … `5xx`) or the error kind."""
    if status_code is not None:
        return _STATUS_CLASSES.get(status_code // 100, "other")
    return str(error) if error is not None else "other"


_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_SHORT_TYPES = frozenset(EVENT_TYPES)


def event_type_label(event_type: str) -> str:
    """`email.open` → `open`; anything not a canonical type → `other` (bounded)."""
    short = event_type.removeprefix(QUALIFIED_PREFIX)
    return short if short in _SHORT_TYPES else "other"


# -- counting ------------------------------------------------------------------------------


def field_name(family_key: str, *parts: str) -> str:
    """The hash field of a count: `deliveries|succeeded`."""
    return SEPARATOR.join((family_key, *parts))


def _histogram_fields(family: Family, labels: tuple[str, ...]) -> tuple[str, ...]:
    """A histogram's fields for one label set: one per bucket (+Inf last), then the sum's."""
    bounds = [repr(bound) for bound in family.buckets] + ["+Inf"]
    return (
        *(field_name(family.key, *labels, b) for b in bounds),
        field_name(family.key, *labels, SUM),
    )


# Built once per label value rather than per observation: the worker observes two
# histograms per delivery.
_LATENCY_FIELDS = _histogram_fields(DELIVERY_LATENCY, ())
_ATTEMPT_FIELDS: dict[str, tuple[str, ...]] = {}


_DELIVERY_FIELDS = {outcome: field_name(DELIVERIES.key, outcome) for outcome in DeliveryOutcome}


@dataclass(slots=True)
class Tally:
    """One process's counts since its last flush. Updating it is a dict increment: no I/O,
    no lock (one event loop per process)."""

    per_account: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, amount: int = 1) -> None:
        counts = self.counts
        counts[name] = counts.get(name, 0) + amount

    def _observe(self, names: tuple[str, ...], buckets: tuple[float, ...], value: float) -> None:
        self.add(names[bisect.bisect_left(buckets, value)])
        sums, name = self.sums, names[-1]
        sums[name] = sums.get(name, 0.0) + value

    def take(self) -> tuple[dict[str, int], dict[str, float]]:
        """Everything counted so far, leaving the tally empty (to flush it)."""
        counts, sums = self.counts, self.sums
        self.counts, self.sums = {}, {}
        return counts, sums

    def restore(self, counts: Mapping[str, int], sums: Mapping[str, float]) -> None:
        """Put back what a failed flush took: it goes with the next one."""
        for name, amount in counts.items():
            self.add(name, amount)
        for name, value in sums.items():
            self.sums[name] = self.sums.get(name, 0.0) + value

    def __bool__(self) -> bool:
        return bool(self.counts or self.sums)

    # The service's own counts.

    def inbound_request(self, provider: str, outcome: RequestOutcome) -> None:
        self.add(field_name(INBOUND_REQUESTS.key, provider, outcome))

    def inbound_events(
        self, provider: str, events: Sequence[Event], new: Sequence[bool], ignored: int
    ) -> None:
        """`new[i]`: whether `events[i]` was stored now (else a duplicate)."""
        # A batch (SendGrid's hold up to 1,000) is tallied by type and outcome first: one
        # field name per distinct pair rather than per event.
        seen: dict[tuple[str, EventOutcome], int] = {}
        for event, stored in zip(events, new, strict=True):
            account = event.account_id
            if not stored:
                outcome = EventOutcome.DUPLICATE
            elif account is None:
                outcome = EventOutcome.UNROUTED
            else:
                outcome = EventOutcome.STORED
            pair = (event.type, outcome)
            seen[pair] = seen.get(pair, 0) + 1
            if self.per_account and account is not None:
                self.add(field_name(ACCOUNT_INBOUND_EVENTS.key, account, outcome))
        for (type_, outcome), count in seen.items():
            self.add(
                field_name(INBOUND_EVENTS.key, provider, event_type_label(type_), outcome), count
            )
        if ignored:
            self.add(
                field_name(INBOUND_EVENTS.key, provider, "none", EventOutcome.IGNORED), ignored
            )

    def attempt(self, result: str, seconds: float) -> None:
        names = _ATTEMPT_FIELDS.get(result)
        if names is None:  # results are a few status classes and error kinds
            names = _ATTEMPT_FIELDS[result] = _histogram_fields(ATTEMPT_DURATION, (result,))
        self._observe(names, ATTEMPT_BUCKETS, seconds)

    def delivery(
        self, outcome: DeliveryOutcome, *, account: str | None, latency: float | None = None
    ) -> None:
        """One outcome recorded; `latency`: ingest to this success, for a success."""
        self.add(_DELIVERY_FIELDS[outcome])
        if self.per_account and account is not None:
            self.add(field_name(ACCOUNT_DELIVERIES.key, account, outcome))
        if latency is not None:
            self._observe(_LATENCY_FIELDS, LATENCY_BUCKETS, max(0.0, latency))


# -- reading back ----------------------------------------------------------------------------


@dataclass(slots=True)
class Histogram:
    """One label set's buckets as stored: upper bound → count at that bound alone."""

    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0

    def cumulative(self, bounds: Iterable[float]) -> list[tuple[float, float]]:
        """(upper bound, count at or below it) for each of `bounds` and any stored, +Inf last."""
        every = sorted({*bounds, *self.buckets, math.inf})
        running = 0.0
        out = []
        for bound in every:
            running += self.buckets.get(bound, 0.0)
            out.append((bound, running))
        return out


@dataclass(slots=True)
class Values:
    """A family's samples as read back: label values → value (counters, gauges) or
    histogram."""

    family: Family
    samples: dict[tuple[str, ...], float] = field(default_factory=dict)
    histograms: dict[tuple[str, ...], Histogram] = field(default_factory=dict)


def read_counts(raw: Mapping[str, str], *, per_account: bool) -> dict[str, Values]:
    """The counted families from the hash's fields (keyed by family key). Fields of unknown
    families or of another shape (an older or newer version's) are skipped; per-account
    families only with `per_account`."""
    families = [*COUNTED, *(PER_ACCOUNT if per_account else ())]
    values = {family.key: Values(family) for family in families}
    for name, text in raw.items():
        key, _, rest = name.partition(SEPARATOR)
        found = values.get(key)
        if found is None:
            continue
        family = found.family
        parts = tuple(rest.split(SEPARATOR)) if rest else ()
        try:
            number = float(text)
        except ValueError:
            continue
        if family.kind is Kind.HISTOGRAM:
            if len(parts) != len(family.labels) + 1:
                continue
            labels, last = parts[:-1], parts[-1]
            histogram = found.histograms.setdefault(labels, Histogram())
            if last == SUM:
                histogram.sum = number
                continue
            try:
                bound = float(last)
            except ValueError:
                continue
            histogram.buckets[bound] = number
        elif len(parts) == len(family.labels):
            found.samples[parts] = number
    return values


# -- the gauges ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a scrape read from Redis."""

    counts: Mapping[str, str]  # the metrics hash
    readings: Readings
    retries_scheduled: int
    retries_due: int
    dead_letters: int
    # The entry id of the oldest event not read yet, if any (of every partition's stream).
    first_unread: str | None


def gauge_values(snapshot: Snapshot, now: datetime) -> list[Values]:
    """Each gauge's value (a gauge Redis cannot give is absent, not 0)."""
    readings = snapshot.readings
    unread_count = unread(readings)
    # The older of the two: with one stream, any entry in progress is older than the first
    # unread; of several partitions' streams, either may be.
    candidates = [readings.oldest_in_progress] if readings.in_progress else []
    if unread_count != 0:
        candidates.append(snapshot.first_unread)
    if readings.in_lanes:
        candidates.append(readings.oldest_in_lane)
    oldest = min((c for c in candidates if c is not None), key=entry_order, default=None)
    oldest_age = 0.0
    if oldest is not None:
        oldest_age = max(0.0, now.timestamp() - entry_order(oldest)[0] / 1000)
    found: dict[Family, float | None] = {
        BACKLOG: (
            None
            if unread_count is None
            else unread_count + readings.in_progress + readings.in_lanes
        ),
        LANE_EVENTS: readings.in_lanes,
        IN_PROGRESS: readings.in_progress,
        OLDEST_UNDELIVERED: round(oldest_age, 3),
        EVENTS_STORED: readings.stored,
        RETRIES_SCHEDULED: snapshot.retries_scheduled,
        RETRIES_DUE: snapshot.retries_due,
        DEAD_LETTERS: snapshot.dead_letters,
        WORKER_UP: 0 if readings.heartbeat is None else 1,
        REDIS_USED: readings.used_memory,
        REDIS_MAX: readings.maxmemory,
    }
    values = []
    for family in GAUGES:
        value = found[family]
        entry = Values(family)
        if value is not None:
            entry.samples[()] = float(value)
        values.append(entry)
    unreadable = Values(UNREADABLE_EVENTS)
    unreadable.samples[()] = float(readings.unreadable)
    values.append(unreadable)
    return values
