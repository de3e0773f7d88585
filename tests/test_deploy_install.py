"""What Heroku's buildpack and the Dockerfile do, done here: requirements.txt alone,
hash-checked, installed into a fresh venv; the Procfile's web and worker run from it in this
checkout against a private Redis; an inbound event reaches a local receiver.

The project itself is not installed, as on Heroku, where the buildpack installs the lock and
the Procfile runs in the checkout (uvicorn puts its --app-dir, the working directory, first
on sys.path, and so does `python -m`); the Dockerfile copies the checkout the same way.

Slow: a pip install, some seconds when pip's cache already holds the lock's files (as it
does once `make` installed the same lock into .venv). It is part of `make test`, so CI
proves it on every run; `pytest -m 'not slow'` leaves it out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from devtools import procfile
from devtools.redis_server import PrivateRedis, free_port, wait_for_port
from tests.conftest import API_KEY
from tests.receiver import Receiver
from tests.signers import INBOUND_SECRET, generic_headers

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.slow]

LOCK = procfile.ROOT / "requirements.txt"
PIP_TIMEOUT = 600


@pytest.fixture(scope="module")
def locked_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding requirements.txt and nothing else; returns its bin directory.
    pip runs from this venv into that one (`--python`): the same install, without seeding
    the new venv with a pip of its own first."""
    venv = tmp_path_factory.mktemp("locked") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-input"]
    done = subprocess.run(
        [*install, "--quiet", "--no-compile", "--require-hashes", "-r", str(LOCK)],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / "bin"


def importable(bin_dir: Path, module: str) -> bool:
    check = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    # Run outside the checkout: its directory is not on sys.path there.
    done = subprocess.run([bin_dir / "python", "-c", check], cwd=bin_dir, check=False)
    return done.returncode == 0


def loads_from(pid: int, directory: Path) -> bool:
    """Whether the process mapped a file from `directory` (a compiled module, say)."""
    return str(directory) in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "processes.log"
    yield path
    if path.exists():  # shown by pytest when the test failed
        sys.stdout.write(path.read_text(errors="replace"))


async def test_the_locked_install_runs_the_service(
    locked_venv: Path, redis_server: PrivateRedis, logs: Path
) -> None:
    # Nothing of the development venv: no test tools, and the project is not installed.
    assert importable(locked_venv, "uvicorn")
    assert not importable(locked_venv, "pytest")
    assert not importable(locked_venv, "honcho")
    assert not importable(locked_venv, "service")

    redis = Redis.from_url(redis_server.url)
    await redis.flushall()
    await redis.aclose()
    receiver = await Receiver.start()
    port = free_port()
    env = {
        "REDIS_URL": redis_server.url,
        "PORT": str(port),
        "API_KEYS": API_KEY,
        "INBOUND_SECRET": INBOUND_SECRET,
        "ALLOW_HTTP_URLS": "true",  # the local receiver
        "ALLOW_PRIVATE_URLS": "true",
    }
    processes: list[subprocess.Popen[bytes]] = []
    with logs.open("wb") as out:
        try:
            for name in ("web", "worker"):
                processes.append(
                    procfile.start(name, env, bin_dir=locked_venv, stdout=out, stderr=out)
                )
            wait_for_port(port, timeout=30, process=processes[0])
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10
            ) as api:
                created = await api.post(
                    "/api/webhooks/manage", json={"url": receiver.url, "events": "*"}
                )
                assert created.status_code == 201, created.text
                body = json.dumps(
                    {
                        "type": "email.opened",
                        "email_id": "msg_from_the_lock",
                        "recipient": "alex@example.com",
                        "timestamp": "2026-12-01T08:00:00Z",
                    }
                ).encode()
                stored = await api.post(
                    "/api/webhooks", content=body, headers=generic_headers(body)
                )
                assert stored.json() == {"received": True}
                (delivery,) = await receiver.wait_for(1, timeout=30)
            payload = json.loads(delivery.body)
            assert payload["type"] == "email.open"
            assert payload["data"]["email_id"] == "msg_from_the_lock"
            # Both ran that venv's packages: their compiled modules were loaded from it.
            for process in processes:
                assert process.poll() is None
                assert loads_from(process.pid, locked_venv.parent)
        finally:
            for process in processes:
                process.terminate()
            deadline = time.monotonic() + 30
            for process in processes:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            await receiver.stop()
    for process in processes:
        assert process.returncode in (0, -15), f"exit code {process.returncode}"
