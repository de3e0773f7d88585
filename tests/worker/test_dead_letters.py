"""Dead letters end to end: the real worker (WorkerSettings), real Redis, a real receiver.
Poison entries are set aside while later events are delivered, trimming goes on past them,
and a redriven one is delivered."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest

from service.core.models import Event, WebhookPayload
from service.storage import keys
from tests.receiver import Receiver
from tests.worker.test_deliverer import (  # noqa: F401 (fixtures)
    Env,
    StartEnv,
    eventually,
    receivers,
    start_env,
)
from worker import consumer as consumer_module
from worker import deliverer as deliverer_module
from worker.settings import WorkerSettings

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ADMIN = "admin-key-0123456789abcdef"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
POISON = "msg_poison"


@pytest.fixture
def poison_fails(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Preparing the delivery of any event about POISON raises (a bug), until cured."""
    build_payload = deliverer_module.build_payload

    def failing(event: Event, *, event_id: str, stored_at: datetime) -> WebhookPayload:
        if event.email_id == POISON:
            raise ValueError("cannot build this payload")
        return build_payload(event, event_id=event_id, stored_at=stored_at)

    monkeypatch.setattr(deliverer_module, "build_payload", failing)
    # Reclaim every 0.2 s rather than 5 s: the poison's second try comes two leases later.
    monkeypatch.setattr(consumer_module, "RECLAIM_EVERY_SECONDS", 0.2)

    def cure() -> None:
        monkeypatch.setattr(deliverer_module, "build_payload", build_payload)

    return cure


async def dead_letters(env: Env) -> list[dict[str, Any]]:
    response = await env.api.get("/api/dead-letters", headers=AS_ADMIN)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["dead_letters"]
    return found


def email_ids(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["data"]["email_id"] for r in receiver.received]


async def test_poison_is_set_aside_later_events_deliver_trimming_goes_on_redrive_delivers(
    start_env: StartEnv,  # noqa: F811
    receivers: Callable[..., Awaitable[Receiver]],  # noqa: F811
    poison_fails: Callable[[], None],
) -> None:
    env = await start_env(
        admin_api_keys=(ADMIN,),
        events_maxlen=5,
        delivery_timeout=0.5,  # a lease of 2 s: entries are reclaimed after 4 s
        dead_letter_after=2,
    )
    receiver = await receivers()
    await env.webhook(receiver.url)
    garbage = (await env.redis.xadd(keys.EVENTS_STREAM, {"x": b"not an event"})).decode()
    await env.ingest(email_id=POISON)
    for n in range(20):
        await env.ingest(email_id=f"msg_{n}")

    # Every later event arrives; the poison never does.
    await receiver.wait_for(20, timeout=10)
    assert sorted(email_ids(receiver)) == sorted(f"msg_{n}" for n in range(20))

    # The garbage entry is set aside at once, the poison on its second failure.
    letters = await eventually(lambda: _count(env, 2), timeout=20)
    by_reason = {d["reason"]: d for d in letters}
    assert by_reason["unreadable"]["event_id"] == f"evt_{garbage}"
    poison = by_reason["failed"]
    assert poison["event"]["email_id"] == POISON
    assert poison["deliveries"] == 2
    assert poison["detail"] == "ValueError: cannot build this payload"
    assert (await env.redis.xpending(keys.EVENTS_STREAM, keys.DELIVERY_GROUP))["pending"] == 0

    status = (await env.api.get("/api/status", headers=AS_ADMIN)).json()
    assert status["events"]["dead_letters"] == 2
    assert any("2 dead letters" in problem for problem in status["problems"])

    # Trimming goes on past them: down to EVENTS_MAXLEN, the two oldest entries included.
    [trim] = [job for job in WorkerSettings.cron_jobs if job.name == "cron:trim_events"]
    await trim.coroutine(env.worker.ctx)
    remaining = [raw.decode() for raw, _ in await env.redis.xrange(keys.EVENTS_STREAM)]
    assert len(remaining) == 5
    assert garbage not in remaining
    assert poison["event_id"].removeprefix("evt_") not in remaining

    # Fixed, and redriven: delivered, as a new event of the same account.
    poison_fails()
    response = await env.api.post(f"/api/dead-letters/{poison['id']}/redrive", headers=AS_ADMIN)
    assert response.status_code == 202, response.text
    new_id = response.json()["event_id"]
    [*_, arrived] = await receiver.wait_for(21, timeout=10)
    payload = json.loads(arrived.body)
    assert (payload["id"], payload["data"]["email_id"]) == (new_id, POISON)
    assert [d["reason"] for d in await dead_letters(env)] == ["unreadable"]


async def _count(env: Env, count: int) -> list[dict[str, Any]] | None:
    found = await dead_letters(env)
    return found if len(found) == count else None
