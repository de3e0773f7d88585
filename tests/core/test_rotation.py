from __future__ import annotations

from service.core.rotation import (
    MAX_PREVIOUS,
    decode_previous,
    encode_previous,
    live_previous,
    rotated_previous,
)

NOW = 1_772_532_000_000
DAY = 86_400


class TestRotatedPrevious:
    def test_the_replaced_secret_lives_for_the_grace_period(self) -> None:
        assert rotated_previous("old", (), now_ms=NOW, grace_seconds=DAY) == (
            ("old", NOW + DAY * 1000),
        )

    def test_a_grace_of_zero_keeps_nothing(self) -> None:
        earlier = (("older", NOW + 5000),)
        assert rotated_previous("old", earlier, now_ms=NOW, grace_seconds=0) == ()

    def test_earlier_secrets_never_outlive_the_new_grace_period(self) -> None:
        earlier = (("older", NOW + DAY * 1000), ("oldest", NOW + 10_000))
        assert rotated_previous("old", earlier, now_ms=NOW, grace_seconds=60) == (
            ("old", NOW + 60_000),
            ("older", NOW + 60_000),
            ("oldest", NOW + 10_000),
        )

    def test_expired_ones_are_dropped(self) -> None:
        earlier = (("expired", NOW), ("live", NOW + 1))
        assert rotated_previous("old", earlier, now_ms=NOW, grace_seconds=DAY) == (
            ("old", NOW + DAY * 1000),
            ("live", NOW + 1),
        )

    def test_at_most_max_previous_newest_first(self) -> None:
        previous: tuple[tuple[str, int], ...] = ()
        for n in range(MAX_PREVIOUS + 3):
            previous = rotated_previous(f"s{n}", previous, now_ms=NOW + n, grace_seconds=DAY)
        assert [s for s, _ in previous] == [f"s{n}" for n in range(MAX_PREVIOUS + 2, 2, -1)]


class TestLivePrevious:
    def test_only_those_not_expired_newest_first(self) -> None:
        previous = (("b", NOW + 1), ("a", NOW))
        assert live_previous(previous, NOW) == ("b",)
        assert live_previous(previous, NOW - 1) == ("b", "a")
        assert live_previous((), NOW) == ()


class TestEncoding:
    def test_round_trip_and_empty(self) -> None:
        previous = (("whsec_abc", NOW), ('quote " and ü', NOW + 1))
        assert decode_previous(encode_previous(previous)) == previous
        assert encode_previous(()) == ""
        assert decode_previous("") == ()
