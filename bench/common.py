"""Shared pieces of the service benchmarks: processes, Redis, wrk, timing helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import redis as redis_sync
from redis.asyncio import Redis, RedisCluster

from devtools.procfile import ROOT, process_env, procfile_commands, start
from devtools.redis_server import free_port, wait_for_port
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.models import Event
from service.core.partitions import Partitioning
from service.storage import keys
from service.storage.events import EventStore
from service.storage.webhooks import WebhookStore

API_KEY = "bench-api-key-0123456789abcdef"
SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"
LOGS = Path(__file__).with_name(".logs")


def base_env(redis_url: str, **extra: object) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "API_KEYS": API_KEY,
        "ALLOW_HTTP_URLS": "true",
        "ALLOW_PRIVATE_URLS": "true",
        "ALLOW_UNSIGNED_INBOUND": "true",
        "INBOUND_SECRET": "",
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def _log(name: str) -> IO[bytes]:
    LOGS.mkdir(exist_ok=True)
    (LOGS / ".gitignore").write_text("*\n")
    return (LOGS / f"{name}.log").open("ab")


def stop(process: subprocess.Popen[Any], timeout: float = 25.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def web(env: Mapping[str, str], *, app: str | None = None) -> Iterator[str]:
    """The Procfile's web line (or, with `app`, the same uvicorn command line serving
    another factory); yields its base URL; stopped on exit."""
    with web_process(env, app=app) as (url, _):
        yield url


@contextlib.contextmanager
def web_process(
    env: Mapping[str, str], *, app: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """`web`, yielding the process too (its pid is uvicorn's: the shell line `exec`s)."""
    port = free_port()
    full = {**env, "PORT": str(port)}
    log = _log("web" if app is None else "floor")
    if app is None:
        process: subprocess.Popen[Any] = start("web", full, stdout=log, stderr=log)
    else:
        command = procfile_commands()["web"].replace("service.app:create_app", app)
        process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            cwd=ROOT,
            env=process_env(full),
            stdout=log,
            stderr=log,
        )
    try:
        wait_for_port(port, 20, process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def worker(env: Mapping[str, str]) -> Iterator[subprocess.Popen[Any]]:
    log = _log("worker")
    process: subprocess.Popen[Any] = start("worker", env, stdout=log, stderr=log)
    try:
        yield process
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def receiver(mode: str = "--record", *, module: str = "bench.receiver") -> Iterator[str]:
    """bench.receiver in `mode` (or another `module` that starts the same way); yields its
    base URL (http://127.0.0.1:PORT)."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "0", *([mode] if mode else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 3 or line[0] != "listening":
            raise RuntimeError(f"receiver failed to start (exit code {process.poll()})")
        yield f"http://127.0.0.1:{line[1]}"
    finally:
        stop(process, 5)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
        return json.loads(response.read())


def posts(receiver_url: str) -> int:
    return int(get_json(receiver_url + "/count")["posts"])


def arrivals(receiver_url: str) -> list[tuple[str, float]]:
    return [(email_id, at) for email_id, at in get_json(receiver_url + "/arrivals")]


def wait_until(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, over every core, from
    /proc/stat: busy is user, nice, system, irq and softirq time (steal and idle are not)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = fields[:7]
    busy = user + nice + system + irq + softirq
    tick = os.sysconf("SC_CLK_TCK")
    return busy / tick, (busy + idle + iowait) / tick


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sync_redis(url: str) -> redis_sync.Redis:
    return redis_sync.Redis.from_url(url)


def flush(url: str) -> None:
    client = sync_redis(url)
    client.flushall()
    client.close()


def redis_cpu_seconds(urls: Sequence[str]) -> float:
    """CPU seconds the Redis servers at `urls` have used (INFO cpu: used_cpu_sys +
    used_cpu_user), summed: each node of a cluster, or the one server."""
    total = 0.0
    for url in urls:
        client = sync_redis(url)
        try:
            info = cast(dict[str, Any], client.info("cpu"))
        finally:
            client.close()
        total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return total


@contextlib.contextmanager
def key_partitions(count: int) -> Iterator[None]:
    """Name keys in this process for a deployment of `count` partitions (EVENT_PARTITIONS,
    as the web and worker do at start), then as before."""
    before = keys.partitioning()
    keys.use(Partitioning(count))
    try:
        yield
    finally:
        keys.use(before)


async def create_webhooks(
    redis_url: str,
    urls: Sequence[str],
    events: tuple[str, ...],
    *,
    chunk: int = 500,
    account: str = DEFAULT_ACCOUNT,
    accounts: Sequence[str] = (),
) -> list[int]:
    """Create webhooks directly with WebhookStore (as the API would), `chunk` at a time: at
    `urls` for `account`, or, given `accounts`, at `urls` for each of them in turn."""
    client = Redis.from_url(redis_url)
    store = WebhookStore(client)
    ids: list[int] = []
    owned = [(a, url) for a in accounts for url in urls] or [(account, url) for url in urls]
    try:
        for start_at in range(0, len(owned), chunk):
            made = await asyncio.gather(
                *(
                    store.create(
                        account=owner,
                        url=url,
                        events=events,
                        secret=SECRET,
                        active=True,
                        now="2026-11-28T00:00:00Z",
                        limit=10**9,  # the bench sets up more than any deployment allows
                    )
                    for owner, url in owned[start_at : start_at + chunk]
                )
            )
            ids += [webhook.id for webhook in made]
    finally:
        await client.aclose()
    return ids


def make_event(
    number: int, prefix: str, event_type: str = "email.open", account: str = DEFAULT_ACCOUNT
) -> Event:
    return Event(
        type=event_type,
        email_id=f"{prefix}{number}",
        occurred_at="2026-11-28T00:00:00Z",
        provider="generic",
        recipient="alex@example.com",
        provider_event_id=f"{prefix}-{number}",
        account_id=account,
    )


async def preload_events(
    redis_url: str,
    count: int,
    prefix: str,
    *,
    batch: int = 500,
    accounts: Sequence[str] = (DEFAULT_ACCOUNT,),
    cluster: bool = False,
) -> None:
    """Store `count` canonical events with EventStore.append: the ingest path's own script;
    event n is the account `accounts[n % len(accounts)]`'s. With `cluster`, `redis_url` is
    any node of a Redis Cluster (keys named for its partitions: `key_partitions`)."""
    client: Redis | RedisCluster = (
        RedisCluster.from_url(redis_url) if cluster else Redis.from_url(redis_url)
    )
    store = EventStore(client, maxlen=1_000_000, dedup_ttl_seconds=3600)
    try:
        for first in range(0, count, batch):
            events = [
                make_event(n, prefix, account=accounts[n % len(accounts)])
                for n in range(first, min(first + batch, count))
            ]
            await store.append("generic", events)
    finally:
        await client.aclose()


def deliver_backlog(
    env: Mapping[str, str],
    recv: str,
    total: int,
    *,
    workers: int = 1,
    redis_cpu: Callable[[], float] | None = None,
) -> dict[str, float]:
    """Start `workers` of the Procfile's workers on a backlog of `total` deliveries to `recv`
    (already in Redis) and time them from the first arrival until the last: deliveries/s and
    the workers' CPU per delivery, summed over them; given `redis_cpu` (CPU seconds so far,
    e.g. redis_cpu_seconds), Redis's too."""
    before = posts(recv)
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(worker(env)) for _ in range(workers)]
        if not wait_until(lambda: posts(recv) > before, 60):
            raise RuntimeError("no delivery arrived within 60 s")
        first_at = time.perf_counter()
        first_count = posts(recv) - before
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        redis0 = redis_cpu() if redis_cpu else 0.0
        done = wait_until(lambda: posts(recv) - before >= total, 180, 0.01)
        elapsed = time.perf_counter() - first_at
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        redis_used = redis_cpu() - redis0 if redis_cpu else 0.0
        delivered = posts(recv) - before
    if not done:
        raise RuntimeError(f"only {delivered}/{total} deliveries arrived")
    measured = max(1, delivered - first_count)
    result = {
        "deliveries": total,
        "seconds": elapsed,
        "rate": measured / elapsed,
        "cpu_ms_per_delivery": cpu * 1000 / measured,
    }
    if redis_cpu:
        result["redis_cpu_ms_per_delivery"] = redis_used * 1000 / measured
    return result


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# -- wrk ------------------------------------------------------------------------------------

WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d,"non2xx":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""

# Unique bodies (a per-thread counter in email_id), unsigned: wrk's Lua has no HMAC.
WRK_UNIQUE = """
local counter = 0
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
request = function()
  counter = counter + 1
  local body = '{"type":"email.opened","email_id":"msg_%s_' .. tid .. '_' .. counter ..
    '","recipient":"alex@example.com","timestamp":"2026-11-28T00:00:00Z",' ..
    '"metadata":{"campaign":"spring-sale"}}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        raise SystemExit(
            "wrk is not installed and we are not root: install it (apt-get install wrk) "
            "and run the benchmarks again"
        )
    print("wrk missing: apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("apt-get install wrk did not provide wrk")
    return path


def signed_script(prefix: str, count: int, secret: str) -> str:
    """A wrk script cycling through `count` precomputed signed unique bodies."""
    import hashlib
    import hmac

    lines = ["local bodies = {", "local sigs = {"]
    bodies, sigs = [], []
    for number in range(count):
        body = (
            f'{{"type":"email.opened","email_id":"msg_{prefix}_{number}",'
            '"recipient":"alex@example.com","timestamp":"2026-11-28T00:00:00Z",'
            '"metadata":{"campaign":"spring-sale"}}'
        )
        bodies.append(f"'{body}',")
        sigs.append(f"'{hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()}',")
    return "\n".join(
        [
            lines[0],
            *bodies,
            "}",
            lines[1],
            *sigs,
            "}",
            "local threads, i = 0, 0  -- tid: a global each thread gets from setup",
            "setup = function(thread) threads = threads + 1; thread:set('tid', threads) end",
            "request = function()",
            f"  i = i + 1; local k = ((i - 1) * 2 + tid - 1) % {count} + 1",
            "  return wrk.format('POST', nil, {['Content-Type'] = 'application/json',",
            "    ['X-Webhook-Signature'] = sigs[k]}, bodies[k])",
            "end",
        ]
    )


def run_wrk(
    url: str, script: str, *, seconds: float, connections: int = 50, threads: int = 2
) -> dict[str, float]:
    LOGS.mkdir(exist_ok=True)
    path = LOGS / f"wrk-{os.getpid()}-{time.monotonic_ns()}.lua"
    path.write_text(script + WRK_DONE)
    try:
        out = subprocess.run(
            [
                ensure_wrk(),
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(path),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        path.unlink(missing_ok=True)
    line = next(line for line in out.splitlines() if line.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    duration = data["duration_us"] / 1e6
    return {
        "requests": data["requests"],
        "rps": data["requests"] / duration,
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "errors": data["errors"],
        "non2xx": data["non2xx"],
    }
