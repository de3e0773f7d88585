"""service.core.metrics: what is counted, under which labels, and how it reads back."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.metrics import (
    ATTEMPT_DURATION,
    BY_KEY,
    COUNTED,
    DELIVERY_LATENCY,
    GAUGES,
    PER_ACCOUNT,
    DeliveryOutcome,
    Histogram,
    Kind,
    RequestOutcome,
    Snapshot,
    Tally,
    attempt_result,
    delivery_outcome,
    event_type_label,
    gauge_values,
    read_counts,
    request_outcome,
)
from service.core.outcome import ErrorKind, Verdict
from tests.core.test_status import NOW, NOW_MS, readings
from tests.storage.test_events import event


def read_back(
    tally: Tally, *, per_account: bool = False
) -> dict[str, dict[tuple[str, ...], float]]:
    """The tally as a scrape would read it from Redis: counters' samples by family key."""
    counts, sums = tally.take()
    raw = {name: str(value) for name, value in {**counts, **sums}.items()}
    values = read_counts(raw, per_account=per_account)
    return {key: found.samples for key, found in values.items() if found.samples}


class TestFamilies:
    def test_names_follow_prometheus_conventions(self) -> None:
        for family in (*COUNTED, *PER_ACCOUNT, *GAUGES):
            assert family.name.startswith("mailhooks_")
            assert not family.name.endswith("_total")  # the exposition adds it to counters
            if family.kind is Kind.HISTOGRAM:
                assert family.name.endswith("_seconds")
                assert list(family.buckets) == sorted(family.buckets)

    def test_no_label_can_grow_without_bound(self) -> None:
        # Webhook ids, URLs and (by default) accounts are never labels.
        bounded = {"provider", "outcome", "type", "result", "reason"}
        for family in (*COUNTED, *GAUGES):
            assert set(family.labels) <= bounded, family.name
        for family in PER_ACCOUNT:
            assert set(family.labels) == {"account", "outcome"}

    def test_keys_are_unique(self) -> None:
        assert len(BY_KEY) == len(COUNTED) + len(PER_ACCOUNT)


class TestTally:
    def test_counts_add_up_until_taken(self) -> None:
        tally = Tally()
        tally.inbound_request("generic", RequestOutcome.ACCEPTED)
        tally.inbound_request("generic", RequestOutcome.ACCEPTED)
        tally.inbound_request("sendgrid", RequestOutcome.INVALID_SIGNATURE)
        assert read_back(tally) == {
            "inbound_requests": {
                ("generic", "accepted"): 2.0,
                ("sendgrid", "invalid_signature"): 1.0,
            }
        }
        assert not tally
        assert read_back(tally) == {}

    def test_what_a_failed_flush_took_goes_with_the_next(self) -> None:
        tally = Tally()
        tally.delivery(DeliveryOutcome.SUCCEEDED, account=None, latency=0.5)
        counts, sums = tally.take()
        tally.delivery(DeliveryOutcome.SUCCEEDED, account=None, latency=1.5)
        tally.restore(counts, sums)
        assert tally.counts["deliveries|succeeded"] == 2
        assert tally.sums["delivery_latency_seconds|sum"] == 2.0

    def test_each_event_counts_once_by_type_and_outcome(self) -> None:
        tally = Tally()
        events = [
            event(1, type="email.open"),
            event(2, type="email.open"),
            event(3, type="email.bounce", account_id=None),
            event(4, type="email.click"),
        ]
        tally.inbound_events("sendgrid", events, [True, False, True, True], ignored=2)
        assert read_back(tally) == {
            "inbound_events": {
                ("sendgrid", "open", "stored"): 1.0,
                ("sendgrid", "open", "duplicate"): 1.0,
                ("sendgrid", "bounce", "unrouted"): 1.0,
                ("sendgrid", "click", "stored"): 1.0,
                ("sendgrid", "none", "ignored"): 2.0,
            }
        }

    def test_accounts_are_labels_only_when_asked_for(self) -> None:
        for per_account in (False, True):
            tally = Tally(per_account=per_account)
            events = [event(1, account_id="acc_1"), event(2, account_id="acc_1"), event(3)]
            tally.inbound_events("generic", events, [True, False, True], ignored=0)
            tally.delivery(DeliveryOutcome.SUCCEEDED, account="acc_1")
            found = read_back(tally, per_account=True)
            if not per_account:
                assert set(found) == {"inbound_events", "deliveries"}
                continue
            assert found["account_inbound_events"] == {
                ("acc_1", "stored"): 1.0,
                ("acc_1", "duplicate"): 1.0,
                (DEFAULT_ACCOUNT, "stored"): 1.0,
            }
            assert found["account_deliveries"] == {("acc_1", "succeeded"): 1.0}

    def test_per_account_counts_are_not_shown_without_the_flag(self) -> None:
        tally = Tally(per_account=True)
        tally.delivery(DeliveryOutcome.FAILED, account="acc_1")
        assert set(read_back(tally, per_account=False)) == {"deliveries"}

    @pytest.mark.parametrize(
        ("value", "bucket"),
        [(0.0, 0.005), (0.005, 0.005), (0.0051, 0.01), (30.0, 30.0), (31.0, math.inf)],
    )
    def test_an_observation_lands_in_the_first_bucket_at_or_above_it(
        self, value: float, bucket: float
    ) -> None:
        tally = Tally()
        tally.attempt("2xx", value)
        counts, sums = tally.take()
        raw = {name: str(n) for name, n in {**counts, **sums}.items()}
        [histogram] = read_counts(raw, per_account=False)[ATTEMPT_DURATION.key].histograms.values()
        assert histogram.buckets == {bucket: 1.0}
        assert histogram.sum == value


