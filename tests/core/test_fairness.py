"""The fair scheduler alone: no Redis, no worker."""

from __future__ import annotations

from collections import Counter

from service.core.fairness import FairScheduler


def drain(fair: FairScheduler[str], limit: int = 1000) -> list[str]:
    started = []
    while (took := fair.take()) is not None and len(started) < limit:
        started.append(took[1])
    return started


def test_a_burst_does_not_hold_back_another_account() -> None:
    fair: FairScheduler[str] = FairScheduler(window=5, queue_limit=100)
    for n in range(100):
        fair.offer("a", f"a{n}")
    fair.offer("b", "b0")
    started = drain(fair)
    # a is held to its window; b's one event starts with a's first few, not after 100.
    assert "b0" in started
    assert Counter(item[0] for item in started) == {"a": 5, "b": 1}


def test_accounts_take_turns_by_deliveries_not_events() -> None:
    fair: FairScheduler[str] = FairScheduler(window=1000, queue_limit=1000, quantum=10)
    for n in range(50):
        fair.offer("fanout", f"f{n}", cost=10)  # each event: ten endpoints
        fair.offer("single", f"s{n}", cost=1)
    started = drain(fair, limit=44)
    counts = Counter(item[0] for item in started)
    # Equal deliveries per round: ten single events for each fan-out event.
    assert counts["s"] == 10 * counts["f"]


def test_a_lone_account_with_costly_events_is_not_starved() -> None:
    fair: FairScheduler[str] = FairScheduler(window=10, queue_limit=100, quantum=1)
    fair.offer("a", "big", cost=50)
    assert fair.take() == ("a", "big")


def test_the_window_halves_on_congestion_and_grows_back_one_by_one() -> None:
    fair: FairScheduler[str] = FairScheduler(window=8, queue_limit=100)
    for n in range(20):
        fair.offer("a", f"a{n}")
    assert len(drain(fair)) == 8
    fair.finished("a", congested=True)
    assert fair.window("a") == 4
    assert drain(fair) == []  # 7 in flight, window 4
    for _ in range(4):
        fair.finished("a", congested=False)
    # 3 in flight, and the window grew by about 1/4 per event finished: two may start.
    assert 4.9 < fair.window("a") < 5
    assert len(drain(fair)) == 2
    for _ in range(200):
        fair.finished("a", congested=False) if fair.in_flight else None
        drain(fair)
    assert fair.window("a") > 4


def test_the_window_halves_once_per_windows_worth_down_to_its_floor() -> None:
    fair: FairScheduler[str] = FairScheduler(window=16, queue_limit=100, min_window=3)
    for n in range(100):
        fair.offer("a", f"a{n}")
    drain(fair)
    for _ in range(8):  # the first saturation, met by every event started before it
        fair.finished("a", congested=True)
    assert fair.window("a") == 8
    for _ in range(4):  # a window's worth after the cut (8 events): halved again, once
        fair.finished("a", congested=True)
        drain(fair)
    assert fair.window("a") == 4
    for _ in range(40):
        fair.finished("a", congested=True)
        drain(fair)
    assert fair.window("a") == 3


def narrowed(fair: FairScheduler[str], account: str) -> None:
    """Start one of the account's events and finish it congested: its window halves."""
    fair.offer(account, "first", from_lane=True)
    took = fair.take()
    assert took is not None
    assert fair.finished(account, congested=True) is True


def test_an_account_at_its_whole_window_waits_in_memory_whatever_its_queue() -> None:
    fair: FairScheduler[str] = FairScheduler(window=1, queue_limit=3)
    assert all(fair.offer("a", f"a{n}") for n in range(10))  # delivering as fast as read
    assert fair.queued == 10


def test_a_narrowed_account_spills_beyond_its_queue_until_its_lane_is_drained() -> None:
    fair: FairScheduler[str] = FairScheduler(window=4, queue_limit=3)
    narrowed(fair, "a")
    assert [fair.offer("a", f"a{n}") for n in range(5)] == [True, True, True, False, False]
    assert fair.offer("a", "a5") is False  # its lane holds events: keep order, spill too
    assert fair.room("a") == 0  # 3 queued, more than half of 3
    assert fair.offer("a", "from lane", from_lane=True)  # queued whatever its length
    fair.lane_drained("a")
    assert fair.offer("a", "a6") is False  # its queue is still full: a lane again
    for _ in range(4):
        took = fair.take()
        assert took is not None
        fair.finished("a", congested=False)
    fair.lane_drained("a")
    assert fair.offer("a", "a7") is True


def test_a_queue_over_its_limit_sheds_its_newest_movable_items_when_narrowed() -> None:
    fair: FairScheduler[str] = FairScheduler(window=100, queue_limit=3)
    for n in range(8):
        fair.offer("a", f"a{n}")  # whole window: all wait in memory
    fair.offer("a", "lane item", from_lane=True)
    took = fair.take()
    assert took == ("a", "a0")
    assert fair.finished("a", congested=True) is True
    shed = fair.shed("a", movable=lambda item: not item.startswith("lane"))
    # Newest first, down to the limit; the lane item stays whatever (it is a lane's).
    assert shed == ["a7", "a6", "a5", "a4"]
    assert fair.queued == 4
    assert [item for _, item in (fair.take() for _ in range(4))] == [  # type: ignore[misc]
        "a1",
        "a2",
        "a3",
        "lane item",
    ]
    assert fair.spilling("a")


def test_room_asks_for_a_whole_read_once_the_queue_is_down_to_half() -> None:
    fair: FairScheduler[str] = FairScheduler(window=100, queue_limit=200)
    fair.mark_spilling("a")
    assert fair.room("a") == 200
    for n in range(150):
        fair.offer("a", f"a{n}", from_lane=True)
    assert fair.room("a") == 0
    for _ in range(60):
        fair.take()
    assert fair.room("a") == 110


def test_idle_accounts_are_forgotten() -> None:
    fair: FairScheduler[str] = FairScheduler(window=2, queue_limit=10)
    for account in ("a", "b", "c"):
        fair.offer(account, account)
    for account, _ in [fair.take(), fair.take(), fair.take()]:  # type: ignore[misc]
        fair.finished(account, congested=False)
    assert fair.accounts() == 0
    assert (fair.queued, fair.in_flight) == (0, 0)
