"""`mailhooks`, run as its console script in a subprocess against a real Redis, end to end:
accounts and keys it creates are used over HTTP, a failed delivery it retries is attempted by
the (in-process) worker, dead letters it lists and redrives are delivered."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from devtools.redis_server import PrivateRedis
from service.core.models import Event, WebhookPayload
from service.storage import keys
from tests.conftest import MakeClient
from tests.receiver import Receiver, Reply
from tests.worker.test_deliverer import (  # noqa: F401 (fixtures)
    SECRET,
    StartEnv,
    eventually,
    receivers,
    start_env,
)
from worker import deliverer as deliverer_module

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

MAILHOOKS = Path(sys.executable).parent / "mailhooks"  # the console script pyproject declares
ADMIN = "admin-key-0123456789abcdef"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


Run = Callable[..., Awaitable[Result]]


@pytest.fixture
def mailhooks(redis_server: PrivateRedis) -> Run:
    """`await mailhooks("status", "--json", REDIS_URL=...)`: the command's exit code and
    output, with the environment of the test process and this Redis."""

    async def run(*args: str, **env: str) -> Result:
        environ = {**os.environ, "REDIS_URL": redis_server.url, **env}
        process = await asyncio.create_subprocess_exec(
            str(MAILHOOKS),
            *args,
            env=environ,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode is not None
        return Result(process.returncode, stdout.decode(), stderr.decode())

    return run


async def test_an_account_and_key_made_with_the_cli_work_over_http(
    mailhooks: Run, make_client: MakeClient, make_config: Any, real_redis: Redis
) -> None:
    created = await mailhooks("accounts", "create", "Acme")
    assert created.code == 0, created.stderr
    account = created.stdout.strip()
    assert account.startswith("acc_")
    issued = await mailhooks("keys", "create", account)
    assert issued.code == 0, issued.stderr
    key = issued.stdout.strip()
    assert key.startswith("mh_")
    assert "shown this once" in issued.stderr
    assert key not in issued.stderr

    client = await make_client(config=make_config(admin_api_keys=(ADMIN,)), redis=real_redis)
    as_acme = {"Authorization": f"Bearer {key}"}
    hook = {"url": "https://acme.example/hooks", "events": "open,click", "secret": SECRET}
    response = await client.post("/api/webhooks/manage", json=hook, headers=as_acme)
    assert response.status_code == 201, response.text
    webhook_id = response.json()["id"]

    listed = await mailhooks("webhooks", "list", "--account", account, "--json")
    assert listed.code == 0, listed.stderr
    assert listed.json() == {
        "webhooks": [
            {
                "id": webhook_id,
                "account_id": account,
                "url": "https://acme.example/hooks",
                "events": "open,click",
                "active": True,
                "disabled_reason": None,
                "created_at": response.json()["created_at"],
                "rate_limit": None,
            }
        ]
    }
    everyone = await mailhooks("--json", "webhooks", "list")
    assert [w["id"] for w in everyone.json()["webhooks"]] == [webhook_id]
    text = await mailhooks("webhooks", "list")
    assert text.stdout.split() == [
        str(webhook_id),
        account,
        "active",
        "open,click",
        "https://acme.example/hooks",
    ]
    assert SECRET not in everyone.stdout + text.stdout

    accounts = (await mailhooks("accounts", "list", "--json")).json()["accounts"]
    # The web process made the default account (API_KEYS is set): it sorts last.
    assert [(a["id"], a["name"]) for a in accounts] == [
        (account, "Acme"),
        ("acc_default", "default"),
    ]


async def test_retry_recover_status_and_dead_letters_with_a_worker_running(
    mailhooks: Run,
    start_env: StartEnv,  # noqa: F811
    receivers: Callable[..., Awaitable[Receiver]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_payload = deliverer_module.build_payload

    def failing(event: Event, *, event_id: str, stored_at: datetime) -> WebhookPayload:
        if event.email_id == "msg_poison":
            raise ValueError("cannot build this payload")
        return build_payload(event, event_id=event_id, stored_at=stored_at)

    monkeypatch.setattr(deliverer_module, "build_payload", failing)
    env = await start_env(admin_api_keys=(ADMIN,), retry_schedule=(0.0,), dead_letter_after=1)
    receiver = await receivers(Reply(500), Reply(200), Reply(500), Reply(200))
    webhook_id = await env.webhook(receiver.url)

    # A delivery fails (one attempt in the schedule); retried with the CLI, it succeeds.
    await env.ingest(email_id="msg_1")
    await receiver.wait_for(1)
    [failed] = await eventually(lambda: env.deliveries(webhook_id, status="failed"))
    retried = await mailhooks("deliveries", "retry", failed["id"])
    assert retried.code == 0, retried.stderr
    assert failed["id"] in retried.stdout
    second = (await receiver.wait_for(2))[1]
    assert second.headers["webhook-id"] == failed["id"]
    await eventually(lambda: env.deliveries(webhook_id, status="succeeded"))

    # Another fails; recover re-queues the webhook's failed deliveries since a time.
    await env.ingest(email_id="msg_2")
    await receiver.wait_for(3)
    await eventually(lambda: env.deliveries(webhook_id, status="failed"))
    recovered = await mailhooks(
        "recover", "--webhook", str(webhook_id), "--since", "2020-01-01T00:00:00Z", "--json"
    )
    assert (recovered.code, recovered.json()) == (0, {"requeued": 1})
    fourth = (await receiver.wait_for(4))[3]
    assert json.loads(fourth.body)["data"]["email_id"] == "msg_2"

    # An event whose delivery cannot be prepared is set aside; listed, then redriven.
    await env.ingest(email_id="msg_poison")
    garbage = (await env.redis.xadd(keys.EVENTS_STREAM, {"x": b"1"})).decode()
    listed = await eventually(lambda: _letters(mailhooks, 2))
    by_reason = {letter["reason"]: letter for letter in listed}
    assert by_reason["unreadable"]["event_id"] == f"evt_{garbage}"
    poison = by_reason["failed"]
    assert poison["event"]["email_id"] == "msg_poison"
    text = await mailhooks("dead-letters", "list")
    assert poison["id"] in text.stdout
    assert "ValueError: cannot build this payload" in text.stdout
    shown = (await mailhooks("dead-letters", "show", poison["id"])).stdout
    assert json.loads(shown)["fields"]["a"] == "acc_default"

    # The worker beats at its start and every 15 s; a beat can be a few seconds away when a
    # test before this one left arq's start-up cron run marked as done.
    status = await eventually(lambda: _alive_status(mailhooks), timeout=20)
    assert status["events"]["dead_letters"] == 2

    monkeypatch.setattr(deliverer_module, "build_payload", build_payload)
    redriven = await mailhooks("dead-letters", "redrive", poison["id"], "--json")
    assert redriven.code == 0, redriven.stderr
    fifth = (await receiver.wait_for(5))[4]
    payload = json.loads(fifth.body)
    assert (payload["id"], payload["data"]["email_id"]) == (
        redriven.json()["event_id"],
        "msg_poison",
    )
    deleted = await mailhooks("dead-letters", "delete", by_reason["unreadable"]["id"])
    assert deleted.code == 0, deleted.stderr
    assert (await mailhooks("dead-letters", "list", "--json")).json() == {"dead_letters": []}
    assert (await mailhooks("status")).stdout.startswith("ok")


async def _alive_status(mailhooks: Run) -> dict[str, Any] | None:
    status: dict[str, Any] = (await mailhooks("status", "--json")).json()
    return status if status["worker"]["alive"] else None


async def _letters(mailhooks: Run, count: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = (await mailhooks("dead-letters", "list", "--json")).json()[
        "dead_letters"
    ]
    return found if len(found) == count else None


class TestErrors:
    async def test_expected_errors_are_one_line_on_stderr_and_exit_1(
        self, mailhooks: Run, real_redis: Redis
    ) -> None:
        for args in (
            ("keys", "create", "acc_0000000000nosuchacct"),
            ("webhooks", "list", "--account", "acc_0000000000nosuchacct"),
            ("deliveries", "retry", "dlv_1-0_1"),
            ("recover", "--webhook", "7", "--since", "2020-01-01"),
            ("dead-letters", "show", "dl_1-0"),
            ("dead-letters", "redrive", "dl_1-0"),
            ("dead-letters", "delete", "dl_1-0"),
        ):
            result = await mailhooks(*args)
            assert result.code == 1, args
            assert result.stderr.startswith("mailhooks: ")
            assert result.stderr.count("\n") == 1
            assert "does not exist" in result.stderr
            assert result.stdout == ""

    async def test_redis_unreachable(self, mailhooks: Run) -> None:
        result = await mailhooks("status", REDIS_URL="redis://:hunter2@127.0.0.1:1/0")
        assert result.code == 1
        assert result.stderr.startswith("mailhooks: cannot reach Redis at redis://:***@127.0.0.1:1")
        assert "hunter2" not in result.stderr
        assert "Traceback" not in result.stderr

    async def test_a_bad_setting_is_named(self, mailhooks: Run) -> None:
        result = await mailhooks("status", DEAD_LETTER_AFTER="none")
        assert (result.code, result.stderr.count("\n")) == (1, 1)
        assert "DEAD_LETTER_AFTER" in result.stderr

    @pytest.mark.parametrize(
        "args",
        [
            (),
            ("accounts",),
            ("keys", "create", "not-an-account"),
            ("recover", "--webhook", "1"),
            ("recover", "--webhook", "1", "--since", "yesterday"),
            ("dead-letters", "redrive", "dl_1-0", "--since", "2020-01-01"),
            ("dead-letters", "show", "evt_1-0"),
        ],
    )
    async def test_usage_errors_exit_2(self, mailhooks: Run, args: tuple[str, ...]) -> None:
        result = await mailhooks(*args)
        assert result.code == 2
        assert "usage: mailhooks" in result.stderr
        assert "Traceback" not in result.stderr
