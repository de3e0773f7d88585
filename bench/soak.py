"""`python -m bench.soak [--seconds N] [--rate R] [--endpoints E] [--seed S]`: the soak test
(`make soak`; issue #17). Not part of `make test`: about `N` + 4 minutes, bounded.

A private durable Redis (AOF), the Procfile's web and worker lines and bench.soak_receiver
(endpoints /e/1..E, all subscribed to `*`). Every provider's native bodies are posted at a
steady rate for N seconds (default: half the delivery maximum measured at start, per
endpoint), while a seeded chaos loop SIGKILLs the worker and starts a new one, restarts Redis
on its AOF, flips 20 % of the endpoints to failing and back, and makes one endpoint answer
410 early. Then it drains (until every acknowledged event has reached every live endpoint,
nothing has arrived for QUIET_SECONDS, or DRAIN_LIMIT_SECONDS), prints a markdown table and
writes bench/soak-results.json. Exit code 1 if an acknowledged event is missing at a live
endpoint. Everything goes to 127.0.0.1; every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import redis as redis_sync

from bench.common import (
    API_KEY,
    LOGS,
    base_env,
    create_webhooks,
    flush,
    get_json,
    percentile,
    preload_events,
    receiver,
    rss_kib,
    sync_redis,
    wait_until,
    web_process,
    worker,
)
from bench.soak_ingest import Bodies, Ingested, paced_ingest
from bench.transport import machine
from devtools.redis_server import PrivateRedis
from service.core import ids
from service.storage import keys

RESULTS = Path(__file__).with_name("soak-results.json")
# Short, so that an endpoint failing for up to 30 s is reached again well within the drain:
# seven attempts over about 68 s (each delay ±20 %).
RETRY_SCHEDULE = "0,1,2,5,10,20,30"
DELIVERY_TIMEOUT = 3
DELIVERY_CONCURRENCY = 200  # the default; duplicates after a crash are bounded by it
ENDPOINT_CONCURRENCY = 10  # the default; what a 410 endpoint may still get after its first 410
GONE_AT_SECONDS = 10.0
CHAOS_GAP_SECONDS = (30.0, 60.0)
FLIP_SECONDS = (10.0, 30.0)
FLIP_SHARE = 0.2
DRAIN_LIMIT_SECONDS = 180.0
# Nothing arriving for this long ends the drain: longer than the schedule's longest delay
# with its jitter (30 s + 20 %), so a retry still due is waited for.
QUIET_SECONDS = 45.0
MEASURE_EVENTS = 1500
PROGRESS_SECONDS = 30.0


# -- the chaos plan (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    at: float  # seconds after ingest starts
    kind: str  # gone | kill-worker | restart-redis | flip | flip-back
    endpoints: tuple[int, ...] = ()


CHAOS_KINDS = ("kill-worker", "restart-redis", "flip")
CRASHES = ("kill-worker", "restart-redis")


def plan_chaos(seconds: float, endpoints: int, rng: random.Random) -> list[Action]:
    """One endpoint gone early, then one action every 30-60 s (each kind once per round, in a
    shuffled order) until 15 s before the end; a flip is undone 10-30 s later."""
    gone = rng.randint(1, endpoints)
    live = [n for n in range(1, endpoints + 1) if n != gone]
    plan = [Action(min(GONE_AT_SECONDS, seconds / 4), "gone", (gone,))]
    kinds: list[str] = []
    at = rng.uniform(*CHAOS_GAP_SECONDS)
    while at < seconds - 15 and len(plan) < seconds // CHAOS_GAP_SECONDS[0] + 2:
        if not kinds:
            kinds = list(CHAOS_KINDS)
            rng.shuffle(kinds)
        kind = kinds.pop()
        if kind == "flip":
            chosen = tuple(sorted(rng.sample(live, max(1, round(FLIP_SHARE * len(live))))))
            plan.append(Action(at, "flip", chosen))
            plan.append(Action(at + rng.uniform(*FLIP_SECONDS), "flip-back", chosen))
        else:
            plan.append(Action(at, kind))
        at += rng.uniform(*CHAOS_GAP_SECONDS)
    return sorted(plan, key=lambda action: action.at)


# -- processes -----------------------------------------------------------------------------


class Cluster:
    """The processes under test: the private Redis, one web, one worker at a time."""

    def __init__(self, stack: contextlib.ExitStack, redis: PrivateRedis, env: dict[str, str]):
        self.stack, self.redis, self.env = stack, redis, env
        self.web_pid = 0
        self.worker: subprocess.Popen[Any] | None = None
        self.worker_pids: list[int] = []

    def start_web(self) -> str:
        url, process = self.stack.enter_context(web_process(self.env))
        self.web_pid = process.pid
        return str(url)

    def start_worker(self) -> int:
        self.worker = self.stack.enter_context(worker(self.env))
        self.worker_pids.append(self.worker.pid)
        return self.worker.pid

    def kill_worker(self) -> str:
        assert self.worker is not None
        old = self.worker
        old.send_signal(signal.SIGKILL)
        old.wait(timeout=10)
        return f"SIGKILL worker pid {old.pid}; started pid {self.start_worker()}"

    def restart_redis(self) -> str:
        started = time.perf_counter()
        self.redis.restart()
        took = time.perf_counter() - started
        return f"Redis stopped (SIGTERM) and started again on its AOF in {took:.1f} s"


def control(recv: str, **sets: tuple[int, ...]) -> dict[str, Any]:
    query = urllib.parse.urlencode({name: ",".join(map(str, v)) for name, v in sets.items()})
    return dict(get_json(f"{recv}/control?{query}"))


class Sampler(threading.Thread):
    """Every second: RSS of web and of the current worker, Redis used_memory."""

    def __init__(self, cluster: Cluster, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.client = redis_sync.Redis.from_url(
            redis_url, socket_timeout=1, socket_connect_timeout=1
        )
        self.halt = threading.Event()
        self.samples: list[tuple[float, int, int, int]] = []  # (time, web KiB, worker KiB, B)
        self.worker_peaks: dict[int, int] = {}

    def run(self) -> None:
        while not self.halt.wait(1.0):
            web_kib = _rss(self.cluster.web_pid)
            process = self.cluster.worker
            worker_kib = _rss(process.pid) if process is not None else 0
            if process is not None:
                peak = self.worker_peaks.get(process.pid, 0)
                self.worker_peaks[process.pid] = max(peak, worker_kib)
            try:
                info = cast(dict[str, Any], self.client.info("memory"))
                used = int(info["used_memory"])
            except redis_sync.RedisError:
                used = 0  # restarting
            self.samples.append((time.time(), web_kib, worker_kib, used))

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
        self.client.close()


def _rss(pid: int) -> int:
    try:
        return rss_kib(pid)
    except OSError:
        return 0


# -- phases ----------------------------------------------------------------------------------


def endpoint_urls(recv: str, endpoints: int) -> list[str]:
    return [f"{recv}/e/{n}" for n in range(1, endpoints + 1)]


def delivered_total(recv: str) -> int:
    return sum(int(e["ok"]) for e in get_json(recv + "/summary").values())


def measure_delivery_max(redis_url: str, recv: str, endpoints: int, env: dict[str, str]) -> float:
    """Deliveries/s of one worker to the soak receiver: MEASURE_EVENTS preloaded events to
    every endpoint, timed from the first arrival to the last."""
    flush(redis_url)
    get_json(recv + "/reset")
    asyncio.run(create_webhooks(redis_url, endpoint_urls(recv, endpoints), ("*",)))
    asyncio.run(preload_events(redis_url, MEASURE_EVENTS, f"max{uuid.uuid4().hex[:6]}-"))
    total = MEASURE_EVENTS * endpoints
    with worker(env):
        if not wait_until(lambda: delivered_total(recv) > 0, 60, 0.05):
            raise RuntimeError("measuring: no delivery arrived within 60 s")
        started, first = time.perf_counter(), delivered_total(recv)
        wait_until(lambda: delivered_total(recv) >= total, 120, 0.05)
        elapsed, done = time.perf_counter() - started, delivered_total(recv)
    flush(redis_url)
    get_json(recv + "/reset")
    return (done - first) / elapsed


def warm_up(url: str, recv: str, live: int, tag: str) -> None:
    """One request per provider; each must be answered 200 and delivered everywhere."""
    from bench.soak_ingest import PROVIDERS

    result = Ingested()
    bodies = Bodies(tag)
    asyncio.run(paced_ingest(url, bodies, result, rate=20, seconds=len(PROVIDERS) * 0.25))
    if result.failures:
        raise RuntimeError(f"warm-up requests refused: {result.failures}")
    expected = len(result.acknowledged) * live
    if not wait_until(lambda: delivered_total(recv) >= expected, 30, 0.2):
        raise RuntimeError(f"warm-up: {delivered_total(recv)}/{expected} deliveries in 30 s")
    get_json(recv + "/reset")


@dataclass
class ChaosLog:
    started: float  # time.time() when ingest started
    entries: list[dict[str, Any]] = field(default_factory=list)

    def note(self, kind: str, detail: str, endpoints: tuple[int, ...] = ()) -> None:
        now = time.time()
        entry = {
            "t": round(now - self.started, 1),
            "at": now,
            "wall": datetime.datetime.fromtimestamp(now).strftime("%H:%M:%S"),
            "kind": kind,
            "endpoints": list(endpoints),
            "detail": detail,
        }
        self.entries.append(entry)
        print(f"  [{entry['t']:6.1f} s {entry['wall']}] chaos {kind}: {detail}", flush=True)


async def run_chaos(cluster: Cluster, recv: str, plan: list[Action], log: ChaosLog) -> None:
    for action in plan:
        delay = log.started + action.at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if action.kind == "gone":
            await asyncio.to_thread(control, recv, gone=action.endpoints)
            log.note(
                "gone", f"endpoint {action.endpoints[0]} answers 410 from now", action.endpoints
            )
        elif action.kind in ("flip", "flip-back"):
            failing = action.endpoints if action.kind == "flip" else ()
            state = await asyncio.to_thread(control, recv, failing=failing)
            log.note(action.kind, f"failing endpoints now {state['failing']}", action.endpoints)
        elif action.kind == "kill-worker":
            log.note("kill-worker", await asyncio.to_thread(cluster.kill_worker))
        elif action.kind == "restart-redis":
            log.note("restart-redis", await asyncio.to_thread(cluster.restart_redis))


async def progress(recv: str, result: Ingested, started: float, sampler: Sampler) -> None:
    while True:
        await asyncio.sleep(PROGRESS_SECONDS)
        summary = await asyncio.to_thread(get_json, recv + "/summary")
        sample = sampler.samples[-1] if sampler.samples else (0, 0, 0, 0)
        print(
            f"  [{time.time() - started:6.1f} s] acknowledged {len(result.acknowledged):,} "
            f"events, {len(result.failures)} failed requests; receiver: "
            f"{sum(e['ok'] for e in summary.values()):,} 200s, "
            f"{sum(e['failed'] for e in summary.values()):,} 500s; RSS web "
            f"{sample[1] / 1024:.0f} MiB, worker {sample[2] / 1024:.0f} MiB; Redis "
            f"{sample[3] / 2**20:.0f} MiB",
            flush=True,
        )


async def soak_phase(
    cluster: Cluster,
    url: str,
    recv: str,
    plan: list[Action],
    *,
    rate: float,
    seconds: float,
    tag: str,
    seed: int,
    sampler: Sampler,
) -> tuple[Ingested, ChaosLog]:
    result = Ingested()
    log = ChaosLog(started=time.time())
    chaos = asyncio.create_task(run_chaos(cluster, recv, plan, log))
    reporter = asyncio.create_task(progress(recv, result, log.started, sampler))
    try:
        await paced_ingest(url, Bodies(tag, seed), result, rate=rate, seconds=seconds)
    finally:
        reporter.cancel()
        chaos.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos
        state = await asyncio.to_thread(control, recv, failing=())
        kinds = Counter(entry["kind"] for entry in log.entries)
        if kinds["flip"] > kinds["flip-back"]:
            log.note("flip-back", f"at the end of ingest: failing endpoints now {state['failing']}")
    return result, log


def drain(recv: str, acknowledged: dict[str, float], live: list[str]) -> dict[str, Any]:
    """Wait until every acknowledged event has reached every live endpoint, nothing has
    arrived for QUIET_SECONDS, or DRAIN_LIMIT_SECONDS have passed."""
    started = time.monotonic()
    last_posts, last_change, last_check = -1, started, 0.0
    outcome = "limit"
    while time.monotonic() - started < DRAIN_LIMIT_SECONDS:
        summary = get_json(recv + "/summary")
        posts = sum(int(e["posts"]) for e in summary.values())
        now = time.monotonic()
        if posts != last_posts:
            last_posts, last_change = posts, now
        counted = all(summary.get(p, {}).get("distinct_ok", 0) >= len(acknowledged) for p in live)
        if counted and now - last_check >= 10:
            last_check = now
            records = get_json(recv + "/records")
            if not any(missing(records.get(p, {}), acknowledged) for p in live):
                outcome = "complete"
                break
        if now - last_change >= QUIET_SECONDS:
            outcome = "quiet"
            break
        time.sleep(2)
    return {"outcome": outcome, "seconds": time.monotonic() - started}


def missing(records: dict[str, list[Any]], acknowledged: dict[str, float]) -> list[str]:
    return [e for e in acknowledged if not (e in records and records[e][0] > 0)]


# -- what Redis says -----------------------------------------------------------------------


def redis_state(redis_url: str, webhook_ids: dict[int, int]) -> dict[str, Any]:
    client = sync_redis(redis_url)
    try:
        statuses = {
            number: {
                status: int(cast(int, client.zcard(keys.deliveries(wid, status))))
                for status in ("pending", "succeeded", "failed")
            }
            for number, wid in webhook_ids.items()
        }
        attempts: Counter[int] = Counter()
        records: Counter[int] = Counter()
        pattern = keys.delivery(ids.DELIVERY_ID_PREFIX + "*")
        found = [
            k for k in client.scan_iter(match=pattern, count=5000) if not k.endswith(b":attempts")
        ]
        for first in range(0, len(found), 2000):
            pipe = client.pipeline(transaction=False)
            for key in found[first : first + 2000]:
                pipe.hmget(key, ["webhook_id", "attempts"])
            for webhook, made in cast(list[list[bytes | None]], pipe.execute()):
                if webhook is not None:
                    records[int(webhook)] += 1
                    attempts[int(webhook)] += max(0, int(made or 0) - 1)
        groups = cast(list[dict[str, Any]], client.xinfo_groups(keys.EVENTS_STREAM))
        counts = cast(dict[bytes, bytes], client.hgetall(keys.INBOUND_COUNTS))
        webhooks = {
            number: {
                k.decode(): v.decode()
                for k, v in cast(dict[bytes, bytes], client.hgetall(keys.webhook(wid))).items()
                if k.decode() in ("active", "disabled_reason")
            }
            for number, wid in webhook_ids.items()
        }
        return {
            "statuses": statuses,
            "retries": {n: attempts[wid] for n, wid in webhook_ids.items()},
            "records": {n: records[wid] for n, wid in webhook_ids.items()},
            "groups": [
                {k: v.decode() if isinstance(v, bytes) else v for k, v in g.items()} for g in groups
            ],
            "inbound_counts": {k.decode(): int(v) for k, v in counts.items()},
            "webhooks": webhooks,
            "used_memory": int(cast(dict[str, Any], client.info("memory"))["used_memory"]),
        }
    finally:
        client.close()


def explain_lost(
    url: str, redis_url: str, lost: list[tuple[int, str]], webhook_ids: dict[int, int]
) -> list[dict[str, Any]]:
    """For a few lost (endpoint, email id): the stored event, its delivery, the worker log."""
    client = sync_redis(redis_url)
    worker_log = (LOGS / "worker.log").read_text(errors="replace").splitlines()
    out = []
    try:
        for number, email_id in lost[:10]:
            found = get_json_auth(f"{url}/api/events?email_id={urllib.parse.quote(email_id)}")
            item: dict[str, Any] = {"endpoint": number, "email_id": email_id, "events": found}
            for event in found.get("events", []):
                entry = ids.entry_id(event["id"])
                if entry is None:
                    continue
                delivery = ids.delivery_id(entry, webhook_ids[number])
                raw = cast(dict[bytes, bytes], client.hgetall(keys.delivery(delivery)))
                item["delivery"] = {
                    "id": delivery,
                    **{k.decode(): v.decode(errors="replace") for k, v in raw.items()
                       if k != b"payload"},
                }  # fmt: skip
                item["attempts"] = [
                    a.decode() for a in cast(list[bytes], client.lrange(
                        keys.delivery_attempts(delivery), 0, -1))
                ]  # fmt: skip
                item["worker_log"] = [line for line in worker_log if delivery in line][:5]
            out.append(item)
    finally:
        client.close()
    return out


def get_json_auth(url: str) -> Any:
    import urllib.request

    headers = {"Authorization": f"Bearer {API_KEY}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - 127.0.0.1 only
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


# -- the report ----------------------------------------------------------------------------


def analyse(
    records: dict[str, dict[str, list[Any]]],
    summary: dict[str, dict[str, Any]],
    ingested: Ingested,
    live: list[int],
    chaos: list[dict[str, Any]],
) -> dict[str, Any]:
    acknowledged = ingested.acknowledged
    per: dict[int, dict[str, Any]] = {}
    latencies: list[float] = []
    first_try: list[float] = []
    lost: list[tuple[int, str]] = []
    duplicate_times: list[float] = []
    for number in live:
        got = records.get(str(number), {})
        gaps = missing(got, acknowledged)
        lost += [(number, email_id) for email_id in gaps]
        duplicates = 0
        for email_id, record in got.items():
            duplicates += max(0, record[0] - 1)
            duplicate_times += record[4]
            if record[0] and email_id in acknowledged:
                latency = record[2] - acknowledged[email_id]
                latencies.append(latency)
                if record[1] == 0:
                    first_try.append(latency)
        stats = summary.get(str(number), {})
        per[number] = {
            "delivered": len(acknowledged) - len(gaps),
            "lost": len(gaps),
            "duplicates": duplicates,
            "stored_twice": sum(1 for record in got.values() if record[5]),
            "unacknowledged_delivered": sum(
                1 for e, record in got.items() if record[0] and e not in acknowledged
            ),
            "answered_500": int(stats.get("failed", 0)),
            "posts": int(stats.get("posts", 0)),
        }
    by_action: Counter[str] = Counter()
    for at in duplicate_times:
        before = [e for e in chaos if e["at"] <= at and e["kind"] in CRASHES]
        by_action[f"{before[-1]['kind']} at {before[-1]['t']} s" if before else "none"] += 1
    return {
        "per_endpoint": per,
        "lost": lost,
        "duplicates_by_preceding_action": dict(by_action),
        "latency_ms": _percentiles(latencies),
        "first_try_latency_ms": _percentiles(first_try),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50": percentile(values, 50) * 1000,
        "p99": percentile(values, 99) * 1000,
        "max": max(values, default=float("nan")) * 1000,
    }


def failure_windows(failures: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """Failed requests grouped into runs with under 2 s between them."""
    windows: list[dict[str, Any]] = []
    for at, what in sorted(failures):
        if windows and at - windows[-1]["to"] < 2:
            windows[-1]["to"] = at
            windows[-1]["what"][what.split(" ")[0]] += 1
        else:
            windows.append({"from": at, "to": at, "what": Counter([what.split(" ")[0]])})
    return [{**w, "what": dict(w["what"])} for w in windows]


def table(r: dict[str, Any]) -> list[str]:
    a, ing, red = r["analysis"], r["ingest"], r["redis"]
    per = a["per_endpoint"]
    expected = r["acknowledged"] * len(per)
    delivered = sum(p["delivered"] for p in per.values())
    duplicates = sum(p["duplicates"] for p in per.values())
    kills = sum(1 for e in r["chaos"] if e["kind"] == "kill-worker")
    restarts = sum(1 for e in r["chaos"] if e["kind"] == "restart-redis")
    flips = sum(1 for e in r["chaos"] if e["kind"] == "flip")
    gone = r["gone"]
    lat, first = a["latency_ms"], a["first_try_latency_ms"]
    failures = Counter(what.split(" ")[0] for _, what in ing["failures"])
    lost = a["lost"]
    retried = sum(red["retries"].values())
    kept = sum(red["records"].values())
    statuses = {
        s: sum(v[s] for n, v in red["statuses"].items() if n != gone["endpoint"])
        for s in ("pending", "failed")
    }
    gone_failed = red["statuses"][gone["endpoint"]]["failed"]
    pending_entries = sum(int(g.get("pending", 0)) for g in red["groups"])
    return [
        f"{r['seconds']:.0f} s of ingest at {r['rate']:.0f} events/s ({r['rate_source']}), "
        f"{r['endpoints']} endpoints subscribed to `*`, RETRY_SCHEDULE={RETRY_SCHEDULE}, "
        f"DELIVERY_TIMEOUT={DELIVERY_TIMEOUT}, seed {r['seed']}; drain: {r['drain']['outcome']} "
        f"after {r['drain']['seconds']:.0f} s.",
        "",
        "| what | result |",
        "|---|---|",
        f"| events acknowledged (200) | {r['acknowledged']:,} ("
        + ", ".join(f"{k} {v:,}" for k, v in ing["events"].items())
        + f"; {sum(ing['requests'].values()):,} requests) |",
        f"| ingest failures | {ing['failed_events']:,} events in {len(ing['failures']):,} requests"
        + (" (" + ", ".join(f"{k}: {v}" for k, v in failures.items()) + ")" if failures else "")
        + " |",
        f"| deliveries expected / delivered (live endpoints) | {expected:,} / {delivered:,} |",
        f"| **lost** | **{len(lost)}**"
        + (" (" + ", ".join(f"e{n} {e}" for n, e in lost[:5]) + ")" if lost else "")
        + " |",
        "| duplicates per endpoint | "
        + ", ".join(f"e{n} {p['duplicates']}" for n, p in per.items())
        + f" (total {duplicates}; bound {DELIVERY_CONCURRENCY} per worker kill: "
        + f"{DELIVERY_CONCURRENCY * kills})"
        + "".join(
            f"; {count} after the {action}"
            for action, count in a["duplicates_by_preceding_action"].items()
        )
        + " |",
        f"| events stored twice (same email id, two event ids) | "
        f"{sum(p['stored_twice'] for p in per.values())} |",
        f"| retries | {sum(p['answered_500'] for p in per.values()):,} answers 500 at live "
        f"endpoints; {retried:,} (attempts - 1 over the {kept:,} delivery records kept in Redis) |",
        f"| 410 endpoint (e{gone['endpoint']}) | {gone['after_first_410']} requests after its "
        f"first 410 (bound ENDPOINT_CONCURRENCY {ENDPOINT_CONCURRENCY}); webhook active="
        f"{gone['webhook'].get('active')}, disabled_reason "
        f"{gone['webhook'].get('disabled_reason', '-')}; {gone['delivered_before']:,} events "
        f"delivered before, {gone_failed:,} deliveries recorded failed (kept in Redis) |",
        f"| delivery latency, 200 answer → first arrival | p50 {lat['p50']:,.0f} ms, p99 "
        f"{lat['p99']:,.0f} ms, max {lat['max']:,.0f} ms; first tries only: p50 "
        f"{first['p50']:,.0f} ms, p99 {first['p99']:,.0f} ms |",
        f"| peak RSS | web {r['peaks']['web_kib'] / 1024:.0f} MiB; worker "
        f"{r['peaks']['worker_kib'] / 1024:.0f} MiB (the largest of its "
        f"{len(r['worker_pids'])} processes) |",
        f"| peak Redis used_memory | {r['peaks']['redis_used_memory'] / 2**20:.0f} MiB |",
        f"| chaos actions | {kills} worker SIGKILLs, {restarts} Redis restarts, {flips} flips of "
        f"{FLIP_SHARE:.0%} of endpoints to failing, 1 endpoint to 410 |",
        f"| left at the end (live endpoints) | {statuses['pending']} pending and "
        f"{statuses['failed']} failed deliveries; {pending_entries} unacknowledged stream "
        "entries |",
        "",
        "| t (s) | chaos | detail |",
        "|---:|---|---|",
        *(f"| {e['t']} | {e['kind']} | {e['detail']} |" for e in r["chaos"]),
    ]


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=300.0, help="ingest phase length")
    parser.add_argument("--rate", type=float, help="events/s (default: measured)")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    if args.endpoints < 2:
        parser.error("--endpoints must be at least 2 (one goes 410)")
    rng = random.Random(args.seed)
    plan = plan_chaos(args.seconds, args.endpoints, rng)
    gone = plan[0].endpoints[0]
    live = [n for n in range(1, args.endpoints + 1) if n != gone]
    info = machine()
    print(f"machine: {info['cpu_count']} CPU x {info['cpu_model']}, Python {info['python']}")
    for name in ("web.log", "worker.log"):  # this run's logs alone, the previous one kept
        with contextlib.suppress(FileNotFoundError):
            (LOGS / name).replace(LOGS / f"{name}.previous")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(PrivateRedis(durable=True))
        recv = stack.enter_context(receiver("", module="bench.soak_receiver"))
        env = base_env(redis.url, RETRY_SCHEDULE=RETRY_SCHEDULE, DELIVERY_TIMEOUT=DELIVERY_TIMEOUT)
        if args.rate:
            rate, source = args.rate, "--rate"
            delivery_max = None
        else:
            print("measuring one worker's delivery maximum ...", flush=True)
            delivery_max = measure_delivery_max(redis.url, recv, args.endpoints, env)
            rate = delivery_max / 2 / args.endpoints
            source = f"half of {delivery_max:,.0f} deliveries/s measured / {args.endpoints}"
            print(f"  {delivery_max:,.0f} deliveries/s: ingesting {rate:.0f} events/s", flush=True)
        ids_ = asyncio.run(create_webhooks(redis.url, endpoint_urls(recv, args.endpoints), ("*",)))
        webhook_ids = dict(zip(range(1, args.endpoints + 1), ids_, strict=True))
        cluster = Cluster(stack, redis, env)
        url = cluster.start_web()
        cluster.start_worker()
        tag = f"soak{uuid.uuid4().hex[:6]}"
        warm_up(url, recv, args.endpoints, tag + "w")
        print(f"chaos plan: {[(round(a.at), a.kind, a.endpoints) for a in plan]}", flush=True)
        sampler = Sampler(cluster, redis.url)
        sampler.start()
        print(f"ingesting for {args.seconds:.0f} s ...", flush=True)
        ingested, log = asyncio.run(
            soak_phase(
                cluster, url, recv, plan, rate=rate, seconds=args.seconds, tag=tag,
                seed=args.seed, sampler=sampler,
            )
        )  # fmt: skip
        print(f"draining (at most {DRAIN_LIMIT_SECONDS:.0f} s) ...", flush=True)
        drained = drain(recv, ingested.acknowledged, [str(n) for n in live])
        sampler.stop()
        summary = get_json(recv + "/summary")
        records = get_json(recv + "/records")
        analysis = analyse(records, summary, ingested, live, log.entries)
        state = redis_state(redis.url, webhook_ids)
        lost_detail = explain_lost(url, redis.url, analysis["lost"], webhook_ids)
    gone_stats = summary.get(str(gone), {})
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "commit": _commit(),
        "seconds": args.seconds,
        "rate": rate,
        "rate_source": source,
        "delivery_max": delivery_max,
        "endpoints": args.endpoints,
        "seed": args.seed,
        "plan": [asdict(a) for a in plan],
        "acknowledged": len(ingested.acknowledged),
        "ingest": {
            "events": dict(ingested.events),
            "requests": dict(ingested.requests),
            "sent_events": ingested.sent_events,
            "failed_events": ingested.failed_events,
            "failures": ingested.failures,
            "failure_windows": failure_windows(ingested.failures),
            "seconds": ingested.seconds,
        },
        "chaos": log.entries,
        "drain": drained,
        "analysis": analysis,
        "lost_detail": lost_detail,
        "gone": {
            "endpoint": gone,
            "after_first_410": gone_stats.get("after_gone", 0),
            "delivered_before": gone_stats.get("distinct_ok", 0),
            "webhook": state["webhooks"].get(gone, {}),
        },
        "redis": state,
        "peaks": {
            "web_kib": max((s[1] for s in sampler.samples), default=0),
            "worker_kib": max(sampler.worker_peaks.values(), default=0),
            "redis_used_memory": max((s[3] for s in sampler.samples), default=0),
        },
        "worker_pids": cluster.worker_pids,
        "worker_peaks_kib": sampler.worker_peaks,
        "samples": sampler.samples,
        "wall_seconds": time.perf_counter() - started,
    }
    lines = table(results)
    print("\n" + "\n".join(lines))
    for window in results["ingest"]["failure_windows"]:
        print(f"  failed requests {window['from']:.1f}-{window['to']:.1f} s: {window['what']}")
    for item in lost_detail:
        print(f"  lost: {json.dumps(item)[:600]}")
    RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {RESULTS} ({results['wall_seconds']:.0f} s)")
    return 1 if analysis["lost"] else 0


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
