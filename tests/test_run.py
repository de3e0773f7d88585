"""`make run`'s launcher: Redis (private, or the labelled fallback), web and worker, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.procfile import ROOT
from devtools.redis_server import free_port

pytestmark = pytest.mark.redis


class Launcher:
    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group: teardown kills every process it started, grandchildren
            # included, which would otherwise hold the pipe open and hang the pump's reader.
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first line so far, or to come, that matches `pattern`."""
        for line in self.seen:
            if match := re.search(pattern, line):
                return match
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break  # exited, and everything it printed has been read
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"{pattern!r} not seen in:\n{''.join(self.seen)}")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[type[Launcher]]:
    launched: list[Launcher] = []

    def start(**env: str) -> Launcher:
        unset = ("REDIS_URL", "API_KEYS", "ADMIN_API_KEYS", "PORTAL_SECRET")
        base = {k: v for k, v in os.environ.items() if k not in unset}
        base.update(MAILHOOKS_DATA_DIR=str(tmp_path), PORT=str(free_port()), **env)
        launcher = Launcher(base)
        launched.append(launcher)
        return launcher

    yield start  # type: ignore[misc]
    for launcher in launched:
        # The whole group: an orphaned web or worker (a failed test's) keeps the pipe open.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.process.pid, signal.SIGKILL)
        launcher.process.wait()
        launcher.pump.join(timeout=5)
        assert launcher.process.stdout is not None
        if not launcher.pump.is_alive():  # else close() would wait on the pump's read
            launcher.process.stdout.close()


def exercise(launcher: Launcher) -> None:
    """The printed URL and keys work; Ctrl-C then stops everything that was started."""
    url = launcher.wait_for(r"mailhooks: (http://\S+)").group(1)
    key = launcher.wait_for(r"API key:\s+(\S+)").group(1)
    admin_key = launcher.wait_for(r"Admin key:\s+(\S+)").group(1)
    # Printed once the socket is bound ("Application startup complete" comes before it).
    launcher.wait_for(r"Uvicorn running on")
    launcher.wait_for(r"Starting worker")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        created = client.post(
            "/api/webhooks/manage", json={"url": "https://a.example/", "events": "open"}
        )
        assert created.status_code == 201
        admin = {"Authorization": f"Bearer {admin_key}"}
        account = client.post("/api/accounts", json={"name": "Acme"}, headers=admin)
        assert account.status_code == 201
        link = client.post("/api/accounts/acc_default/portal-links")  # a dev PORTAL_SECRET
        assert link.status_code == 201
        assert client.get(link.json()["url"]).status_code == 303
    launcher.process.send_signal(signal.SIGINT)
    assert launcher.process.wait(timeout=30) in (0, 128 + signal.SIGINT)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


def test_private_redis_server_with_aof(launch: type[Launcher], tmp_path: Path) -> None:
    launcher = launch()
    redis_url = launcher.wait_for(r"private redis-server at (redis://\S+)").group(1)
    exercise(launcher)
    assert (tmp_path / "redis" / "appendonlydir").is_dir()
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConnectionRefusedError):  # the private redis-server was stopped too
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_without_redis_server_falls_back_loudly(launch: type[Launcher]) -> None:
    # A PATH with only the venv's scripts: no redis-server to be found.
    launcher = launch(PATH=str(Path(sys.executable).parent))
    launcher.wait_for(r"WARNING: redis-server is not installed")
    launcher.wait_for(r"NOT DURABLE")
    launcher.wait_for(r"redis_version=7.0.0-fakeredis")  # arq's INFO, answered by our stand-in
    exercise(launcher)
