"""Attempting deliveries: claim → sign → POST → record the outcome → schedule the next try.

First attempts come straight from the stream consumer, many in flight at once; later ones
(retries, manual retries, hand-offs from a saturated endpoint) arrive as arq jobs. Either way
the delivery's lease (service.storage.deliveries) lets only one attempt run at a time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import msgspec
from arq.connections import ArqRedis
from redis.asyncio import Redis

from config import Config
from service.core.clock import Clock, system_clock
from service.core.event_types import QUALIFIED_PREFIX
from service.core.ids import (
    LeaseTag,
    delivery_id,
    entry_id,
    entry_time,
    epoch_ms,
    format_timestamp,
    lease_owner,
)
from service.core.ids import (
    event_id as event_id_of,
)
from service.core.models import Attempt, Event
from service.core.outcome import Verdict, classify_status
from service.core.payload import build_payload, encode
from service.core.schedule import next_delay, parse_retry_after
from service.core.signing import delivery_headers
from service.core.urls import private_host_reason
from service.storage.autopipeline import AutoPipeline
from service.storage.deliveries import (
    Claim,
    ClaimResult,
    DeliveryStore,
    StoredDelivery,
    lease_ms,
)
from service.storage.events import EventStore
from service.storage.jobs import enqueue_retry
from service.storage.webhooks import StoredWebhook, WebhookStore
from worker.deadlines import Deadlines
from worker.http import USER_AGENT, WebhookClient, blocked_reason, parse_url

logger = logging.getLogger("mailhooks.delivery")

RESPONSE_LOG_BYTES = 1024
_ATTEMPT_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class SendResult:
    latency_ms: int
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    retry_after: str | None = None


class Deliverer:
    def __init__(
        self,
        *,
        redis: Redis,
        jobs: ArqRedis,
        http: WebhookClient,
        config: Config,
        clock: Clock = system_clock,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        # One pipeline for everything the worker sends at once: claims, outcomes and the
        # consumer's acknowledgements of one loop turn share a round trip.
        self.pipeline = AutoPipeline(redis)
        self.webhooks = WebhookStore(redis, self.pipeline)
        self.deliveries = DeliveryStore(redis, self.pipeline)
        self.events = EventStore(
            redis,
            maxlen=config.events_maxlen,
            dedup_ttl_seconds=config.dedup_ttl_seconds,
            pipeline=self.pipeline,
        )
        self._jobs = jobs
        self._http = http
        self._clock = clock
        self._rng = rng or random.Random()
        self._in_flight = asyncio.Semaphore(config.delivery_concurrency)
        self._endpoints = EndpointLimiter(config.endpoint_concurrency)
        self._deadlines = Deadlines()  # each request's DELIVERY_TIMEOUT, on one timer
        self.lease_ms = lease_ms(config)
        # A first attempt that waited longer than this for its endpoint's slot renews its
        # lease first: the lease (twice the timeout plus a second) then still covers the
        # request and leaves at least half a timeout to record it. Not on every short wait:
        # a backlog makes most deliveries wait a little, and renewals cost round trips.
        self._renew_after_seconds = config.delivery_timeout / 2

    def _now_ms(self) -> int:
        return epoch_ms(self._clock())

    # -- first attempts, from the stream consumer -----------------------------------------

    async def subscribers(self, event_types: set[str]) -> dict[str, list[StoredWebhook]]:
        """The webhooks subscribed to each of `event_types` (as stored, maybe qualified):
        one lookup per type serves every event of that type in a stream read."""
        types = list(event_types)
        if len(types) == 1:  # the usual read: no task per lookup
            return {
                types[0]: await self.webhooks.subscribers(types[0].removeprefix(QUALIFIED_PREFIX))
            }
        found = await asyncio.gather(
            *(self.webhooks.subscribers(t.removeprefix(QUALIFIED_PREFIX)) for t in types)
        )
        return dict(zip(types, found, strict=True))

    def deliver_event(
        self, entry_id: str, event: Event, webhooks: list[StoredWebhook], *, owner: str
    ) -> Coroutine[Any, Any, None]:
        """What delivers one stored event to `webhooks` (its subscribers, looked up after
        the entry was read): a coroutine that returns once each delivery is done or handed
        to arq (then the stream entry may be acknowledged). Built here, run by the caller's
        task: for one webhook it is that delivery's own coroutine, with no wrapper frame
        for each of its awaits to pass through."""
        if not webhooks:
            return _nothing()
        event_id = event_id_of(entry_id)
        payload = build_payload(event, event_id=event_id, stored_at=entry_time(entry_id))
        body = encode(payload)
        if len(webhooks) == 1:
            return self._first_attempt(entry_id, event_id, event.type, webhooks[0], body, owner)
        return _all(
            [
                self._first_attempt(entry_id, event_id, event.type, webhook, body, owner)
                for webhook in webhooks
            ]
        )

    async def _first_attempt(
        self,
        entry_id: str,
        event_id: str,
        event_type: str,
        webhook: StoredWebhook,
        body: bytes,
        owner: str,
    ) -> None:
        id_ = delivery_id(entry_id, webhook.id)
        if self._endpoints.saturated(webhook.id):
            # A slow endpoint must not hold the stream back: persist the delivery with its
            # payload and let arq attempt it when the endpoint has room.
            await self._hand_off(id_, webhook.id, event_id, event_type, body)
            return
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
                return
            async with slot, self._in_flight:
                if time.monotonic() - claimed_at > self._renew_after_seconds:
                    # Renew the lease (ours, so the claim says go), unless it lapsed
                    # meanwhile and was taken over.
                    claim = await self._claim(id_, webhook.id, event_id, event_type, owner)
                    if claim.claim is Claim.SKIP:
                        return
                delivery = StoredDelivery.new(
                    id_, webhook.id, event_id, event_type, claim.created_at_ms,
                    claim.attempts_made,
                )  # fmt: skip
                await self._attempt(delivery, webhook, body, owner, slot)
        finally:
            slot.leave()

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
        return self.deliveries.claim(
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
            await self.enqueue(id_, owner, delay=self.saturated_backoff())

    def saturated_backoff(self) -> float:
        """When to look again at a delivery whose endpoint is saturated. A slow endpoint frees
        a slot at most every request timeout, so polling it faster only burns CPU that the
        healthy endpoints need; jittered so that a backlog does not come back all at once."""
        return self.config.delivery_timeout * self._rng.uniform(0.5, 1.0)

    # -- later attempts, as arq jobs ------------------------------------------------------

    async def retry(self, id_: str, owner: str) -> bool:
        """Attempt a pending delivery whose lease `owner` holds (or nobody holds any more).
        False when its endpoint is saturated: the caller should try again later rather than
        wait here (an arq job slot must not idle behind one slow endpoint)."""
        delivery = await self.deliveries.get(id_)
        if delivery is None or delivery.status != "pending":
            return True
        if self._endpoints.saturated(delivery.webhook_id):
            return False
        body = delivery.payload or await self._payload_from_stream(delivery)
        async with self._endpoints.slot(delivery.webhook_id) as slot, self._in_flight:
            claim = await self.deliveries.claim(
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
            webhook = await self.webhooks.get(delivery.webhook_id)
            if body is None:
                await self._abandon(delivery, owner, "event_expired")
                return True
            await self._attempt(delivery, webhook, body, owner, slot)
        return True

    async def enqueue(self, id_: str, owner: str, *, delay: float) -> None:
        await enqueue_retry(self._jobs, id_, owner, delay=delay)

    async def _payload_from_stream(self, delivery: StoredDelivery) -> bytes | None:
        entry = entry_id(delivery.event_id)
        event = await self.events.get(delivery.event_id)
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
        slot: _Slot,
    ) -> None:
        # Called holding the endpoint's slot and a place among DELIVERY_CONCURRENCY. The
        # slot is freed once the request is answered (it limits the load on the endpoint,
        # and recording the outcome is none); the place is held until the outcome is
        # recorded, so that what a crash can make us send twice stays bounded.
        if webhook is None or not webhook.active:
            reason = "webhook_deleted" if webhook is None else "webhook_disabled"
            await self._abandon(delivery, owner, reason, body)
            return
        now = self._clock()
        headers = delivery_headers(
            secret=webhook.secret,
            delivery_id=delivery.id,
            timestamp=int(now.timestamp()),
            body=body,
            user_agent=USER_AGENT,
        )
        result = await self.send(webhook.url, headers, body)
        slot.free()
        number = delivery.attempts + 1
        attempt = Attempt(
            number=number,
            at=format_timestamp(now),
            latency_ms=result.latency_ms,
            status_code=result.status_code,
            error=result.error,
            response=result.response,
        )
        verdict, delay = self._judge(result, number)
        next_owner = lease_owner(delivery.id, LeaseTag.ATTEMPT, number + 1)
        now_ms = self._now_ms()
        status = await self.deliveries.record(
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
            error=result.error or (None if verdict == "succeeded" else "http_status"),
            disable_after_ms=self.config.disable_after_seconds * 1000,
            retention_count=self.config.delivery_retention_count,
            retention_seconds=self.config.delivery_retention_seconds,
        )
        if status == "pending" and delay is not None:
            await self.enqueue(delivery.id, next_owner, delay=delay)
        elif status == "disabled":
            logger.warning("webhook %d disabled after failing too long", webhook.id)
        elif verdict == "gone":
            logger.warning("webhook %d disabled: its endpoint answered 410 Gone", webhook.id)

    def _judge(self, result: SendResult, number: int) -> tuple[str, float | None]:
        retry_after: float | None = None
        if result.status_code is not None:
            outcome = classify_status(result.status_code)
            if outcome.verdict is Verdict.SUCCEEDED:
                return "succeeded", None
            if outcome.verdict is Verdict.GONE:
                return "gone", None
            if outcome.honour_retry_after:
                retry_after = parse_retry_after(result.retry_after, self._clock())
        delay = next_delay(self.config.retry_schedule, number, self._rng, retry_after=retry_after)
        return ("retry", delay) if delay is not None else ("failed", None)

    async def _abandon(
        self, delivery: StoredDelivery, owner: str, reason: str, body: bytes = b""
    ) -> None:
        """No attempt: the delivery fails as it is, and stays retryable by hand (recover)."""
        await self.deliveries.record(
            delivery,
            owner=owner,
            now_ms=self._now_ms(),
            verdict="abandoned",
            payload=body,
            error=reason,
            disable_after_ms=self.config.disable_after_seconds * 1000,
            retention_count=self.config.delivery_retention_count,
            retention_seconds=self.config.delivery_retention_seconds,
        )

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult:
        """POST once; transport errors become an error kind here, the one place they are seen."""
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        if not self.config.allow_private_urls:
            reason = private_host_reason(parse_url(url).host.rstrip(".").lower())
            if reason:  # an IP literal: no resolver sees it, so check it here
                return SendResult(elapsed(), error="blocked_address", response=reason)
        try:
            with self._deadlines.limit(self.config.delivery_timeout):
                async with self._http.post(url, headers, body) as response:
                    head = await _read_head(response)
                    return SendResult(
                        elapsed(),
                        status_code=response.status_code,
                        response=head.decode("utf-8", "replace"),
                        retry_after=response.headers.get("retry-after"),
                    )
        except (TimeoutError, httpx.TimeoutException):
            return SendResult(elapsed(), error="timeout")
        except httpx.TransportError as exc:
            blocked = blocked_reason(exc)
            if blocked:
                return SendResult(elapsed(), error="blocked_address", response=blocked)
            kind = "connect_error" if isinstance(exc, httpx.ConnectError) else "network_error"
            return SendResult(elapsed(), error=kind, response=str(exc)[:RESPONSE_LOG_BYTES])
        except (httpx.HTTPError, aiohttp.ClientError, ValueError) as exc:
            # Whatever else an endpoint's reply can make the stack raise (a malformed status
            # line, a bad Content-Length, …) is the endpoint's fault: an attempt that failed.
            logger.info("malformed reply from %s: %r", httpx.URL(url).host, exc)
            return SendResult(elapsed(), error="protocol_error", response=repr(exc)[:1024])


class EndpointLimiter:
    """At most `limit` attempts in flight per endpoint. An endpoint is saturated when all its
    slots have been busy for SLOW_AFTER_SECONDS and `limit` more attempts wait: it is slow,
    not merely bursty, and its next deliveries are handed to arq instead of waiting here."""

    SLOW_AFTER_SECONDS = 0.5

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._semaphores: dict[int, asyncio.Semaphore] = {}
        self._users: dict[int, int] = {}  # holders and waiters
        self._busy_since: dict[int, float] = {}  # when its last free slot was taken

    def saturated(self, key: int) -> bool:
        busy_since = self._busy_since.get(key)
        return (
            busy_since is not None
            and time.monotonic() - busy_since > self.SLOW_AFTER_SECONDS
            and self._users.get(key, 0) >= 2 * self._limit
        )

    def slot(self, key: int) -> _Slot:
        """`async with limiter.slot(endpoint):` one attempt's slot (a plain class rather than
        an asynccontextmanager: this runs for every delivery). Counted from creation."""
        return _Slot(self, key)

    def _join(self, key: int) -> asyncio.Semaphore:
        self._users[key] = self._users.get(key, 0) + 1
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            semaphore = self._semaphores[key] = asyncio.Semaphore(self._limit)
        return semaphore

    def _leave(self, key: int) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:  # idle: forget it, so the maps stay small
            del self._users[key], self._semaphores[key]


class _Slot:
    """One attempt's slot: counted as a user of the endpoint from creation (the saturation
    check sees it), held inside `async with` or until `free()`, and let go by `leave()` in
    any case."""

    __slots__ = ("_held", "_key", "_left", "_limiter", "_semaphore")

    def __init__(self, limiter: EndpointLimiter, key: int) -> None:
        self._limiter = limiter
        self._key = key
        self._semaphore = limiter._join(key)
        self._held = self._left = False

    async def __aenter__(self) -> _Slot:
        try:
            await self._semaphore.acquire()
        except BaseException:
            self.leave()
            raise
        self._held = True
        if self._semaphore.locked():  # its last free slot: busy from now
            self._limiter._busy_since.setdefault(self._key, time.monotonic())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.free()

    def free(self) -> None:
        """Done with the endpoint (its request answered); idempotent."""
        if self._held:
            self._held = False
            self._limiter._busy_since.pop(self._key, None)  # a slot is free again
            self._semaphore.release()
        self.leave()

    def leave(self) -> None:
        """No longer a user of the endpoint; idempotent."""
        if not self._left:
            self._left = True
            self._limiter._leave(self._key)


async def _nothing() -> None:
    pass


async def _all(attempts: list[Coroutine[Any, Any, None]]) -> None:
    """Every attempt to its end, even when one fails (the entry is done only when all are);
    then the first failure, if any."""
    for outcome in await asyncio.gather(*attempts, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


async def _read_head(response: httpx.Response) -> bytes:
    head = b""
    async for chunk in response.aiter_raw():
        head += chunk
        if len(head) >= RESPONSE_LOG_BYTES:
            break
    return head[:RESPONSE_LOG_BYTES]
