"""The soak test's endpoint (bench/soak_receiver.py): what /control changes, what each POST is
answered and what it records. Pure: no sockets."""

from __future__ import annotations

import json

import pytest

from bench.soak_receiver import Control, State, parse_control


def delivery(event_id: str, email_id: str) -> bytes:
    body = {"id": event_id, "type": "email.open", "data": {"email_id": email_id, "x": 1}}
    return json.dumps(body).encode()


class TestParseControl:
    def test_both_sets(self) -> None:
        assert parse_control("/control?failing=1,5,9&gone=3") == Control(
            failing=frozenset({"1", "5", "9"}), gone=frozenset({"3"})
        )

    def test_empty_value_clears_and_missing_leaves_alone(self) -> None:
        assert parse_control("/control?failing=") == Control(failing=frozenset(), gone=None)

    def test_url_encoded_commas(self) -> None:
        assert parse_control("/control?failing=2%2C4").failing == frozenset({"2", "4"})

    def test_not_a_number_is_refused(self) -> None:
        with pytest.raises(ValueError, match="invalid literal"):
            parse_control("/control?failing=one")


class TestPost:
    def test_answers_follow_the_control(self) -> None:
        state = State()
        state.control(parse_control("/control?failing=2&gone=3"))
        answers = [state.post(name, delivery("evt_1-0", "m1"), 1.0) for name in "123"]
        assert answers == [200, 500, 410]
        state.control(parse_control("/control?failing="))
        assert state.post("2", delivery("evt_1-0", "m1"), 2.0) == 200
        assert state.endpoints["2"].events["m1"][:4] == [1, 1, 2.0, "evt_1-0"]

    def test_records_duplicates_and_other_event_ids(self) -> None:
        state = State()
        for at, event_id in ((1.0, "evt_1-0"), (2.0, "evt_1-0"), (3.0, "evt_2-0")):
            state.post("1", delivery(event_id, "m1"), at)
        endpoint = state.endpoints["1"]
        assert endpoint.events["m1"] == [3, 0, 1.0, "evt_1-0", [2.0, 3.0], ["evt_2-0"]]
        assert endpoint.summary()["distinct_ok"] == 1

    def test_counts_requests_after_the_first_410(self) -> None:
        state = State(gone=frozenset({"4"}))
        for at in (1.0, 2.0, 3.0):
            assert state.post("4", delivery("evt_1-0", "m1"), at) == 410
        summary = state.endpoints["4"].summary()
        assert (summary["gone"], summary["first_gone_at"], summary["after_gone"]) == (3, 1.0, 2)

    def test_operational_events_are_answered_and_counted_not_recorded(self) -> None:
        state = State()
        body = {"id": "evt_9-0", "type": "webhook.disabled", "data": {"webhook_id": 9}}
        assert state.post("1", json.dumps(body).encode(), 1.0) == 200
        assert state.endpoints["1"].summary()["operational"] == 1
        assert state.endpoints["1"].events == {}

    def test_an_event_without_an_email_id_that_is_not_operational_fails(self) -> None:
        state = State()
        body = {"id": "evt_9-0", "type": "email.open", "data": {"x": 1}}
        assert state.post("1", json.dumps(body).encode(), 1.0) == 500
