"""`python -m bench.soak [--seconds N] [--rate R] [--endpoints E] [--seed S]`: the soak test
(`make soak`; issue #17). Not part of `make test`: about `N` + 4 minutes, bounded.

A private durable Redis (AOF), the Procfile's web and worker lines and bench.soak_receiver
(endpoints /e/1..E, all subscribed to `*`). Every provider's native bodies are posted at a
steady rate for N seconds (default: half the delivery maximum measured at start, per
endpoint), while a seeded chaos loop SIGKILLs the worker and starts a new one, restarts Redis
on its AOF, flips 20 % of the endpoints to failing and back, and makes one endpoint answer
410 early. Then it drains (until every acknowledged event has reached every live endpoint,
nothing has arrived for QUIET_SECONDS, or DRAIN_LIMIT_SECONDS), prints a markdown table and
writes bench/soak-results.json. A worker that exits by itself is noted and started again
(as a platform restarts a crashed process). Exit code 1 if an acknowledged event is missing
at a live endpoint, else 2 if a web or worker process exited by itself. Traffic goes to
127.0.0.1 only; every process started here is stopped on exit.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import redis as redis_sync

from bench.common import (
    LOGS,
    base_env,
    create_webhooks,
    flush,
    get_json,
    preload_events,
    receiver,
    rss_kib,
    wait_until,
    web_process,
    worker,
)
from bench.soak_ingest import Bodies, Ingested, paced_ingest
from bench.soak_report import (
    analyse,
    explain_lost,
    failure_windows,
    missing,
    pending_deliveries,
    redis_state,
    table,
    worker_log_stats,
)
from bench.transport import machine
from devtools.redis_server import PrivateRedis

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
    """The processes under test: the private Redis, one web, one worker at a time. A process
    that exits by itself is noted in `exits`; the worker is then started again, as a
    platform restarts a crashed process."""

    def __init__(self, stack: contextlib.ExitStack, redis: PrivateRedis, env: dict[str, str]):
        self.stack, self.redis, self.env = stack, redis, env
        self.web: subprocess.Popen[Any] | None = None
        self.worker: subprocess.Popen[Any] | None = None
        self.worker_pids: list[int] = []
        self.exits: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # the chaos loop and the sampler both replace workers

    @property
    def web_pid(self) -> int:
        return self.web.pid if self.web is not None else 0

    def start_web(self) -> str:
        url, self.web = self.stack.enter_context(web_process(self.env))
        return str(url)

    def start_worker(self) -> int:
        self.worker = self.stack.enter_context(worker(self.env))
        self.worker_pids.append(self.worker.pid)
        return self.worker.pid

    def kill_worker(self) -> str:
        with self._lock:
            assert self.worker is not None
            old = self.worker
            exited = old.poll()
            old.send_signal(signal.SIGKILL)
            old.wait(timeout=10)
            if exited is not None:
                self._note_exit("worker", old)
            return f"SIGKILL worker pid {old.pid}; started pid {self.start_worker()}"

    def check(self) -> None:
        """Note a process that exited by itself; start the worker again if it was that."""
        with self._lock:
            web = self.web
            if web and web.poll() is not None and all(e["pid"] != web.pid for e in self.exits):
                self._note_exit("web", web)
            if self.worker is not None and self.worker.poll() is not None:
                old = self.worker
                self._note_exit("worker", old)
                print(f"  worker pid {old.pid} exited by itself (code {old.returncode}): "
                      f"started pid {self.start_worker()}", flush=True)  # fmt: skip

    def _note_exit(self, name: str, process: subprocess.Popen[Any]) -> None:
        self.exits.append(
            {"process": name, "pid": process.pid, "code": process.returncode, "at": time.time()}
        )

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
            self.cluster.check()
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
            f"{sum(e['failed'] for e in summary.values()):,} 500s, "
            f"{sum(e['distinct_ok'] for e in summary.values()):,} distinct; RSS web "
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


def drain(
    recv: str, acknowledged: dict[str, float], live: list[str], pending: Callable[[], int]
) -> dict[str, Any]:
    """Wait until every acknowledged event has reached every live endpoint and Redis holds
    no pending delivery for them (one still pending was sent and is due again: a duplicate to
    count), nothing has arrived for QUIET_SECONDS, or DRAIN_LIMIT_SECONDS have passed."""
    started = time.monotonic()
    last_posts, last_change, last_check = -1, started, 0.0
    outcome, arrived_after = "limit", None
    while time.monotonic() - started < DRAIN_LIMIT_SECONDS:
        summary = get_json(recv + "/summary")
        posts = sum(int(e["posts"]) for e in summary.values())
        now = time.monotonic()
        if posts != last_posts:
            last_posts, last_change = posts, now
        counted = all(summary.get(p, {}).get("distinct_ok", 0) >= len(acknowledged) for p in live)
        if arrived_after is None and counted and now - last_check >= 10:
            last_check = now
            records = get_json(recv + "/records")
            if not any(missing(records.get(p, {}), acknowledged) for p in live):
                arrived_after = now - started
        if arrived_after is not None and pending() == 0:
            outcome = "complete"
            break
        if now - last_change >= QUIET_SECONDS:
            outcome = "quiet" if arrived_after is None else "all arrived, some still pending"
            break
        time.sleep(2)
    return {"outcome": outcome, "seconds": time.monotonic() - started, "arrived": arrived_after}


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
        live_ids = [webhook_ids[n] for n in live]
        drained = drain(
            recv,
            ingested.acknowledged,
            [str(n) for n in live],
            lambda: pending_deliveries(redis.url, live_ids),
        )
        sampler.stop()
        summary = get_json(recv + "/summary")
        records = get_json(recv + "/records")
        analysis = analyse(records, summary, ingested, live, log.entries, log.started)
        state = redis_state(redis.url, webhook_ids)
        worker_log = LOGS / "worker.log"
        lost_detail = explain_lost(url, redis.url, analysis["lost"], webhook_ids, worker_log)
    gone_stats = summary.get(str(gone), {})
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "commit": _commit(),
        "seconds": args.seconds,
        "rate": rate,
        "rate_source": source,
        "settings": {
            "RETRY_SCHEDULE": RETRY_SCHEDULE,
            "DELIVERY_TIMEOUT": DELIVERY_TIMEOUT,
            "DELIVERY_CONCURRENCY": DELIVERY_CONCURRENCY,
            "ENDPOINT_CONCURRENCY": ENDPOINT_CONCURRENCY,
            "FLIP_SHARE": FLIP_SHARE,
        },
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
        "worker_log": worker_log_stats(worker_log),
        "peaks": {
            "web_kib": max((s[1] for s in sampler.samples), default=0),
            "worker_kib": max(sampler.worker_peaks.values(), default=0),
            "redis_used_memory": max((s[3] for s in sampler.samples), default=0),
        },
        "worker_pids": cluster.worker_pids,
        "exits": [{**e, "t": round(e["at"] - log.started, 1)} for e in cluster.exits],
        "worker_peaks_kib": sampler.worker_peaks,
        "samples": sampler.samples,
        "wall_seconds": time.perf_counter() - started,
    }
    lines = table(results)
    print("\n" + "\n".join(lines))
    for window in results["ingest"]["failure_windows"]:
        print(f"  failed requests {window['from']:.1f}-{window['to']:.1f} s: {window['what']}")
    print("\nlatency by when the event was acknowledged (p50 / p99 / max ms):")
    for window, stats in analysis["latency_by_window_ms"].items():
        print(f"  {window}: {stats['p50']:,.0f} / {stats['p99']:,.0f} / {stats['max']:,.0f}")
    for item in lost_detail:
        print(f"  lost: {json.dumps(item)[:600]}")
    RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {RESULTS} ({results['wall_seconds']:.0f} s)")
    if analysis["lost"]:
        return 1
    return 2 if cluster.exits else 0


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
