"""Shared fixtures: configs, an in-process app over fakeredis, and a private real Redis."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import fakeredis
import httpx
import pytest
from redis.asyncio import Redis, RedisCluster
from starlette.applications import Starlette

from config import Config
from devtools import procfile
from devtools.redis_cluster import PrivateCluster, redis_cli_path
from devtools.redis_server import PrivateRedis, redis_server_path
from service.app import create_app
from service.core.clock import Clock
from service.core.partitions import Partitioning
from service.storage import keys
from service.storage.connection import connect

API_KEY = "test-api-key-0123456789"
FIXED_NOW = datetime(2026, 3, 3, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_config() -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        overrides.setdefault("api_keys", (API_KEY,))
        # INGEST_TIMEOUT's 1 s is for a real Redis: fakeredis runs Lua in Python, and a test
        # process sharing a loaded CI machine with three others took over a second for a
        # four-event batch (a 503). The tests of the deadline itself set theirs.
        overrides.setdefault("ingest_timeout", 10.0)
        return Config(**overrides)

    return make


@pytest.fixture
async def fake_redis() -> AsyncIterator[Redis]:
    redis = fakeredis.aioredis.FakeRedis()
    yield redis
    await redis.aclose()


@asynccontextmanager
async def serve(app: Starlette, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and hand its state to every request, as uvicorn does."""
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = dict(state or {})
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            yield client


MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(
    fake_redis: Redis, make_config: Callable[..., Config]
) -> AsyncIterator[MakeClient]:
    """`await make_client(config=..., redis=..., clock=..., auth=True)`: an API client."""
    async with AsyncExitStack() as stack:

        async def make(
            config: Config | None = None,
            *,
            redis: Redis | None = None,
            clock: Clock = lambda: FIXED_NOW,
            auth: bool = True,
        ) -> httpx.AsyncClient:
            app = create_app(config or make_config(), redis=redis or fake_redis, clock=clock)
            headers = {"Authorization": f"Bearer {API_KEY}"} if auth else {}
            return await stack.enter_async_context(serve(app, headers))

        yield make


@pytest.fixture
async def client(make_client: MakeClient) -> httpx.AsyncClient:
    return await make_client()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[PrivateRedis]:
    """A private redis-server for the session. Mandatory under CI=true: fail, never skip."""
    if redis_server_path() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: CI must run the real-Redis tests")
        pytest.skip("redis-server is not installed")
    with PrivateRedis(durable=False) as server:
        yield server


StartProcess = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def start_process() -> Iterator[StartProcess]:
    """`start_process("web", REDIS_URL=...)`: a Procfile line, started as deployed, stopped
    after the test. Its output is piped (read it with communicate()), or discarded with
    quiet=True for long-running, chatty processes."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *, quiet: bool = False, **env: str) -> subprocess.Popen[bytes]:
        output = subprocess.DEVNULL if quiet else subprocess.PIPE
        env = {"API_KEYS": API_KEY, **env}
        process = procfile.start(name, env, stdout=output, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=15)
        if process.stdout:
            process.stdout.close()


@pytest.fixture
def durable_redis(redis_server: PrivateRedis) -> Iterator[PrivateRedis]:
    """A Redis of the test's own, with AOF on, for tests that restart it."""
    with PrivateRedis(durable=True) as server:
        yield server


@pytest.fixture(scope="session")
def slot_checking_server(redis_server: PrivateRedis) -> Iterator[PrivateRedis]:
    """A one-node Redis Cluster serving every slot: like a real cluster it refuses any script,
    MULTI or multi-key command whose keys are in different slots (CROSSSLOT), yet a plain
    client works with it. Partitioned key names are checked here."""
    with PrivateRedis(durable=False, cluster=True) as server:
        yield server.serve_every_slot()


@pytest.fixture
async def partitioned_redis(slot_checking_server: PrivateRedis) -> AsyncIterator[Redis]:
    """A client of `slot_checking_server`, with keys named for 16 partitions (as on a
    cluster) during the test."""
    redis = Redis.from_url(slot_checking_server.url)
    await redis.flushall()
    keys.use(Partitioning(16))
    try:
        yield redis
    finally:
        keys.use(Partitioning(1))
        await redis.aclose()


@pytest.fixture
async def real_redis(redis_server: PrivateRedis) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url)
    await redis.flushall()
    yield redis
    await redis.aclose()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[PrivateCluster]:
    """A private three-master Redis Cluster for the session, AOF on (fault tests restart its
    nodes). Mandatory under CI=true: fail, never skip."""
    if redis_server_path() is None or redis_cli_path() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server or redis-cli is not installed: CI must run the cluster tests")
        pytest.skip("redis-server or redis-cli is not installed")
    with PrivateCluster(durable=True) as cluster:
        yield cluster


@pytest.fixture
async def cluster_redis(redis_cluster: PrivateCluster) -> AsyncIterator[RedisCluster]:
    """The service's own cluster client (connect() with REDIS_CLUSTER=true) of
    `redis_cluster`, every master flushed."""
    client = connect(Config(redis_url=redis_cluster.url, redis_cluster=True))
    assert isinstance(client, RedisCluster)
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()
