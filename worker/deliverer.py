"""Attempting deliveries: claim → sign → POST → record the outcome → schedule the next try.

First attempts come straight from the stream consumer, many in flight at once; later ones
(retries, manual retries, hand-offs from a saturated endpoint, deliveries waiting for their
webhook's rate-limit slot) are scheduled in the retry set (service.storage.retries) and
come back through the retry runner (worker/retries.py). Either way the delivery's lease
(service.storage.deliveries) lets only one attempt run at a time. Outcomes that the account
should hear of (a webhook disabled, a delivery's schedule spent) are stored as operational
events (service.core.operational).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import msgspec
import redis.exceptions

from config import Config
from service.core import operational
from service.core.clock import Clock, system_clock
from service.core.event_types import QUALIFIED_PREFIX
from service.core.ids import (
    LeaseTag,
    delivery_id,
    entry_id,
    entry_time,
    epoch_ms,
    format_timestamp,
    handed_off_at_ms,
    ingested_ms,
    lease_owner,
)
from service.core.ids import event_id as event_id_of
from service.core.metrics import Tally, attempt_result, delivery_outcome
from service.core.models import Attempt, DisabledReason, Event
from service.core.outcome import ErrorKind, Verdict, judge
from service.core.payload import build_payload, encode
from service.core.rotation import live_previous
from service.core.schedule import saturated_delay
from service.core.signing import delivery_headers
from service.storage.deliveries import (
    Claim,
    ClaimResult,
    DeliveryStore,
    StoredDelivery,
    lease_ms,
)
from service.storage.events import EventStore
from service.storage.rate_limits import RateLimits
from service.storage.retries import RetrySchedule
from service.storage.webhooks import StoredWebhook, WebhookStore
from worker.http import USER_AGENT
from worker.limiter import EndpointLimiter, Slot, rate_burst
from worker.outcomes import OutcomeLog
from worker.sender import Sender

# Who an event is for: its account (None when unrouted) and its type.
Audience = tuple[str | None, str]

logger = logging.getLogger("mailhooks.delivery")

_ATTEMPT_ENCODER = msgspec.json.Encoder()


class Deliverer:
    def __init__(
        self,
        *,
        webhooks: WebhookStore,
        deliveries: DeliveryStore,
        events: EventStore,
        rates: RateLimits,
        retries: RetrySchedule,
        sender: Sender,
        config: Config,
        clock: Clock = system_clock,
        rng: random.Random | None = None,
        metrics: Tally | None = None,
    ) -> None:
        self.config = config
        # Outcomes, attempt durations and latencies, flushed to Redis by the worker.
        self.metrics = metrics if metrics is not None else Tally()
        self._webhooks = webhooks
        self._deliveries = deliveries
        self._events = events
        self._rates = rates
        self._retries = retries
        self._sender = sender
        self._clock = clock
        self._rng = rng or random.Random()
        self._in_flight = asyncio.Semaphore(config.delivery_concurrency)
        self._endpoints = EndpointLimiter(config.endpoint_concurrency)
        # Webhooks this process saw disabled (410, failing too long), by when: attempts
        # claimed before that and still waiting for a slot are abandoned, not sent.
        self._disabled_at: dict[int, float] = {}
        self.lease_ms = lease_ms(config)
        # A first attempt that waited longer than this for its endpoint's slot renews its
        # lease first: the lease (twice the timeout plus a second) then still covers the
        # request and leaves at least half a timeout to record it. Not on every short wait:
        # a backlog makes most deliveries wait a little, and renewals cost round trips.
        self._renew_after_seconds = config.delivery_timeout / 2
        self.outcomes = OutcomeLog()

    def _now_ms(self) -> int:
        return epoch_ms(self._clock())

    # -- first attempts, from the stream consumer -----------------------------------------

    async def subscribers(self, audiences: set[Audience]) -> dict[Audience, list[StoredWebhook]]:
        """The webhooks of each (account, event type) in `audiences` (the type as stored,
        maybe qualified): one lookup serves every event of that account and type in a stream
        read. An unrouted event (account None) has none: it is delivered to nobody."""
        wanted = [(account, t) for account, t in audiences if account is not None]
        if len(wanted) == 1:  # the usual read: no task per lookup
            account, event_type = wanted[0]
            found = [
                await self._webhooks.subscribers(account, event_type.removeprefix(QUALIFIED_PREFIX))
            ]
        else:
            found = await asyncio.gather(
                *(
                    self._webhooks.subscribers(account, t.removeprefix(QUALIFIED_PREFIX))
                    for account, t in wanted
                )
            )
        webhooks: dict[Audience, list[StoredWebhook]] = {key: [] for key in audiences}
        webhooks.update(zip(wanted, found, strict=True))
        return webhooks

    def deliver_event(
        self,
        entry_id: str,
        event: Event,
        webhooks: list[StoredWebhook],
        *,
        owner: str,
        first_done: Callable[[bool], None] | None = None,
    ) -> Coroutine[Any, Any, bool]:
        """What delivers one stored event to `webhooks` (its subscribers, looked up after
        the entry was read): a coroutine that returns once each delivery is done or
        scheduled for later (then the stream entry may be acknowledged), True if any was
        put off because its endpoint is saturated or over its rate. Built here, run by the
        caller's task: for one webhook it is that delivery's own coroutine, with no wrapper
        frame for each of its awaits to pass through. With several webhooks, `first_done`
        is called when the first of its deliveries ends (with whether it was put off):
        the consumer's fair scheduler paces the account by that (worker/consumer.py)."""
        if event.exclude_webhook is not None:
            # An operational event is never sent to the webhook it is about.
            webhooks = [w for w in webhooks if w.id != event.exclude_webhook]
        if not webhooks:
            return _nothing()
        # Set when the entry was read: with several partitions it names the partition.
        event_id = event.id if isinstance(event.id, str) else event_id_of(entry_id)
        payload = build_payload(event, event_id=event_id, stored_at=entry_time(entry_id))
        body = encode(payload)
        if len(webhooks) == 1:
            return self._first_attempt(entry_id, event_id, event.type, webhooks[0], body, owner)
        return _all(
            [
                self._first_attempt(entry_id, event_id, event.type, webhook, body, owner)
                for webhook in webhooks
            ],
            first_done,
        )

    async def _first_attempt(
        self,
        entry_id: str,
        event_id: str,
        event_type: str,
        webhook: StoredWebhook,
        body: bytes,
        owner: str,
    ) -> bool:
        """Attempt the delivery, or hand it on: True when it was handed on because its
        endpoint is saturated or over its rate limit (the fair scheduler then narrows the
        account's window: service.core.fairness)."""
        id_ = delivery_id(entry_id, webhook.id)
        if self._endpoints.saturated(webhook.id):
            # A slow endpoint must not hold the stream back: persist the delivery with its
            # payload and schedule its attempt for when the endpoint has room.
            await self._hand_off(id_, webhook.id, event_id, event_type, body)
            return True
        if webhook.rate_limit is not None and webhook.active:
            wait = await self._take_rate_slot(webhook.id, webhook.rate_limit)
            if wait > 0:
                # Over its rate: the delivery waits for its slot in the retry set, not here,
                # so that the stream goes on for every other endpoint.
                owner = lease_owner(id_, LeaseTag.RATE_WAIT, self._now_ms())
                await self._wait_for_slot(id_, webhook.id, event_id, event_type, body, owner, wait)
                return True
        # Counted against the endpoint from now, so that the deliveries of one read see
        # each other when deciding whether it is saturated.
        slot = self._endpoints.slot(webhook.id)
        try:
            # Claim first, then wait for a slot: the claims of a whole stream read leave in
            # one pipeline (AutoPipeline) rather than one round trip per delivery, the
            # largest single cost of a first attempt in a profile (docs/performance.md).
            claimed_at = time.monotonic()
            claim = await self._claim(id_, webhook.id, event_id, event_type, owner)
            if claim.claim is Claim.SKIP:
                return False
            live = self._as_claimed(webhook, claim, claimed_at)
            async with slot, self._in_flight:
                if self._disabled_since(webhook.id, claimed_at):
                    live = None if live is None else replace(live, active=False)
                if time.monotonic() - claimed_at > self._renew_after_seconds:
                    # Renew the lease (ours, so the claim says go), unless it lapsed
                    # meanwhile and was taken over.
                    claim = await self._claim(id_, webhook.id, event_id, event_type, owner)
                    if claim.claim is Claim.SKIP:
                        return False
                delivery = StoredDelivery.new(
                    id_, webhook.id, event_id, event_type, claim.created_at_ms,
                    claim.attempts_made,
                )  # fmt: skip
                await self._attempt(delivery, live, body, owner, slot)
        finally:
            slot.leave()
        return False

    def _as_claimed(
        self, webhook: StoredWebhook, claim: ClaimResult, claimed_at: float
    ) -> StoredWebhook | None:
        """The webhook as its claim found it in Redis: a 410 or a disable since the
        subscriber lookup means no request. Active there, it is no longer taken for
        disabled here (re-enabled by hand since this process saw it disabled)."""
        active = claim.webhook_active
        if active is None:
            return None
        if active and self._disabled_at.get(webhook.id, claimed_at) < claimed_at:
            del self._disabled_at[webhook.id]
        return webhook if webhook.active == active else replace(webhook, active=active)

    def _disabled_since(self, webhook_id: int, moment: float) -> bool:
        """Whether this process saw the webhook disabled after `moment`: attempts claimed
        before its 410, waiting for a slot meanwhile, must not go out."""
        seen = self._disabled_at.get(webhook_id)
        return seen is not None and seen > moment

    def _claim(
        self,
        id_: str,
        webhook_id: int,
        event_id: str,
        event_type: str,
        owner: str,
        *,
        lease_ms: int | None = None,
        payload: bytes = b"",
    ) -> Coroutine[Any, Any, ClaimResult]:
        """The claim to await: a plain function returning the store's coroutine, so that it
        adds no frame to the first attempt's await chain."""
        return self._deliveries.claim(
            delivery_id=id_,
            webhook_id=webhook_id,
            event_id=event_id,
            event_type=event_type,
            owner=owner,
            now_ms=self._now_ms(),
            lease_ms=self.lease_ms if lease_ms is None else lease_ms,
            payload=payload,
        )

    async def _hand_off(
        self, id_: str, webhook_id: int, event_id: str, event_type: str, body: bytes
    ) -> None:
        owner = lease_owner(id_, LeaseTag.HAND_OFF, self._now_ms())
        claim = await self._claim(
            id_,
            webhook_id,
            event_id,
            event_type,
            owner,
            lease_ms=self.lease_ms * 10,  # covers waiting in the endpoint's queue
            payload=body,
        )
        if claim.claim is not Claim.SKIP:
            await self.enqueue(id_, owner, delay=self.saturated_backoff(owner))

    def _take_rate_slot(self, webhook_id: int, per_second: int) -> Coroutine[Any, Any, float]:
        return self._rates.take_slot(
            webhook_id, per_second=per_second, burst=rate_burst(per_second)
        )

    async def _wait_for_slot(
        self,
        id_: str,
        webhook_id: int,
        event_id: str,
        event_type: str,
        body: bytes,
        owner: str,
        wait: float,
    ) -> None:
        """Schedule the delivery for its rate-limit slot, `wait` seconds from now, with its
        payload and a lease that lasts until then (and a request's time after). That attempt
        is then made without taking another slot. No attempt is made or counted, so
        waiting never fails a delivery nor brings its webhook nearer to being disabled."""
        claim = await self._claim(
            id_,
            webhook_id,
            event_id,
            event_type,
            owner,
            lease_ms=int(wait * 1000) + self.lease_ms,
            payload=body,
        )
        if claim.claim is not Claim.SKIP:
            await self.enqueue(id_, owner, delay=wait, rate_slot_taken=True)

    def saturated_backoff(self, owner: str) -> float:
        """When to look again at a delivery whose endpoint is saturated, to be attempted as
        lease `owner`: a handed-off one soon, then ever later (service.core.schedule), any
        other a request timeout later."""
        handed_off_ms = handed_off_at_ms(owner)
        waited = None if handed_off_ms is None else max(0, self._now_ms() - handed_off_ms) / 1000
        return saturated_delay(self.config.delivery_timeout, waited, self._rng)

    # -- later attempts, from the retry set -----------------------------------------------

    async def retry(self, id_: str, owner: str, *, rate_slot_taken: bool = False) -> bool:
        """Attempt a pending delivery whose lease `owner` holds (or nobody holds any more).
        False when its endpoint is saturated: the caller should try again later rather than
        wait here (a retry runner's place must not idle behind one slow endpoint). A webhook
        with a rate limit is asked for a slot first, unless this attempt waited for one
        already (`rate_slot_taken`); over its rate, it is scheduled again for its slot."""
        delivery = await self._deliveries.get(id_)
        if delivery is None or delivery.status != "pending":
            return True
        if self._endpoints.saturated(delivery.webhook_id):
            return False
        body = delivery.payload or await self._payload_from_stream(delivery)
        # Read before the claim (which says whether it is still active, below): its rate
        # limit decides whether to claim now or wait.
        webhook = await self._webhooks.get(delivery.webhook_id)
        if (
            webhook is not None
            and webhook.rate_limit is not None
            and webhook.active
            and body is not None
            and not rate_slot_taken
        ):
            wait = await self._take_rate_slot(webhook.id, webhook.rate_limit)
            if wait > 0:
                await self._wait_for_slot(
                    id_, delivery.webhook_id, delivery.event_id, delivery.type, body, owner, wait
                )
                return True
        async with self._endpoints.slot(delivery.webhook_id) as slot, self._in_flight:
            claim = await self._deliveries.claim(
                delivery_id=id_,
                webhook_id=delivery.webhook_id,
                event_id=delivery.event_id,
                event_type=delivery.type,
                owner=owner,
                now_ms=self._now_ms(),
                lease_ms=self.lease_ms,
                payload=body or b"",
            )
            if claim.claim is Claim.SKIP:
                return True
            if claim.webhook_active is None:
                webhook = None  # deleted since it was read
            elif webhook is not None and webhook.active != claim.webhook_active:
                webhook = replace(webhook, active=claim.webhook_active)
            if body is None:
                account = None if webhook is None else webhook.account
                await self._abandon(delivery, owner, ErrorKind.EVENT_EXPIRED, account=account)
                return True
            await self._attempt(delivery, webhook, body, owner, slot)
        return True

    async def enqueue(
        self, id_: str, owner: str, *, delay: float, rate_slot_taken: bool = False
    ) -> None:
        """Schedule an attempt as lease `owner` in `delay` seconds (again: a no-op)."""
        await self._retries.schedule(id_, owner, delay=delay, rate_slot_taken=rate_slot_taken)

    async def _payload_from_stream(self, delivery: StoredDelivery) -> bytes | None:
        entry = entry_id(delivery.event_id)
        event = await self._events.get(delivery.event_id)
        if event is None or entry is None:
            return None
        stored_at = entry_time(entry)
        return encode(build_payload(event, event_id=delivery.event_id, stored_at=stored_at))

    # -- one attempt ----------------------------------------------------------------------

    async def _attempt(
        self,
        delivery: StoredDelivery,
        webhook: StoredWebhook | None,
        body: bytes,
        owner: str,
        slot: Slot,
    ) -> None:
        # Called holding the endpoint's slot and a place among DELIVERY_CONCURRENCY. The
        # slot is freed once the request is answered (it limits the load on the endpoint,
        # and recording the outcome is none); the place is held until the outcome is
        # recorded, so that what a crash can make us send twice stays bounded.
        if webhook is None or not webhook.active:
            reason = ErrorKind.WEBHOOK_DELETED if webhook is None else ErrorKind.WEBHOOK_DISABLED
            account = None if webhook is None else webhook.account
            await self._abandon(delivery, owner, reason, body, account=account)
            return
        now = self._clock()
        headers = delivery_headers(
            secret=webhook.secret,
            delivery_id=delivery.id,
            timestamp=int(now.timestamp()),
            body=body,
            user_agent=USER_AGENT,
            # A rotation's overlap: the secrets it replaced sign too until they expire.
            previous_secrets=(
                live_previous(webhook.previous_secrets, epoch_ms(now))
                if webhook.previous_secrets
                else ()
            ),
            custom=webhook.headers,
        )
        result = await self._sender.send(webhook.url, headers, body)
        self.metrics.attempt(
            attempt_result(result.status_code, result.error), result.latency_ms / 1000
        )
        number = delivery.attempts + 1
        verdict, delay = judge(
            result.status_code,
            result.retry_after,
            number,
            error=result.error,
            schedule=self.config.retry_schedule,
            rng=self._rng,
            now=now,
        )
        if verdict is Verdict.GONE:
            # Before the slot goes to the next attempt waiting for it: that one must see
            # the webhook disabled and not send.
            self._disabled_at[webhook.id] = time.monotonic()
        slot.free()
        attempt = Attempt(
            number=number,
            at=format_timestamp(now),
            latency_ms=result.latency_ms,
            status_code=result.status_code,
            error=result.error,
            response=result.response,
        )
        next_owner = lease_owner(delivery.id, LeaseTag.ATTEMPT, number + 1)
        error = result.error or (None if verdict is Verdict.SUCCEEDED else ErrorKind.HTTP_STATUS)
        now_ms = self._now_ms()
        status = await self._deliveries.record(
            delivery,
            owner=owner,
            now_ms=now_ms,
            verdict=verdict,
            attempt_json=_ATTEMPT_ENCODER.encode(attempt),
            attempt_number=number,
            next_attempt_ms=now_ms + int((delay or 0) * 1000),
            next_owner=next_owner,
            lease_ms=self.lease_ms,
            payload=body,
            status_code=result.status_code,
            error=error,
            disable_after_ms=self.config.disable_after_seconds * 1000,
            retention_count=self.config.delivery_retention_count,
            retention_seconds=self.config.delivery_retention_seconds,
        )
        self._count(delivery, verdict, status, webhook.account, now_ms)
        self.outcomes.attempt(delivery, webhook, number, result, verdict, status, delay)
        if status == "pending" and delay is not None:
            await self.enqueue(delivery.id, next_owner, delay=delay)
        elif status in ("failed", "disabled"):
            await self._failed(
                delivery, webhook, verdict, number, status, result.status_code, error
            )

    async def _failed(
        self,
        delivery: StoredDelivery,
        webhook: StoredWebhook,
        verdict: Verdict,
        number: int,
        status: str,
        status_code: int | None,
        error: str | None,
    ) -> None:
        """After attempt `number` failed the delivery: announce the webhook disabled by it
        (the record script says when it was this attempt that disabled it), and a delivery
        whose schedule is spent (service.core.operational)."""
        if status == "disabled":
            self._disabled_at[webhook.id] = time.monotonic()
            why: DisabledReason = "gone" if verdict is Verdict.GONE else "failing"
            if why == "gone":
                logger.warning("webhook %d disabled: its endpoint answered 410 Gone", webhook.id)
            else:
                logger.warning("webhook %d disabled after failing too long", webhook.id)
            await self._announce(
                operational.webhook_disabled(
                    account=webhook.account,
                    webhook_id=webhook.id,
                    url=webhook.url,
                    reason=why,
                    delivery_id=delivery.id,
                    attempt=number,
                    status_code=status_code,
                    error=error,
                    now=self._clock(),
                )
            )
        if verdict is Verdict.FAILED and operational.announces_exhaustion(delivery.type):
            await self._announce(
                operational.delivery_exhausted(
                    account=webhook.account,
                    webhook_id=webhook.id,
                    delivery_id=delivery.id,
                    event_id=delivery.event_id,
                    event_type=delivery.type,
                    attempts=number,
                    status_code=status_code,
                    error=error,
                    now=self._clock(),
                )
            )

    async def _announce(self, event: Event) -> None:
        """Store an operational event under its account: delivered like any event. The
        outcome it tells is recorded already; if Redis fails this append, the event is
        lost (logged), not the outcome."""
        try:
            await self._events.append(operational.PROVIDER, [event])
        except redis.exceptions.RedisError as exc:
            logger.error(
                "storing %s for webhook %s failed: %r", event.type, event.exclude_webhook, exc
            )

    def _count(
        self,
        delivery: StoredDelivery,
        verdict: Verdict,
        status: str,
        account: str | None,
        now_ms: int,
    ) -> None:
        latency = None
        if status == "succeeded":  # from the event's ingest (a test event's: the request)
            started_ms = ingested_ms(delivery.event_id) or delivery.created_at_ms
            latency = (now_ms - started_ms) / 1000
        self.metrics.delivery(delivery_outcome(verdict, status), account=account, latency=latency)

    async def _abandon(
        self,
        delivery: StoredDelivery,
        owner: str,
        reason: ErrorKind,
        body: bytes = b"",
        *,
        account: str | None = None,
    ) -> None:
        """No attempt: the delivery fails as it is, and stays retryable by hand (recover)."""
        self.outcomes.abandoned(delivery, reason)
        now_ms = self._now_ms()
        status = await self._deliveries.record(
            delivery,
            owner=owner,
            now_ms=now_ms,
            verdict=Verdict.ABANDONED,
            payload=body,
            error=reason,
            disable_after_ms=self.config.disable_after_seconds * 1000,
            retention_count=self.config.delivery_retention_count,
            retention_seconds=self.config.delivery_retention_seconds,
        )
        self._count(delivery, Verdict.ABANDONED, status, account, now_ms)


async def _nothing() -> bool:
    return False


async def _all(
    attempts: list[Coroutine[Any, Any, bool]], first_done: Callable[[bool], None] | None = None
) -> bool:
    """Every attempt to its end, even when one fails (the entry is done only when all are);
    then the first failure, if any; else whether any was handed on. `first_done` hears of
    the first attempt to end (True if it was handed on)."""
    tasks = [asyncio.ensure_future(attempt) for attempt in attempts]
    if first_done is not None:
        told = False

        def tell(task: asyncio.Future[bool]) -> None:
            nonlocal told
            if not told:
                told = True
                handed_on = not task.cancelled() and task.exception() is None and task.result()
                first_done(handed_on)

        for task in tasks:
            task.add_done_callback(tell)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return any(outcomes)
