"""End to end: the Procfile's own web and worker commands against a private real Redis."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
import redis

from devtools.redis_cluster import PrivateCluster
from devtools.redis_server import PrivateRedis, free_port, wait_for_port
from service.storage import keys
from tests.conftest import API_KEY, StartProcess

pytestmark = pytest.mark.redis

MANAGE = "/api/webhooks/manage"


@dataclass
class Web:
    process: subprocess.Popen[bytes]
    client: httpx.Client

    def stop(self) -> str:
        """SIGTERM, as the platform sends; returns the output after checking it was graceful."""
        self.client.close()
        self.process.terminate()
        output, _ = self.process.communicate(timeout=15)
        # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean exit too.
        assert self.process.returncode in (0, -signal.SIGTERM)
        assert b"Application shutdown complete" in output
        return output.decode()


@pytest.fixture
def start_web(start_process: StartProcess) -> Callable[[str], Web]:
    def start(redis_url: str) -> Web:
        port = free_port()
        process = start_process("web", REDIS_URL=redis_url, PORT=str(port))
        wait_for_port(port, timeout=20, process=process)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return Web(process, httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers))

    return start


def test_webhooks_survive_a_restart_of_web(
    start_web: Callable[[str], Web], durable_redis: PrivateRedis
) -> None:
    web = start_web(durable_redis.url)
    assert web.client.get("/readyz").json() == {"status": "ready"}
    body = {"url": "https://a.example/h", "events": "open,bounce"}
    assert web.client.post(MANAGE, json=body).status_code == 201
    before = web.client.get(MANAGE).json()
    assert before["webhooks"][0]["events"] == "open,bounce"
    output = web.stop()
    assert "mailhooks.webhooks: webhook 1 created in acc_default, events=open,bounce" in output
    assert body["url"] not in output

    web = start_web(durable_redis.url)
    assert web.client.get(MANAGE).json() == before
    web.stop()


def test_webhooks_survive_a_restart_of_redis(
    start_web: Callable[[str], Web], durable_redis: PrivateRedis
) -> None:
    web = start_web(durable_redis.url)
    body = {"url": "https://a.example/h", "events": "*"}
    assert web.client.post(MANAGE, json=body).status_code == 201
    before = web.client.get(MANAGE).json()
    durable_redis.restart()
    # The same web process reconnects by itself.
    assert web.client.get(MANAGE).json() == before
    assert web.client.get("/readyz").status_code == 200
    web.stop()


def test_worker_starts_and_reports_in(
    start_process: StartProcess, redis_server: PrivateRedis
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.delete(keys.WORKER_HEARTBEAT)
    worker = start_process("worker", REDIS_URL=redis_server.url)
    deadline = time.monotonic() + 20
    while client.get(keys.WORKER_HEARTBEAT) is None and time.monotonic() < deadline:
        assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
        time.sleep(0.05)
    assert client.get(keys.WORKER_HEARTBEAT) is not None
    worker.terminate()
    assert worker.wait(timeout=15) == 0
    client.close()


@pytest.mark.parametrize("name", ["web", "worker"])
@pytest.mark.parametrize(
    ("variable", "value"), [("MAX_BODY_BYTES", "lots"), ("REDIS_URL", "http://nope")]
)
def test_bad_config_stops_the_process_naming_the_variable(
    start_process: StartProcess, name: str, variable: str, value: str
) -> None:
    process = start_process(name, **{variable: value, "PORT": str(free_port())})
    output, _ = process.communicate(timeout=20)
    assert process.returncode != 0
    assert variable in output.decode()


def test_web_refuses_to_start_without_api_keys(start_process: StartProcess) -> None:
    process = start_process("web", API_KEYS="", PORT=str(free_port()))
    output, _ = process.communicate(timeout=20)
    assert process.returncode != 0
    assert "API_KEYS" in output.decode()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SENDGRID_WEBHOOK_PUBLIC_KEY", "not-a-key"), ("RESEND_WEBHOOK_SECRET", "whsec_!!")],
)
def test_web_refuses_malformed_provider_keys(
    start_process: StartProcess, variable: str, value: str
) -> None:
    process = start_process("web", PORT=str(free_port()), **{variable: value})
    output, _ = process.communicate(timeout=20)
    assert process.returncode != 0
    assert variable in output.decode()
    assert value not in output.decode()


def test_web_starts_on_a_redis_cluster_from_any_node(
    start_process: StartProcess, redis_cluster: PrivateCluster
) -> None:
    port = free_port()
    node = redis_cluster.nodes[1]
    process = start_process(
        "web", REDIS_URL=node.url, REDIS_CLUSTER="true", PORT=str(port), quiet=True
    )
    wait_for_port(port, timeout=20, process=process)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"status": "ready"}
