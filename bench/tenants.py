"""Tenant isolation (#15): does one account's backlog to a slow endpoint delay another's?

Two accounts, made through the accounts API, each with one webhook (`*`): A's endpoint
answers after 200 ms (bench.slow_receiver), B's at once (bench.receiver --record). Events
reach each account through the inbound route: generic events tagged with `account_id`.

- Phase 1, B alone: B sends 20 events/s for N seconds.
- Phase 2, with A's backlog: A's 50,000 events are ingested as fast as the web process takes
  them (wrk), then, while A's backlog drains, B sends 20 events/s for the same N seconds.

Each phase starts on a flushed Redis with fresh web and worker processes (the Procfile's).
B's latency is the receiver's arrival time minus the time its inbound request was sent; an
event not arrived by the end of the grace period counts as infinitely late. Goal: B's p99
with A's backlog within 2x of B alone, and under 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from bench.common import (
    LOGS,
    WRK_DONE,
    arrivals,
    base_env,
    ensure_wrk,
    flush,
    posts,
    receiver,
    wait_until,
    web,
    worker,
)
from bench.service import Settings, Table

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
SLOW_MS = 200  # A's endpoint
BACKLOG = 50_000  # A's events
RATE = 20.0  # B's events per second
GOAL_RATIO = 2.0  # B's p99 with A's backlog / alone, at most
GOAL_P99_MS = 100.0  # and below this


# -- the pure part: latencies, their summary, the goal --------------------------------------


def latencies_ms(sent: Mapping[str, float], seen: Iterable[tuple[str, float]]) -> list[float]:
    """Each sent event's latency (first arrival minus send time, ms); `inf` for one that
    never arrived, so that a lost or stuck event weighs on the percentiles, not vanishes."""
    first: dict[str, float] = {}
    for email_id, at in seen:
        if email_id in sent and (email_id not in first or at < first[email_id]):
            first[email_id] = at
    return [
        (first[email_id] - at) * 1000 if email_id in first else math.inf
        for email_id, at in sent.items()
    ]


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest rank: the smallest value with at least `pct` % of the values at or below it
    (bench.common's rounds half to even, which takes p99 of 100 values as the largest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def summarize(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "sent": len(latencies),
        "delivered": sum(1 for value in latencies if math.isfinite(value)),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=math.nan),
    }


@dataclass(frozen=True)
class Verdict:
    ratio: float  # B's p99 with the backlog / alone
    within_ratio: bool
    under_p99: bool

    @property
    def met(self) -> bool:
        return self.within_ratio and self.under_p99


def verdict(alone_p99_ms: float, loaded_p99_ms: float) -> Verdict:
    """The goal: p99 with A's backlog at most GOAL_RATIO x alone, and under GOAL_P99_MS."""
    ratio = loaded_p99_ms / alone_p99_ms if alone_p99_ms > 0 else math.inf
    return Verdict(
        ratio=ratio,
        within_ratio=ratio <= GOAL_RATIO,
        under_p99=loaded_p99_ms < GOAL_P99_MS,
    )


def jsonable(result: Mapping[str, Any]) -> dict[str, Any]:
    """results.json stays strict JSON: a latency or ratio that is unbounded is written null."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in result.items()
    }


def ms(value: float, grace: float) -> str:
    """A latency for the table; one that never arrived shows as longer than the wait."""
    return f"{value:,.1f}" if math.isfinite(value) else f"> {grace * 1000:,.0f}"


# -- setup through the API ------------------------------------------------------------------


def make_account(api: str, name: str, endpoint: str) -> str:
    """An account with its own key and one webhook for every event type at `endpoint`;
    returns the account id."""
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=api, timeout=10) as client:
        account = client.post("/api/accounts", json={"name": name}, headers=admin)
        account.raise_for_status()
        account_id: str = account.json()["id"]
        key = client.post(f"/api/accounts/{account_id}/keys", headers=admin)
        key.raise_for_status()
        own = {"authorization": f"Bearer {key.json()['key']}"}
        hook = client.post(
            "/api/webhooks/manage", json={"url": endpoint, "events": "*"}, headers=own
        )
        hook.raise_for_status()
    return account_id


def body(email_id: str, account: str) -> str:
    return (
        f'{{"type":"email.opened","email_id":"{email_id}","account_id":"{account}",'
        '"recipient":"alex@example.com","timestamp":"2026-11-28T00:00:00Z"}'
    )


# -- load -----------------------------------------------------------------------------------


async def paced(
    api: str, account: str, rate: float, seconds: float, tag: str
) -> tuple[dict[str, float], int]:
    """Open loop: one event for `account` every 1/rate s for `seconds`. Returns (email_id →
    time its request was sent, for the events answered 200; failures)."""
    sent: dict[str, float] = {}
    failures = 0
    async with aiohttp.ClientSession() as session:

        async def one(email_id: str) -> None:
            nonlocal failures
            at = time.time()
            try:
                async with session.post(
                    api + "/api/webhooks",
                    data=body(email_id, account),
                    headers={"content-type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                sent[email_id] = at
            else:
                failures += 1

        started = time.perf_counter()
        tasks = []
        for number in range(int(rate * seconds)):
            delay = started + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(f"{tag}-{number}")))
        await asyncio.gather(*tasks)
    return sent, failures


def backlog_script(account: str, tag: str, count: int, threads: int, connections: int) -> str:
    """wrk script: each thread sends its share of `count` unique events for `account`, then
    repeats its last body, which the generic provider's de-duplication (the body's hash)
    stores no second time. Answers are not matched to requests, so a thread stops (and
    prints WRKDONE) only after two more answers per connection than its share: by then the
    last unique request of every connection has been answered (each has one in flight)."""
    share = math.ceil(count / threads)
    enough = share + 2 * connections // threads
    event = body(f"{tag}_' .. tid .. '_' .. n .. '", account)
    return f"""
