"""Fair delivery across accounts: which account's event a worker starts next, how many of one
account's events it keeps in flight, and when an account's backlog leaves memory for its lane.

Deficit round robin over the accounts with events queued in the worker: each turn an account
may start events worth `quantum` deliveries (an event costs one delivery per subscriber), so
an account fanning out to ten endpoints does not get ten times its share. An account is
skipped while it has `window` events in flight. The window starts at ACCOUNT_CONCURRENCY and
adapts like TCP's (AIMD): halved when an event of the account was congested (the worker
says when: it met a saturated endpoint, or took over a second), grown by one per window's
worth finished otherwise; so a slow endpoint's backlog waits here, costing nothing, instead
of being handed off and polled.
The window never closes below `min_window` (the worker sets it just under the number of
attempts at which an endpoint counts as saturated): an account's one slow endpoint holds
that many of its events, and the rest waits here rather than being handed off. (An event
to several endpoints leaves the window when its first delivery ends, so that a slow
endpoint never holds back the account's others: worker/consumer.py.)

An account whose window has narrowed keeps only `queue_limit` events waiting in memory;
beyond that (and while its lane holds any, so that its events stay roughly in order) they
are spilled to the account's lane in Redis and read back as the queue runs low
(docs/delivery.md). An account at its whole window is delivering as fast as it is read, and
waits in memory: spilling it would only cost a copy per event. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Account = str


@dataclass(slots=True)
class _Tenant(Generic[Item]):
    queue: deque[tuple[Item, int]] = field(default_factory=deque)  # (item, cost)
    in_flight: int = 0
    window: float = 0.0
    deficit: int = 0
    spilling: bool = False  # its lane holds events: new ones go there too
    since_cut: float = float("inf")  # events finished since its window was last halved


class FairScheduler(Generic[Item]):
    def __init__(
        self,
        *,
        window: int,
        queue_limit: int,
        quantum: int = 10,
        min_window: int = 1,
    ) -> None:
        self.max_window = window
        self.queue_limit = queue_limit
        self.quantum = quantum
        self.min_window = min_window
        self._tenants: dict[Account, _Tenant[Item]] = {}
        # Accounts with events queued and room in their window, in round-robin order.
        self._ready: deque[Account] = deque()
        self._in_ready: set[Account] = set()
        self.queued = 0  # events waiting in memory, every account's
        self.in_flight = 0

    def _tenant(self, account: Account) -> _Tenant[Item]:
        tenant = self._tenants.get(account)
        if tenant is None:
            tenant = self._tenants[account] = _Tenant(window=float(self.max_window))
        return tenant

    def offer(
        self, account: Account, item: Item, cost: int = 1, *, from_lane: bool = False
    ) -> bool:
        """Queue `item` (costing `cost` deliveries) for `account`; False when it must be
        spilled to the account's lane instead: its queue is full and its window narrowed (its
        endpoints keep it waiting), or its lane is not empty. An account whose window is
        whole is delivering as fast as it reads: it waits in memory (no copy to pay for).
        An item read back from the lane (`from_lane`) is always queued: its read asked for
        no more than `room`."""
        tenant = self._tenant(account)
        if not from_lane and (
            tenant.spilling
            or (len(tenant.queue) >= self.queue_limit and tenant.window < self.max_window)
        ):
            tenant.spilling = True
            return False
        tenant.queue.append((item, max(1, cost)))
        self.queued += 1
        self._mark_ready(account, tenant)
        return True

    def mark_spilling(self, account: Account) -> None:
        """The account has a lane (found in Redis, maybe another worker's): its new events go
        there too, and its lane is read as its queue runs low."""
        self._tenant(account).spilling = True

    def lane_drained(self, account: Account) -> None:
        """The account's lane is empty: its new events queue here again."""
        tenant = self._tenants.get(account)
        if tenant is not None:
            tenant.spilling = False
            self._forget_if_idle(account, tenant)

    def spilling(self, account: Account) -> bool:
        tenant = self._tenants.get(account)
        return tenant is not None and tenant.spilling

    def room(self, account: Account) -> int:
        """How many events of the account's lane to read back now: what its queue can take
        once it is down to half (reading a few at a time would cost a round trip each)."""
        tenant = self._tenants.get(account)
        queued = 0 if tenant is None else len(tenant.queue)
        return 0 if queued > self.queue_limit // 2 else self.queue_limit - queued

    def take(self) -> tuple[Account, Item] | None:
        """The next event to start, by deficit round robin; None when every account with
        events queued is at its window (or none has any)."""
        ready = self._ready
        while ready:
            account = ready[0]
            tenant = self._tenants[account]
            if not tenant.queue or tenant.in_flight >= tenant.window:
                ready.popleft()
                self._in_ready.discard(account)
                if not tenant.queue:
                    tenant.deficit = 0  # no credit saved up while idle
                continue
            item, cost = tenant.queue[0]
            if tenant.deficit < cost:
                # Its turn is over: credit for the next round, and the next account's turn.
                tenant.deficit += self.quantum
                ready.rotate(-1)
                if tenant.deficit < cost and len(ready) == 1:
                    tenant.deficit = cost  # alone: no one to be fair to
                continue
            tenant.queue.popleft()
            tenant.deficit -= cost
            if not tenant.queue:  # done for now: off the ring, no credit saved up
                ready.popleft()
                self._in_ready.discard(account)
                tenant.deficit = 0
            tenant.in_flight += 1
            self.queued -= 1
            self.in_flight += 1
            return account, item
        return None

    def finished(self, account: Account, *, congested: bool) -> bool:
        """One of the account's events is done; `congested`: it met a saturated endpoint.
        True when that narrowed the account's window (its queue may have to `shed`)."""
        tenant = self._tenants[account]
        tenant.in_flight -= 1
        self.in_flight -= 1
        tenant.since_cut += 1
        cut = False
        if congested:
            # Once per window's worth of events, as TCP halves once per round trip: the
            # events started before the first saturation all meet it too, and halving for
            # each would close the window on a single slow moment.
            if tenant.since_cut >= tenant.window:
                tenant.window = max(float(self.min_window), tenant.window / 2)
                tenant.since_cut = 0
                cut = True
        elif tenant.window < self.max_window:
            # Additive increase: one more event per window's worth finished.
            tenant.window = min(float(self.max_window), tenant.window + 1 / tenant.window)
        self._mark_ready(account, tenant)
        self._forget_if_idle(account, tenant)
        return cut

    def shed(self, account: Account, movable: Callable[[Item], bool]) -> list[Item]:
        """The account's queued items beyond `queue_limit` that `movable` allows, newest
        first, taken out of its queue to be spilled (its window has narrowed: they would
        wait here while its endpoints keep it slow, and hold the readers back)."""
        tenant = self._tenants.get(account)
        if tenant is None or len(tenant.queue) <= self.queue_limit:
            return []
        kept: list[tuple[Item, int]] = []
        shed: list[Item] = []
        while len(tenant.queue) > self.queue_limit:
            item, cost = tenant.queue.pop()
            (shed.append(item) if movable(item) else kept.append((item, cost)))
        tenant.queue.extend(reversed(kept))
        self.queued -= len(shed)
        if shed:
            tenant.spilling = True
        return shed

    def window(self, account: Account) -> float:
        tenant = self._tenants.get(account)
        return float(self.max_window) if tenant is None else tenant.window

    def _mark_ready(self, account: Account, tenant: _Tenant[Item]) -> None:
        if tenant.queue and tenant.in_flight < tenant.window and account not in self._in_ready:
            self._ready.append(account)
            self._in_ready.add(account)

    def _forget_if_idle(self, account: Account, tenant: _Tenant[Item]) -> None:
        # Forgotten once idle at full window, so the map holds only accounts with work (a
        # reduced window is remembered: the endpoint is probably still slow next time).
        if (
            not tenant.queue
            and not tenant.in_flight
            and not tenant.spilling
            and tenant.window >= self.max_window
            and account not in self._in_ready
        ):
            del self._tenants[account]

    def accounts(self) -> int:
        return len(self._tenants)
