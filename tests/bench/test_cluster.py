"""The cluster benchmark's pure helpers (bench/cluster.py): the wrk script, the ratios and
the goal; and bench.common.key_partitions. The benchmark itself runs in `make bench`."""

from __future__ import annotations

import math

import pytest

from bench.cluster import (
    GOAL_RATIO,
    accounts_script,
    ratio,
    round_ratios,
    times,
    verdict,
    within_goal,
)
from bench.common import key_partitions
from service.storage import keys


class TestAccountsScript:
    def test_lists_every_account_and_tags_each_body_with_one(self) -> None:
        script = accounts_script("r1", ["acc_a", "acc_b", "acc_c"])
        assert "local accounts = {'acc_a', 'acc_b', 'acc_c'}" in script
        assert "accounts[(counter + tid) % #accounts + 1]" in script
        assert '"account_id":"\' .. account .. \'"' in script

    def test_bodies_are_unique_per_thread_and_request(self) -> None:
        assert "\"email_id\":\"msg_r1_' .. tid .. '_' .. counter .." in accounts_script(
            "r1", ["acc_a"]
        )

    def test_refuses_no_accounts(self) -> None:
        with pytest.raises(ValueError, match="at least one account"):
            accounts_script("r1", [])


class TestRatio:
    def test_divides(self) -> None:
        assert ratio(3.0, 2.0) == 1.5

    @pytest.mark.parametrize(
        ("numerator", "denominator"), [(1.0, 0.0), (1.0, -1.0), (math.nan, 1.0), (1.0, math.inf)]
    )
    def test_unknown_when_either_is_missing_or_the_denominator_not_positive(
        self, numerator: float, denominator: float
    ) -> None:
        assert math.isnan(ratio(numerator, denominator))


class TestRoundRatios:
    def test_each_round_against_the_same_round(self) -> None:
        cluster = [{"cpu": 2.0}, {"cpu": 3.0}]
        single = [{"cpu": 1.0}, {"cpu": 2.0}]
        assert round_ratios(cluster, single, "cpu") == [2.0, 1.5]

    def test_rounds_must_pair(self) -> None:
        with pytest.raises(ValueError, match="shorter"):
            round_ratios([{"cpu": 1.0}], [], "cpu")


class TestGoal:
    def test_at_most_the_goal_is_met(self) -> None:
        assert within_goal(GOAL_RATIO)
        assert within_goal(0.9)
        assert verdict(1.29) == "met"

    def test_above_the_goal_or_unknown_is_missed(self) -> None:
        assert not within_goal(GOAL_RATIO + 0.01)
        assert not within_goal(math.nan)
        assert verdict(math.inf) == "MISSED"

    def test_times(self) -> None:
        assert times(1.234) == "x1.23"
        assert times(math.nan) == "n/a"


class TestKeyPartitions:
    def test_names_keys_for_the_count_then_as_before(self) -> None:
        before = keys.partitioning().count
        with key_partitions(16):
            assert keys.partitioning().count == 16
            assert keys.events_stream(3).startswith("mh:{p3.")
        assert keys.partitioning().count == before
