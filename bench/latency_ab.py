"""A/B end-to-end latency of several checkouts: `python -m bench.latency_ab TREE TREE…
[--rate R] [--seconds S] [--rounds N] [ENV=VALUE …]`.

The latency benchmark of `make bench` (bench.service.latency_run: paced generic events to
the web process, arrival at the recording receiver after the worker delivers), with the web
and worker of each TREE (a checkout, e.g. `git worktree add /tmp/before HEAD~1`) run in
alternating rounds (A B A B …) against one private Redis and receiver: a tail is decided by
a few slow moments, and this machine's load moves them from one run to the next. Reports each
round's p50/p99/max and, per tree, the medians; the median of pairwise p99 ratios against A.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
import uuid
from typing import Any

from bench.common import (
    LOGS,
    arrivals,
    base_env,
    create_webhooks,
    flush,
    percentile,
    posts,
    receiver,
    wait_until,
)
from bench.pacer import run_paced
from devtools.procfile import process_env, procfile_commands
from devtools.redis_server import PrivateRedis, free_port, wait_for_port


def start_line(tree: str, line: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The Procfile line `line` (web, worker) of checkout `tree`, its output in bench/.logs."""
    command = procfile_commands()[line]
    LOGS.mkdir(exist_ok=True)
    with (LOGS / f"latency_ab-{line}.log").open("ab") as log:
        return subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            cwd=tree,
            env=process_env({**env, "PYTHONPATH": tree}),
            stdout=log,
            stderr=log,
        )


def run_once(
    tree: str, redis_url: str, recv: str, *, rate: float, seconds: float, env: dict[str, str]
) -> dict[str, Any]:
    flush(redis_url)
    asyncio.run(create_webhooks(redis_url, [f"{recv}/1"], ("*",)))
    port = free_port()
    full = {**base_env(redis_url, **env), "PORT": str(port)}
    web = start_line(tree, "web", full)
    worker = start_line(tree, "worker", full)
    tag = f"e{uuid.uuid4().hex[:6]}"
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, 30)
        before = posts(recv)
        _, warm, _ = run_paced(url, 50, 0.1, tag + "warm")
        if not wait_until(lambda: posts(recv) - before >= len(warm), 30):
            raise RuntimeError(f"{tree}: warm-up deliveries did not arrive within 30 s")
        time.sleep(0.5)
        arrivals(recv)
        sent, answered, failures = run_paced(url, rate, seconds, tag)
        seen: dict[str, float] = {}

        def collect() -> bool:
            seen.update(item for item in arrivals(recv) if item[0] in answered)
            return len(seen) >= len(answered)

        wait_until(collect, 30, 0.2)
    finally:
        for process in (web, worker):
            process.send_signal(15)
        for process in (web, worker):
            process.wait(30)
    latencies = [at - answered[email_id] for email_id, at in seen.items()]
    return {
        "events": len(sent),
        "failures": failures,
        "delivered": len(seen),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "sent": sent,
        "answered": answered,
        "arrived": seen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("trees", nargs="+", help="checkouts to compare; the first is A")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=6)
    options, extra = parser.parse_known_args()
    env = dict(item.split("=", 1) for item in extra)
    trees = [tree for tree in options.trees if "=" not in tree]
    results: dict[str, list[dict[str, Any]]] = {tree: [] for tree in trees}
    with PrivateRedis(durable=False) as redis, receiver() as recv:
        for number in range(options.rounds):
            for tree in trees:
                r = run_once(
                    tree, redis.url, recv, rate=options.rate, seconds=options.seconds, env=env
                )
                results[tree].append(r)
                print(
                    f"round {number + 1} {tree}: p50 {r['p50_ms']:.1f} ms, p99 "
                    f"{r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, "
                    f"{r['delivered']}/{r['events']} delivered",
                    flush=True,
                )
    first = results[trees[0]]
    for tree in trees:
        runs = results[tree]
        med = {k: statistics.median(r[k] for r in runs) for k in ("p50_ms", "p99_ms", "max_ms")}
        line = (
            f"{tree}: median p50 {med['p50_ms']:.1f} ms, p99 {med['p99_ms']:.1f} ms, "
            f"max {med['max_ms']:.1f} ms; p99s " + ", ".join(f"{r['p99_ms']:.0f}" for r in runs)
        )
        if tree != trees[0]:
            ratio = statistics.median(
                b["p99_ms"] / a["p99_ms"] for a, b in zip(first, runs, strict=True)
            )
            line += f"; p99 vs {trees[0]}: x{ratio:.3f} (median of pairwise ratios)"
        print(line)


if __name__ == "__main__":
    main()