-- wrk calls the first thread's request() once before it starts, to check the script
-- (script_verify_request): that thread's count starts at -1 so that the call costs no id.
local threads, answered = 0, 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
  thread:set("sent", threads == 1 and -1 or 0)
end
request = function()
  sent = sent + 1
  local n = math.min(sent, {share})
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, '{event}')
end
response = function(status, headers, body)
  answered = answered + 1
  if status ~= 200 then io.write("WRKSTATUS ", status, "\\n"); io.flush() end
  if answered == {enough} then
    io.write("WRKDONE\\n"); io.flush()
    wrk.thread:stop()
  end
end
"""


def ingest_backlog(api: str, account: str, tag: str, count: int) -> dict[str, Any]:
    """Post `count` events for `account` as fast as the web process takes them: wrk -t2
    -c50 with backlog_script. A stopped wrk thread does not end wrk (its main thread sleeps
    out -d), so wrk gets SIGINT once every thread has printed WRKDONE; it then reports as
    at the end of -d, over the time it really ran."""
    threads, connections = 2, 50
    LOGS.mkdir(exist_ok=True)
    path = LOGS / f"wrk-tenants-{os.getpid()}.lua"
    path.write_text(backlog_script(account, tag, count, threads, connections) + WRK_DONE)
    command = [ensure_wrk(), f"-t{threads}", f"-c{connections}", "-d600s", "--timeout", "10s"]
    started = time.perf_counter()
    with subprocess.Popen(
        [*command, "-s", str(path), api + "/api/webhooks"], stdout=subprocess.PIPE, text=True
    ) as wrk:
        assert wrk.stdout is not None
        done, data, refused = 0, None, Counter[str]()
        for line in wrk.stdout:
            if line.startswith("WRKSTATUS "):
                refused[line.split()[1]] += 1
            elif line.startswith("WRKDONE"):
                done += 1
                if done == threads:
                    wrk.send_signal(signal.SIGINT)
            elif line.startswith("WRKJSON "):
                data = json.loads(line.removeprefix("WRKJSON "))
    seconds = time.perf_counter() - started
    path.unlink(missing_ok=True)
    if done < threads or data is None:
        raise RuntimeError(f"wrk ended before every thread was answered (exit {wrk.returncode})")
    return {
        "events": count,
        "requests": data["requests"],
        "errors": data["errors"],
        "non2xx": data["non2xx"],
        "refused": dict(refused),  # status → answers, for every answer but 200
        "seconds": seconds,
        "events_per_s": count / seconds,
    }


# -- one phase ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    fast: str  # bench.receiver --record
    slow: str  # bench.slow_receiver


def phase(s: Settings, ends: Endpoints, *, seconds: float, backlog: int) -> dict[str, Any]:
    """One phase on a flushed Redis and fresh processes: with `backlog` > 0, A's events are
    ingested first; then B sends RATE events/s for `seconds`."""
    flush(s.redis_url)
    env = base_env(s.redis_url, ADMIN_API_KEYS=ADMIN_KEY)
    tag = uuid.uuid4().hex[:6]
    grace = s.pick(15, 30)
    result: dict[str, Any] = {"backlog": backlog, "seconds": seconds, "grace_seconds": grace}
    with web(env) as api, worker(env):
        account_a = make_account(api, "A (slow endpoint)", ends.slow + "/a")
        account_b = make_account(api, "B (fast endpoint)", ends.fast + "/b")
        # Warm up both webhooks (first connections, the routing cache) before timing.
        slow_before, fast_before = posts(ends.slow), posts(ends.fast)
        warm_b, _ = asyncio.run(paced(api, account_b, 50, 0.1, f"w{tag}b"))
        warm_a, _ = asyncio.run(paced(api, account_a, 50, 0.04, f"w{tag}a"))
        warmed = wait_until(
            lambda: (
                posts(ends.slow) - slow_before >= len(warm_a)
                and posts(ends.fast) - fast_before >= len(warm_b)
            ),
            30,
        )
        if not warmed:
            raise RuntimeError("warm-up deliveries did not arrive within 30 s")
        time.sleep(0.5)
        arrivals(ends.fast)
        slow_start = posts(ends.slow)
        if backlog:
            ingest = ingest_backlog(api, account_a, f"a{tag}", backlog)
            ingest["a_delivered_meanwhile"] = posts(ends.slow) - slow_start
            result["ingest"] = ingest
            print(
                f"  A's backlog: {backlog:,} events in {ingest['seconds']:.1f} s "
                f"({ingest['events_per_s']:,.0f}/s; {ingest['requests']:,.0f} requests, "
                f"errors {ingest['errors']:.0f}, non-2xx {ingest['non2xx']:.0f}); "
                f"A delivered {ingest['a_delivered_meanwhile']:,} meanwhile",
                flush=True,
            )
        a_before = posts(ends.slow)
        result["a_backlog_at_b_start"] = backlog - (a_before - slow_start)
        started = time.perf_counter()
        sent, failures = asyncio.run(paced(api, account_b, RATE, seconds, f"b{tag}"))
        sending = time.perf_counter() - started
        a_during = posts(ends.slow) - a_before
        seen: list[tuple[str, float]] = []

        def collect() -> bool:
            seen.extend(item for item in arrivals(ends.fast) if item[0] in sent)
            return len({email_id for email_id, _ in seen}) >= len(sent)

        wait_until(collect, grace, 0.2)
        result["a_delivered_total"] = posts(ends.slow) - slow_start
    result.update(summarize(latencies_ms(sent, seen)))
    result.update(
        failures=failures,
        a_delivered_during=a_during,
        a_rate_during=a_during / sending,
        sending_seconds=sending,
    )
    return result


def bench_tenants(s: Settings) -> tuple[Table, dict[str, Any]]:
    seconds = s.pick(8, 30)
    runs: dict[str, dict[str, Any]] = {}
    with receiver() as fast, receiver(str(SLOW_MS), module="bench.slow_receiver") as slow:
        for name, backlog in (("alone", 0), ("with_backlog", BACKLOG)):
            r = runs[name] = phase(s, Endpoints(fast, slow), seconds=seconds, backlog=backlog)
            grace = r["grace_seconds"]
            print(
                f"  tenants {name}: B p50 {ms(r['p50_ms'], grace)} ms, p99 "
                f"{ms(r['p99_ms'], grace)} ms, {r['delivered']}/{r['sent']} delivered; "
                f"A delivered {r['a_delivered_during']:,} during B's run",
                flush=True,
            )
    alone, loaded = runs["alone"], runs["with_backlog"]
    judged = verdict(alone["p99_ms"], loaded["p99_ms"])

    def row(label: str, r: dict[str, Any]) -> str:
        return (
            f"| {label} | {r['sent']:,}/{r['failures']} | {r['delivered']:,} | "
            f"{ms(r['p50_ms'], grace)} | {ms(r['p99_ms'], grace)} | {ms(r['max_ms'], grace)} | "
            f"{r['a_delivered_during']:,} ({r['a_rate_during']:,.1f}/s) |"
        )

    ingest = loaded["ingest"]
    refused = ", ".join(f"{n} x {status}" for status, n in sorted(ingest["refused"].items()))
    ratio = f"{judged.ratio:.2f}" if math.isfinite(judged.ratio) else "unbounded"
    table = [
        f"Two accounts made through the accounts API, one webhook each (`*`): A's endpoint "
        f"answers after {SLOW_MS} ms, B's at once. B sends {RATE:.0f} generic events/s tagged "
        f"with its account for {seconds} s; latency = B's receiver arrival minus the time its "
        "inbound request was sent (time.time(), same machine); an event not arrived "
        f"{grace} s after B's last was sent counts as never (shown as > {grace * 1000:,} ms). "
        f"Phase 2 first ingests A's {BACKLOG:,} events with wrk (-t2 -c50), the worker "
        "running. Each phase: flushed Redis, fresh web and worker (default settings), one "
        "round.",
        "",
        "| phase | B sent/failed | B delivered | p50 ms | p99 ms | max ms | A delivered during "
        "B's run |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("B alone", alone),
        row(f"B with A's {BACKLOG:,}-event backlog", loaded),
        "",
        f"A's backlog ingested in {ingest['seconds']:.1f} s ({ingest['events_per_s']:,.0f} "
        f"events/s; wrk errors {ingest['errors']:.0f}, answers other than 200: "
        f"{refused or 'none'}, not retried: a 503 past INGEST_TIMEOUT may or may not have "
        "stored its event); "
        f"{loaded['a_backlog_at_b_start']:,} of A's events undelivered when B began; A's "
        f"endpoint received {loaded['a_delivered_total']:,} deliveries in the whole phase.",
        "",
        f"B's p99 with A's backlog / alone: {ratio} (goal <= {GOAL_RATIO:.0f}: "
        f"{'met' if judged.within_ratio else 'MISSED'}); p99 < {GOAL_P99_MS:.0f} ms: "
        f"{'met' if judged.under_p99 else 'MISSED'}. Goal: {'met' if judged.met else 'MISSED'}.",
    ]
    data = {
        "rate": RATE,
        "seconds": seconds,
        "backlog": BACKLOG,
        "slow_ms": SLOW_MS,
        "phases": {name: jsonable(r) for name, r in runs.items()},
        "ratio": judged.ratio if math.isfinite(judged.ratio) else None,
        "goal_met": judged.met,
    }
    return table, data
