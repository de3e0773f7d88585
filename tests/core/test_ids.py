"""service.core.ids: every id and time format, built and parsed in one place."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.core import ids
from service.core.ids import LeaseTag


class TestEventIds:
    def test_event_id_round_trips_to_its_entry(self) -> None:
        assert ids.event_id("1700000000000-3") == "evt_1700000000000-3"
        assert ids.entry_id("evt_1700000000000-3") == "1700000000000-3"

    @pytest.mark.parametrize(
        "text", ["evt_", "evt_1", "1-0", "evt_1-0-0", "evt_test_abc", f"evt_{2**64}-0", "evt_-1-0"]
    )
    def test_anything_else_is_no_entry(self, text: str) -> None:
        assert ids.entry_id(text) is None

    def test_leading_zeros_name_the_same_entry(self) -> None:
        assert ids.entry_id("evt_0017-02") == "17-2"

    def test_entry_time_is_the_ids_milliseconds(self) -> None:
        assert ids.entry_time("1772532000123-0") == datetime(
            2026, 3, 3, 10, 0, 0, 123000, tzinfo=UTC
        )

    def test_ingest_time_is_the_event_ids_milliseconds(self) -> None:
        assert ids.ingested_ms("evt_1772532000123-4") == 1772532000123
        for text in ("evt_test_abc", "evt_", "1772532000123-4", "evt_12x-0", "dlv_1-0_1"):
            assert ids.ingested_ms(text) is None

    def test_entry_members_sort_as_time_and_round_trip(self) -> None:
        entries = ["9-0", "10-0", "10-2", "10-10", "123456789012-0"]
        members = [ids.entry_member(e) for e in entries]
        assert sorted(members) == members
        assert [ids.member_entry(m) for m in members] == entries


class TestDeliveryIds:
    def test_delivery_id_is_deterministic(self) -> None:
        assert ids.delivery_id("17-2", 5) == "dlv_17-2_5"
        assert ids.test_delivery_id("abc", 5) == "dlv_test_abc_5"

    def test_delivery_members_sort_as_time_and_name_their_delivery(self) -> None:
        early, late = ids.delivery_member(999, "dlv_b"), ids.delivery_member(1000, "dlv_a")
        assert early < late
        assert ids.member_delivery(late) == "dlv_a"
        assert ids.ms_member_bound(1000) <= late

    def test_lease_owners_differ_by_how_the_attempt_started(self) -> None:
        owners = {ids.lease_owner("dlv_1", tag, 7) for tag in LeaseTag}
        assert len(owners) == len(LeaseTag)
        assert ids.lease_owner("dlv_1", LeaseTag.ATTEMPT, 2) == "dlv_1:a2"

    @pytest.mark.parametrize("delivery_id", ["dlv_17-2_5", "dlv_test_abc_5"])
    @pytest.mark.parametrize("tag", list(LeaseTag))
    @pytest.mark.parametrize("rate_slot_taken", [False, True])
    def test_retry_members_name_delivery_owner_and_rate_slot(
        self, delivery_id: str, tag: LeaseTag, rate_slot_taken: bool
    ) -> None:
        owner = ids.lease_owner(delivery_id, tag, 1772532000999)
        member = ids.retry_member(owner, rate_slot_taken=rate_slot_taken)
        assert ids.parse_retry_member(member) == (delivery_id, owner, rate_slot_taken)

    @pytest.mark.parametrize("tag", list(LeaseTag))
    def test_only_a_hand_off_owner_tells_when_it_was_handed_off(self, tag: LeaseTag) -> None:
        owner = ids.lease_owner("dlv_17-2_5", tag, 1772532000999)
        expected = 1772532000999 if tag is LeaseTag.HAND_OFF else None
        assert ids.handed_off_at_ms(owner) == expected
        assert ids.handed_off_at_ms(ids.lease_owner("dlv_17-2_5", tag)) is None

    def test_the_same_attempt_is_the_same_retry_member(self) -> None:
        owner = ids.lease_owner("dlv_1-0_3", LeaseTag.ATTEMPT, 2)
        assert ids.retry_member(owner) == ids.retry_member(owner) == owner
        assert ids.retry_member(owner, rate_slot_taken=True) != owner


def test_timestamps_are_the_api_pages_format() -> None:
    moment = datetime(2026, 3, 3, 10, 0, 0, 999000, tzinfo=UTC)
    assert ids.format_timestamp(moment) == "2026-03-03T10:00:00Z"
    assert ids.epoch_ms(moment) == 1772532000999