class TestReadingBack:
    def test_histograms_read_back_cumulative_with_every_bound(self) -> None:
        tally = Tally()
        for latency in (0.003, 0.02, 0.02, 4000.0):
            tally.delivery(DeliveryOutcome.SUCCEEDED, account=None, latency=latency)
        counts, sums = tally.take()
        raw = {name: str(n) for name, n in {**counts, **sums}.items()}
        histogram = read_counts(raw, per_account=False)[DELIVERY_LATENCY.key].histograms[()]
        cumulative = dict(histogram.cumulative(DELIVERY_LATENCY.buckets))
        assert list(cumulative) == [*DELIVERY_LATENCY.buckets, math.inf]
        assert cumulative[0.005] == 1
        assert cumulative[0.025] == 3
        assert cumulative[3600.0] == 3
        assert cumulative[7200.0] == 4
        assert cumulative[math.inf] == 4
        assert histogram.sum == pytest.approx(4000.043)

    def test_fields_of_another_shape_are_skipped(self) -> None:
        raw = {
            "deliveries|succeeded": "3",
            "deliveries|succeeded|extra": "1",  # a label too many
            "deliveries": "1",  # too few
            "some_future_family|x": "1",
            "inbound_requests|generic|accepted": "not a number",
            "delivery_latency_seconds|lots": "1",
            "webhooks_disabled|gone": "2",  # counted by the record script
        }
        values = read_counts(raw, per_account=False)
        assert values["deliveries"].samples == {("succeeded",): 3.0}
        assert values["inbound_requests"].samples == {}
        assert values["delivery_latency_seconds"].histograms == {(): Histogram()}
        assert values["webhooks_disabled"].samples == {("gone",): 2.0}


class TestOutcomes:
    @pytest.mark.parametrize(
        ("verdict", "status", "outcome"),
        [
            (Verdict.SUCCEEDED, "succeeded", "succeeded"),
            (Verdict.RETRY, "pending", "failed_retrying"),
            (Verdict.RETRY, "disabled", "disabled"),
            (Verdict.FAILED, "failed", "failed"),
            (Verdict.GONE, "failed", "gone"),
            (Verdict.GONE, "disabled", "gone"),  # the 410 that disabled the webhook
            (Verdict.ABANDONED, "failed", "abandoned"),
            (Verdict.SUCCEEDED, "lost", "lost"),
        ],
    )
    def test_delivery_outcome(self, verdict: Verdict, status: str, outcome: str) -> None:
        assert delivery_outcome(verdict, status) == outcome

    @pytest.mark.parametrize(
        ("status_code", "error", "result"),
        [
            (200, None, "2xx"),
            (204, None, "2xx"),
            (302, None, "3xx"),
            (410, ErrorKind.HTTP_STATUS, "4xx"),
            (503, None, "5xx"),
            (999, None, "other"),
            (None, ErrorKind.TIMEOUT, "timeout"),
            (None, ErrorKind.CONNECT_ERROR, "connect_error"),
            (None, None, "other"),
        ],
    )
    def test_attempt_result(
        self, status_code: int | None, error: ErrorKind | None, result: str
    ) -> None:
        assert attempt_result(status_code, error) == result

    @pytest.mark.parametrize(
        ("code", "outcome"),
        [
            ("invalid_signature", "invalid_signature"),
            ("invalid_payload", "invalid_payload"),
            ("malformed_json", "invalid_payload"),
            ("validation_error", "invalid_payload"),
            ("unsupported_media_type", "unsupported_media_type"),
            ("payload_too_large", "too_large"),
            ("request_timeout", "timeout"),
            ("store_full", "store_full"),
            ("store_unavailable", "store_unavailable"),
            ("internal_error", "error"),
        ],
    )
    def test_request_outcome(self, code: str, outcome: str) -> None:
        assert request_outcome(code) == outcome

    def test_event_types_are_the_canonical_short_names(self) -> None:
        assert event_type_label("email.open") == "open"
        assert event_type_label("bounce") == "bounce"
        assert event_type_label("email.sent") == "other"  # never the caller's text


