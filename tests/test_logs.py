"""Logs: LOG_FORMAT (text or JSON lines with ids), ACCESS_LOG, arq's job lines at DEBUG, the
delivery outcome lines; and, end to end, JSON logs of web and worker that name what they are
about and hold no secret, key or payload."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from config import Config
from devtools.redis_server import PrivateRedis, free_port, wait_for_port
from service import logs
from service.core.outcome import ErrorKind, Verdict
from service.http.server import RedactCredentials
from service.storage.deliveries import StoredDelivery
from service.storage.webhooks import StoredWebhook
from tests.conftest import StartProcess
from tests.receiver import Receiver, Reply
from tests.signers import INBOUND_SECRET, generic_headers
from worker import outcomes
from worker.outcomes import OutcomeLog
from worker.sender import SendResult
from worker.settings import JobProgressAtDebug, configure_logging

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def record(
    message: str = "webhook %d created",
    args: tuple[Any, ...] = (3,),
    *,
    name: str = "mailhooks.webhooks",
    level: int = logging.INFO,
    **extra: Any,
) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


class TestJsonFormatter:
    def format(self, made: logging.LogRecord) -> dict[str, Any]:
        line = logs.JsonFormatter().format(made)
        assert "\n" not in line
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def test_fields_and_ids(self) -> None:
        line = self.format(record(webhook_id=3, account_id="acc_x", request_id="req-1"))
        assert TIMESTAMP.fullmatch(line.pop("timestamp"))
        assert line == {
            "level": "INFO",
            "logger": "mailhooks.webhooks",
            "message": "webhook 3 created",
            "request_id": "req-1",
            "account_id": "acc_x",
            "webhook_id": 3,
        }

    def test_writes_no_field_it_does_not_know(self) -> None:
        line = self.format(record(secret="whsec_abc", body=b"{}", webhook_id=None))
        assert set(line) == {"timestamp", "level", "logger", "message"}

    def test_an_exception_carries_its_traceback(self) -> None:
        try:
            raise ConnectionError("redis went away")
        except ConnectionError:
            made = record("delivering entry %s failed", ("1-0",), level=logging.ERROR)
            made.exc_info = sys.exc_info()
        line = self.format(made)
        assert line["level"] == "ERROR"
        assert "ConnectionError: redis went away" in line["exception"]

    def test_uvicorns_access_line(self) -> None:
        made = record(
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5000", "GET", "/healthz?api_key=secret-value", "1.1", 200),
            name="uvicorn.access",
        )
        RedactCredentials().filter(made)
        line = self.format(made)
        assert line["message"] == '127.0.0.1:5000 - "GET /healthz?api_key=*** HTTP/1.1" 200'
        assert (line["method"], line["path"], line["status"]) == (
            "GET",
            "/healthz?api_key=***",
            200,
        )
        assert "secret-value" not in json.dumps(line)

    def test_request_ids_come_from_the_router_header(self) -> None:
        assert logs.ids({"x-request-id": "abc"}, webhook_id=1) == {
            "webhook_id": 1,
            "request_id": "abc",
        }
        assert logs.ids({}, webhook_id=1) == {"webhook_id": 1}
        assert len(logs.ids({"x-request-id": "x" * 1000})["request_id"]) == 200


@pytest.fixture
def logging_state() -> Iterator[None]:
    """configure() changes process-wide logging: put it back afterwards."""
    names = ["", "mailhooks", "uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker"]
    saved = {
        name: (list(lg.handlers), lg.propagate, lg.level, list(lg.filters))
        for name in names
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, propagate, level, filters) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.propagate, lg.level, lg.filters[:] = handlers, propagate, level, filters


@pytest.mark.usefixtures("logging_state")
class TestConfigure:
    def test_access_log_is_off_unless_asked_for(self) -> None:
        # uvicorn asks hasHandlers() for each connection and skips the line when False.
        logs.configure(Config())
        assert not logging.getLogger("uvicorn.access").hasHandlers()
        logs.configure(Config(access_log=True))
        assert logging.getLogger("uvicorn.access").hasHandlers()

    def test_one_handler_of_ours_however_often_configured(self) -> None:
        logs.configure(Config(log_format="json"))
        logs.configure(Config(log_format="json"))
        ours = [h for h in logging.getLogger().handlers if isinstance(h, logs._Handler)]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, logs.JsonFormatter)
        assert not logging.getLogger("arq").handlers  # arq's own handler: through ours

    def test_our_level_is_log_level_and_uvicorns_never_below_info(self) -> None:
        logs.configure(Config(log_level="DEBUG"))
        assert logging.getLogger("mailhooks").level == logging.DEBUG
        assert logging.getLogger("uvicorn").level == logging.INFO
        logs.configure(Config(log_level="ERROR"))
        assert logging.getLogger("uvicorn").level == logging.ERROR


ARQ_START = "%6.2fs → %s(%s)%s"
ARQ_FINISH = "%6.2fs ← %s ● %s"
ARQ_FAILED = "%6.2fs ! %s failed, %s: %s"


@pytest.mark.usefixtures("logging_state")
class TestArqJobLines:
    def shown(self, log_level: str, made: logging.LogRecord) -> logging.LogRecord | None:
        configure_logging(Config(log_level=log_level))
        arq = logging.getLogger("arq.worker")
        if not arq.isEnabledFor(made.levelno):
            return None
        return made if all(f.filter(made) for f in arq.filters) else None

    @pytest.mark.parametrize(
        ("message", "args"),
        [
            (ARQ_START, (0.0, "cron:heartbeat", "", "")),
            (ARQ_FINISH, (0.0, "cron:trim_events", "")),
            (ARQ_START, (5.2, "abc:retry_delivery", "'dlv_1', 'owner'", " try=2")),
            ("%6.2fs ↻ %s retrying job in %0.2fs", (0.0, "abc:retry_delivery", 7.5)),
        ],
    )
    def test_job_progress_is_debug(self, message: str, args: tuple[Any, ...]) -> None:
        assert self.shown("INFO", record(message, args, name="arq.worker")) is None
        shown = self.shown("DEBUG", record(message, args, name="arq.worker"))
        assert shown is not None
        assert shown.levelname == "DEBUG"

    def test_failures_and_arqs_other_lines_stay(self) -> None:
        failed = record(
            ARQ_FAILED, (0.1, "cron:trim_events", "RedisError", "x"), level=logging.ERROR
        )
        assert self.shown("INFO", failed) is failed
        assert failed.levelname == "ERROR"
        starting = record("Starting worker for %d functions: %s", (5, "…"), name="arq.worker")
        assert self.shown("INFO", starting) is starting

    def test_the_filter_is_installed_once(self) -> None:
        configure_logging(Config())
        configure_logging(Config())
        filters = logging.getLogger("arq.worker").filters
        assert sum(isinstance(f, JobProgressAtDebug) for f in filters) == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


DELIVERY = StoredDelivery.new("dlv_1-0_3", 3, "evt_1-0", "email.open", 0, 0)
WEBHOOK = StoredWebhook(
    id=3,
    url="https://user:pw@hooks.example/path-token",
    events=("*",),
    secret="whsec_do-not-log",
    active=True,
    created_at="",
    updated_at="",
    account="acc_x",
)


class TestOutcomeLog:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def log(self, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> OutcomeLog:
        caplog.set_level(logging.DEBUG, logger="mailhooks.delivery")
        return OutcomeLog(clock)

    def test_a_success_names_the_delivery_and_what_the_endpoint_answered(
        self, log: OutcomeLog, caplog: pytest.LogCaptureFixture
    ) -> None:
        log.attempt(DELIVERY, WEBHOOK, 1, SendResult(12, 200), Verdict.SUCCEEDED, "succeeded", None)
        (line,) = caplog.records
        assert line.levelno == logging.INFO
        assert (
            line.getMessage()
            == "delivery dlv_1-0_3 to webhook 3 succeeded: 200 in 12 ms (attempt 1)"
        )
        assert (line.delivery_id, line.event_id, line.webhook_id, line.account_id) == (  # type: ignore[attr-defined]
            "dlv_1-0_3",
            "evt_1-0",
            3,
            "acc_x",
        )
        assert "hooks.example" not in caplog.text
        assert "whsec" not in caplog.text

    def test_failures_say_why_and_what_follows(
        self, log: OutcomeLog, caplog: pytest.LogCaptureFixture
    ) -> None:
        refused = SendResult(3, error=ErrorKind.CONNECT_ERROR, response="Connection refused")
        log.attempt(DELIVERY, WEBHOOK, 1, refused, Verdict.RETRY, "pending", 5.2)
        log.attempt(
            DELIVERY,
            WEBHOOK,
            8,
            SendResult(15000, error=ErrorKind.TIMEOUT),
            Verdict.FAILED,
            "failed",
            None,
        )
        log.attempt(
            DELIVERY, WEBHOOK, 2, SendResult(4, 410, response="bye"), Verdict.GONE, "failed", None
        )
        log.abandoned(DELIVERY, ErrorKind.WEBHOOK_DELETED)
        assert [r.getMessage() for r in caplog.records] == [
            "delivery dlv_1-0_3 to webhook 3 failed, will retry in 5 s: "
            "connect_error (Connection refused) in 3 ms (attempt 1)",
            "delivery dlv_1-0_3 to webhook 3 failed, no attempts left: timeout in 15000 ms "
            "(attempt 8)",
            "delivery dlv_1-0_3 to webhook 3 failed, webhook disabled: 410 Gone: 410 in 4 ms "
            "(attempt 2)",
            "delivery dlv_1-0_3 to webhook 3 abandoned: webhook_deleted",
        ]
        assert "bye" not in caplog.text  # the endpoint's reply stays in the attempt log

    def test_past_the_lines_per_second_debug_then_a_summary(
        self, log: OutcomeLog, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        ok = SendResult(1, 200)
        for _ in range(outcomes.LINES_PER_SECOND + 5):
            log.attempt(DELIVERY, WEBHOOK, 1, ok, Verdict.SUCCEEDED, "succeeded", None)
        levels = [r.levelno for r in caplog.records]
        assert levels == [logging.INFO] * outcomes.LINES_PER_SECOND + [logging.DEBUG] * 5
        clock.now += 1  # a new second: INFO again
        log.attempt(DELIVERY, WEBHOOK, 1, SendResult(2, 500), Verdict.RETRY, "pending", 5)
        assert caplog.records[-1].levelno == logging.INFO
        caplog.clear()
        log.summary_if_due()  # not a minute yet
        assert not caplog.records
        clock.now += outcomes.SUMMARY_SECONDS
        log.summary_if_due()  # as the heartbeat job calls it
        (summary,) = caplog.records
        assert summary.levelno == logging.INFO
        assert summary.getMessage() == (
            "delivery attempts in the last 61 s: 25 succeeded, 1 to retry (5 not logged one by one)"
        )
        caplog.clear()
        clock.now += outcomes.SUMMARY_SECONDS
        log.summary_if_due()  # nothing since: no line
        assert not caplog.records


# -- end to end ----------------------------------------------------------------------------

ADMIN_KEY = "admin-key-for-the-logs-test-0123"
WEBHOOK_SECRET = "whsec_" + "bG9ncy10ZXN0LXdlYmhvb2stc2VjcmV0"
PAYLOAD_MARK = "payload-mark@example.com"


def json_lines(output: bytes) -> list[dict[str, Any]]:
    """Every line of a process's output, each of which must be a JSON object."""
    lines = [json.loads(line) for line in output.decode().splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def stopped(process: Any) -> bytes:
    process.terminate()
    output, _ = process.communicate(timeout=30)
    assert isinstance(output, bytes)
    return output


@pytest.mark.redis
@pytest.mark.anyio
async def test_json_logs_name_the_ids_and_hold_no_secret_key_or_payload(
    start_process: StartProcess, redis_server: PrivateRedis
) -> None:
    redis = Redis.from_url(redis_server.url)
    await redis.flushall()
    await redis.aclose()
    receiver = await Receiver.start([Reply(status=500), Reply()])  # a retry, then success
    port = free_port()
    env = {
        "REDIS_URL": redis_server.url,
        "PORT": str(port),
        "ADMIN_API_KEYS": ADMIN_KEY,
        "INBOUND_SECRET": INBOUND_SECRET,
        "ALLOW_HTTP_URLS": "true",
        "ALLOW_PRIVATE_URLS": "true",
        "RETRY_SCHEDULE": "0,0.2",
        "LOG_FORMAT": "json",
    }
    web = start_process("web", **env)
    worker = start_process("worker", **env)
    try:
        wait_for_port(port, timeout=20, process=web)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            account = (await api.post("/api/accounts", json={"name": "Acme"}, headers=admin)).json()
            key = (await api.post(f"/api/accounts/{account['id']}/keys", headers=admin)).json()
            created = await api.post(
                "/api/webhooks/manage",
                json={"url": receiver.url, "events": "*", "secret": WEBHOOK_SECRET},
                headers={"Authorization": f"Bearer {key['key']}", "X-Request-ID": "req-7"},
            )
            assert created.status_code == 201
            body = json.dumps(
                {
                    "type": "email.opened",
                    "email_id": "msg_logs_1",
                    "recipient": PAYLOAD_MARK,
                    "account_id": account["id"],
                }
            ).encode()
            stored = await api.post("/api/webhooks", content=body, headers=generic_headers(body))
            assert stored.status_code == 200
            await receiver.wait_for(2, timeout=20)
    finally:
        await receiver.stop()
    web_lines = json_lines(stopped(web))
    worker_lines = json_lines(stopped(worker))

    webhook_id = created.json()["id"]
    (created_line,) = [line for line in web_lines if line["logger"] == "mailhooks.webhooks"]
    assert created_line["webhook_id"] == webhook_id
    assert created_line["account_id"] == account["id"]
    assert created_line["request_id"] == "req-7"
    assert {"timestamp", "level", "message"} <= set(created_line)
    attempts = [line for line in worker_lines if line["logger"] == "mailhooks.delivery"]
    assert [(a["outcome"], a["status_code"], a["attempt"]) for a in attempts] == [
        ("pending", 500, 1),
        ("succeeded", 200, 2),
    ]
    for attempt in attempts:
        assert attempt["webhook_id"] == webhook_id
        assert attempt["account_id"] == account["id"]
        assert attempt["event_id"].startswith("evt_")
        assert attempt["delivery_id"].startswith("dlv_")
    everything = json.dumps(web_lines + worker_lines)
    for secret in (WEBHOOK_SECRET, key["key"], ADMIN_KEY, INBOUND_SECRET, PAYLOAD_MARK):
        assert secret not in everything
    assert receiver.url not in everything
    # arq's lines for the heartbeat job, run at start, and the retry job are DEBUG.
    job_lines = [line for line in worker_lines if re.search("[→←]", line["message"])]
    assert not job_lines
    assert not [line for line in web_lines if line["logger"] == "uvicorn.access"]


@pytest.mark.redis
def test_access_log_when_asked_for(start_process: StartProcess, redis_server: PrivateRedis) -> None:
    outputs = {}
    for access_log in ("true", "false"):
        port = free_port()
        web = start_process(
            "web",
            REDIS_URL=redis_server.url,
            PORT=str(port),
            LOG_FORMAT="json",
            ACCESS_LOG=access_log,
        )
        wait_for_port(port, timeout=20, process=web)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz?api_key=pasted-key").status_code == 200
        outputs[access_log] = json_lines(stopped(web))
    (line,) = [line for line in outputs["true"] if line["logger"] == "uvicorn.access"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz?api_key=***", 200)
    assert "pasted-key" not in json.dumps(outputs["true"])
    assert not [line for line in outputs["false"] if line["logger"] == "uvicorn.access"]
