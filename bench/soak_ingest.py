"""The soak test's inbound traffic: every provider's native body (from the fixtures in
tests/fixtures/providers/), each event with a unique provider event id and a unique email id,
posted in an open loop at a steady number of events per second.

Only event types that are delivered are sent (open, click, bounce, delivered, complaint,
unsubscribe, each provider's own names for them). Requests are unsigned: the soak runs with
ALLOW_UNSIGNED_INBOUND=true and no secrets.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "providers"
PROVIDERS = ("generic", "resend", "sendgrid", "mailgun")
PATHS = {
    "generic": "/api/webhooks",
    "resend": "/api/webhooks/resend",
    "sendgrid": "/api/webhooks/sendgrid",
    "mailgun": "/api/webhooks/mailgun",
}
GENERIC_TYPES = ("opened", "clicked", "bounced", "delivered", "complained", "unsubscribed")
RESEND_FIXTURES = (
    "open", "click", "bounce_hard", "delivered", "complaint", "unsubscribe_contact_updated",
)  # fmt: skip
SENDGRID_FIXTURES = (
    "open", "click", "bounce_hard", "delivered", "spamreport", "unsubscribe", "group_unsubscribe",
)  # fmt: skip
MAILGUN_FIXTURES = (
    "opened", "clicked", "failed_permanent", "delivered", "complained", "unsubscribed",
)  # fmt: skip
SENDGRID_BATCH = (1, 5)  # events per SendGrid request, drawn uniformly
CLIENT_TIMEOUT = 10.0
CONNECTIONS = 100


@dataclass(frozen=True)
class Request:
    provider: str
    path: str
    headers: dict[str, str]
    body: bytes
    email_ids: tuple[str, ...]


def _load(path: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / path).read_text())
    return dict(data[0] if isinstance(data, list) else data)


class Bodies:
    """`make(n)`: request n of a run tagged `tag`, providers in turn; deterministic for a seed."""

    def __init__(self, tag: str, seed: int = 0) -> None:
        self.tag = tag
        self.rng = random.Random(seed)
        self.resend = [_load(f"resend/{name}.json") for name in RESEND_FIXTURES]
        self.sendgrid = [_load(f"sendgrid/{name}.json") for name in SENDGRID_FIXTURES]
        self.mailgun = [_load(f"mailgun/{name}.event-data.json") for name in MAILGUN_FIXTURES]
        self.signature = _load("mailgun/signature_block.json")

    def make(self, number: int) -> Request:
        make = (self._generic, self._resend, self._sendgrid, self._mailgun)[number % 4]
        return make(number, time.time())

    def _email_id(self, letter: str, number: int) -> str:
        return f"{self.tag}-{letter}{number}"

    def _generic(self, number: int, now: float) -> Request:
        email_id = self._email_id("g", number)
        kind = GENERIC_TYPES[number // len(PROVIDERS) % len(GENERIC_TYPES)]
        body: dict[str, Any] = {
            "type": f"email.{kind}",
            "email_id": email_id,
            "recipient": "alex@example.com",
            "timestamp": int(now),
        }
        if kind == "bounced":
            body["bounce"] = {"kind": "hard", "reason": "550 5.1.1 unknown user"}
        elif kind == "clicked":
            body["click"] = {"url": "https://example.com/spring"}
        return self._request("generic", body, (email_id,))

    def _resend(self, number: int, now: float) -> Request:
        email_id = self._email_id("r", number)
        body = copy.deepcopy(self.resend[number // len(PROVIDERS) % len(self.resend)])
        if body["type"] == "contact.updated":
            body["data"].update(id=email_id, unsubscribed=True)
        else:
            body["data"]["email_id"] = email_id
        headers = {"svix-id": f"msg_{self.tag}_{number}", "svix-timestamp": str(int(now))}
        return self._request("resend", body, (email_id,), headers)

    def _sendgrid(self, number: int, now: float) -> Request:
        batch, email_ids = [], []
        for index in range(self.rng.randint(*SENDGRID_BATCH)):
            email_id = self._email_id("s", number) + f".{index}"
            event = dict(self.sendgrid[(number + index) % len(self.sendgrid)])
            event.update(
                sg_event_id=f"{self.tag}-{number}-{index}", sg_message_id=email_id, timestamp=now
            )
            batch.append(event)
            email_ids.append(email_id)
        return self._request("sendgrid", batch, tuple(email_ids))

    def _mailgun(self, number: int, now: float) -> Request:
        email_id = self._email_id("m", number)
        data = copy.deepcopy(self.mailgun[number // len(PROVIDERS) % len(self.mailgun)])
        data.update(id=f"{self.tag}-{number}", timestamp=now)
        data.setdefault("message", {}).setdefault("headers", {})["message-id"] = f"<{email_id}>"
        signature = {**self.signature, "token": f"{self.tag}{number:x}", "timestamp": str(int(now))}
        return self._request("mailgun", {"signature": signature, "event-data": data}, (email_id,))

    @staticmethod
    def _request(
        provider: str,
        body: Any,
        email_ids: tuple[str, ...],
        headers: dict[str, str] | None = None,
    ) -> Request:
        return Request(
            provider=provider,
            path=PATHS[provider],
            headers={"content-type": "application/json", **(headers or {})},
            body=json.dumps(body).encode(),
            email_ids=email_ids,
        )


@dataclass
class Ingested:
    """What an ingest run got back."""

    acknowledged: dict[str, float] = field(default_factory=dict)  # email_id → time.time() of 200
    failures: list[tuple[float, str]] = field(default_factory=list)  # (s since start, what)
    requests: Counter[str] = field(default_factory=Counter)  # per provider
    events: Counter[str] = field(default_factory=Counter)  # acknowledged, per provider
    sent_events: int = 0
    seconds: float = 0.0

    @property
    def failed_events(self) -> int:
        return self.sent_events - len(self.acknowledged)


async def post(
    session: aiohttp.ClientSession, base_url: str, request: Request
) -> tuple[int | None, str]:
    """POST one request; (status, body) or (None, the exception's class name)."""
    try:
        async with session.post(
            base_url + request.path,
            data=request.body,
            headers=request.headers,
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT),
        ) as response:
            return response.status, (await response.read()).decode(errors="replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, type(exc).__name__


async def paced_ingest(
    base_url: str, bodies: Bodies, result: Ingested, *, rate: float, seconds: float
) -> None:
    """Open loop: requests go out on schedule, `rate` events per second for `seconds` (a
    SendGrid batch of k events takes k slots), whatever the answers; waits for the last.
    Fills `result` as answers come (the caller may watch it)."""
    in_flight: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()

        async def one(request: Request) -> None:
            status, text = await post(session, base_url, request)
            result.requests[request.provider] += 1
            if status == 200:
                now = time.time()
                for email_id in request.email_ids:
                    result.acknowledged[email_id] = now
                result.events[request.provider] += len(request.email_ids)
            else:
                what = str(status) if status is not None else text
                if status is not None and status != 503:
                    what += f" {text[:120]}"
                result.failures.append((time.perf_counter() - started, what))

        number, next_at = 0, 0.0
        while next_at < seconds:
            delay = started + next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            request = bodies.make(number)
            number += 1
            result.sent_events += len(request.email_ids)
            task = asyncio.create_task(one(request))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            next_at += len(request.email_ids) / rate
        if in_flight:
            await asyncio.wait(in_flight)
        result.seconds = time.perf_counter() - started