def snapshot(**overrides: object) -> Snapshot:
    values: dict[str, object] = {
        "counts": {},
        "readings": readings(),
        "retries_scheduled": 4,
        "retries_due": 1,
        "dead_letters": 2,
        "first_unread": None,
        **overrides,
    }
    return Snapshot(**values)  # type: ignore[arg-type]


def gauges(found: Snapshot) -> dict[str, float | None]:
    return {values.family.name: values.samples.get(()) for values in gauge_values(found, NOW)}


class TestGauges:
    def test_a_worker_keeping_up(self) -> None:
        assert gauges(snapshot()) == {
            "mailhooks_backlog_events": 0.0,
            "mailhooks_events_in_progress": 0.0,
            "mailhooks_lane_events": 0.0,
            "mailhooks_oldest_undelivered_seconds": 0.0,
            "mailhooks_events_stored": 10.0,
            "mailhooks_retries_scheduled": 4.0,
            "mailhooks_retries_due": 1.0,
            "mailhooks_dead_letters": 2.0,
            "mailhooks_worker_up": 1.0,
            "mailhooks_redis_memory_used_bytes": 1_000_000.0,
            "mailhooks_redis_memory_max_bytes": 0.0,
            "mailhooks_unreadable_events": 0.0,
        }

    def test_the_oldest_undelivered_is_the_oldest_in_progress(self) -> None:
        found = snapshot(
            readings=readings(
                in_progress=2,
                oldest_in_progress=f"{NOW_MS - 90_000}-0",
                lag=3,
                last_delivered="8-0",
            ),
            first_unread=f"{NOW_MS - 1_000}-0",
        )
        values = gauges(found)
        assert values["mailhooks_backlog_events"] == 5.0
        assert values["mailhooks_events_in_progress"] == 2.0
        assert values["mailhooks_oldest_undelivered_seconds"] == 90.0

    def test_else_the_first_event_not_read_yet(self) -> None:
        found = snapshot(
            readings=readings(lag=3, last_delivered="8-0", heartbeat=None),
            first_unread=f"{NOW_MS - 12_500}-0",
        )
        values = gauges(found)
        assert values["mailhooks_backlog_events"] == 3.0
        assert values["mailhooks_oldest_undelivered_seconds"] == 12.5
        assert values["mailhooks_worker_up"] == 0.0

    def test_events_waiting_in_lanes_are_backlog_and_the_oldest_may_be_theirs(self) -> None:
        found = snapshot(
            readings=readings(
                in_progress=1,
                oldest_in_progress=f"{NOW_MS - 2_000}-0",
                in_lanes=40,
                oldest_in_lane=f"{NOW_MS - 60_000}-3",
            )
        )
        values = gauges(found)
        assert values["mailhooks_lane_events"] == 40.0
        assert values["mailhooks_backlog_events"] == 41.0
        assert values["mailhooks_oldest_undelivered_seconds"] == 60.0

    def test_a_backlog_redis_cannot_count_is_absent_not_zero(self) -> None:
        found = snapshot(readings=readings(lag=None, last_delivered="8-0"))
        assert gauges(found)["mailhooks_backlog_events"] is None

    def test_an_entry_from_the_future_is_not_a_negative_age(self) -> None:
        later = int((NOW + timedelta(seconds=5)).timestamp() * 1000)
        found = snapshot(readings=readings(in_progress=1, oldest_in_progress=f"{later}-0"))
        assert gauges(found)["mailhooks_oldest_undelivered_seconds"] == 0.0
